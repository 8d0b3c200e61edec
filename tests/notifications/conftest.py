from datetime import UTC, datetime

import pytest
from django.core import mail

from accounts.models import Membership, Role
from subscriptions import billing
from tests.factories import AccountFactory, UserFactory
from usage.ingest import usage_ingest

OWNER = "owner@acme.test"
BILLING = "billing@acme.test"
MEMBER = "member@acme.test"


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def account(catalog):
    """An account on Free with a card on file, an owner, a billing-role user and a member."""
    acct = AccountFactory(name="Acme Analytics", owner=UserFactory(username=OWNER))
    Membership.objects.create(user=UserFactory(username=BILLING), account=acct, role=Role.BILLING)
    Membership.objects.create(user=UserFactory(username=MEMBER), account=acct, role=Role.MEMBER)
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-01-01"))
    mail.outbox.clear()
    return acct


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the block as a committed transaction: events dispatch, e-mails queue and send."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def kind_of(message) -> str:
    return message.extra_headers["X-Prorata-Kind"]


def html_of(message) -> str:
    return next(content for content, mimetype in message.alternatives if mimetype == "text/html")


def only(kind: str, to=(OWNER, BILLING)):
    """The e-mails sent since the outbox was last cleared are exactly one `kind` e-mail per
    recipient in `to`; returns the owner's (or the first) message."""
    outbox = list(mail.outbox)
    assert [kind_of(m) for m in outbox] == [kind] * len(to), [(kind_of(m), m.to) for m in outbox]
    assert sorted(address for m in outbox for address in m.to) == sorted(to)
    return next((m for m in outbox if m.to == [OWNER]), outbox[0])


def ingest(prop, n, start=0, day="2026-04-10T12:00"):
    """Report `n` sessions, in batches of the API's maximum size."""
    for first in range(start, start + n, 1000):
        usage_ingest([{"id": f"evt-{prop.pk}-{i}", "tracking_tag": prop.tracking_tag, "type": "session",
                       "timestamp": day + ":00Z"} for i in range(first, min(first + 1000, start + n))], now=at(day))
