"""Fixtures for the back office: staff users in the ACC-2 groups, a converted trial, and a clock."""

from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail
from django.db import connections
from django.test import Client

from accounts.groups import BILLING_MANAGERS, SUPPORT, ensure_staff_groups
from invoices.models import Invoice, InvoiceKind
from subscriptions import billing, scheduler
from tests.factories import AccountFactory, UserFactory

OWNER = "owner@acme.test"
CHROMIUM = "/usr/bin/chromium"


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def groups(db):
    return ensure_staff_groups()


def staff_member(username, group=None, **extra):
    user = UserFactory(username=username, is_staff=True, **extra)
    if group is not None:
        user.groups.add(group)
    return user


@pytest.fixture
def support(groups):
    return staff_member("support@prorata.test", groups[SUPPORT])


@pytest.fixture
def manager(groups):
    return staff_member("manager@prorata.test", groups[BILLING_MANAGERS])


@pytest.fixture
def superuser(db):
    return staff_member("root@prorata.test", is_superuser=True)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def support_client(support):
    return client_for(support)


@pytest.fixture
def manager_client(manager):
    return client_for(manager)


@pytest.fixture
def clock():
    """Stop the clock at a moment: `with clock("2026-04-20"):` (the admin views use the real now)."""
    return lambda text: time_machine.travel(at(text), tick=False)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the block as a committed transaction: events dispatch, e-mails queue and send."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def account(catalog):
    """Acme, on Free, the owner's card on file."""
    acct = AccountFactory(name="Acme Analytics", owner=UserFactory(username=OWNER))
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-03-01"))
    mail.outbox.clear()
    return acct


@pytest.fixture
def converted(account):
    """Acme's Personal trial from 2026-04-01, charged $14.00 when it ended on 2026-04-15 (TRI-3)."""
    billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))
    scheduler.run(at("2026-04-15T08:00"))
    mail.outbox.clear()
    return Invoice.objects.get(account=account, kind=InvoiceKind.TRIAL_CONVERSION)


def kinds(outbox=None):
    """(kind, recipients) of the e-mails sent."""
    return [(m.extra_headers["X-Prorata-Kind"], m.to) for m in (outbox if outbox is not None else mail.outbox)]


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium through Playwright, for the browser tests (never `playwright install`)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous and never overlap with it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()
        # ORM calls made while Playwright's loop runs get their own connection; close it, or
        # PostgreSQL cannot drop the test database at the end of the run.
        connections.close_all()
