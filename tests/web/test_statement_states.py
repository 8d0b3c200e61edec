"""PAY-4: in every account state, the next charge the billing page, the latest e-mail and the quote
state (its date and amount) is what the billing run then charges. The states are the demo
customers (backoffice/demo.py), built through the engine on a clock that ends at TODAY."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import dateformat

from accounts.models import Account
from backoffice import demo
from core import events
from core.money import format_money
from invoices.models import Invoice, Payment
from notifications.models import Category, EmailLog
from subscriptions import scheduler, terms
from subscriptions.statement import account_statement
from tests.factories import UserFactory

from .conftest import at

TODAY = at("2026-06-15T12:00")
NEXT_CHARGE = re.compile(r'<dd id="next-charge">([^<]*)</dd>')


@dataclass(frozen=True)
class AtEvent:
    """What the ledger said when an event was emitted: the statement's next charge then (PAY-4)."""

    kind: str
    data: dict
    next_charge_sentence: str


@pytest.fixture
def at_event():
    """{account id: [AtEvent, …]}, recorded as each event is emitted (in its own transaction)."""
    seen: dict[int, list[AtEvent]] = {}

    def record(emitted: list[events.Event]) -> list[dict]:
        for event in emitted:
            account = Account.objects.get(pk=event.account_id)
            sentence = account_statement(account, event.occurred_at).next_charge_sentence
            seen.setdefault(event.account_id, []).append(AtEvent(event.kind, event.data, sentence))
        return [{} for _event in emitted]

    events.snapshot_with(record)
    yield seen
    events.snapshot_without(record)


def build(keys, django_capture_on_commit_callbacks) -> dict:
    """The demo states `keys` (built alone: each builder makes its own customer), committed so the
    e-mails go out."""
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    built = []
    with django_capture_on_commit_callbacks(execute=True):
        for key, title, builder in demo.BUILDERS:
            if key in keys:
                account, quote = builder(TODAY, staff_user)
                built.append(demo.DemoState(key, title, f"{key}@demo.prorata.localhost", account, quote))
    for state in built:
        state.account.refresh_from_db()
    return {state.key: state for state in built}


@pytest.fixture
def states(catalog, django_capture_on_commit_callbacks):
    """All twelve states, as `seed_demo` builds them."""
    return build(EXPECTED_STATES, django_capture_on_commit_callbacks)


@pytest.fixture
def state(request, catalog, at_event, django_capture_on_commit_callbacks):
    """One state, built alone (issue 24: not all twelve for each case); parametrize `key`."""
    return build({request.param}, django_capture_on_commit_callbacks)[request.param]


def shown_on_overview(state) -> str:
    client = Client()
    client.force_login(get_user_model().objects.get(username=state.email))
    with time_machine.travel(TODAY, tick=False):
        html = client.get(reverse("billing:overview")).content.decode()
    return NEXT_CHARGE.search(html).group(1)


def latest_billing_email(state) -> str:
    entry = (EmailLog.objects.filter(account=state.account, category=Category.BILLING)
             .order_by("-queued_at", "-id").first())
    return entry.body_text if entry else ""


def charged_by_the_run(state, at_moment: datetime) -> tuple[datetime, Decimal] | None:
    """Run the billing run every day from TODAY and then at `at_moment`, as the schedule would, and
    what it first charged: the new invoice's total (after credit) and when, or the retry's amount;
    None when it charged nothing."""
    before = set(Invoice.objects.filter(account=state.account).values_list("pk", flat=True))
    attempts_before = set(Payment.objects.filter(account=state.account).values_list("pk", flat=True))
    moment = TODAY + timedelta(days=1)
    while moment < at_moment - timedelta(minutes=1):  # every day strictly before the charge's moment
        scheduler.run(moment)
        charged = (Payment.objects.filter(account=state.account).exclude(pk__in=attempts_before).exists()
                   or Invoice.objects.filter(account=state.account).exclude(pk__in=before).exists())
        assert not charged, f"{state.key}: charged on {moment}, before the day the statement said"
        moment += timedelta(days=1)
    scheduler.run(at_moment)
    new = Invoice.objects.filter(account=state.account).exclude(pk__in=before).exclude(number=None)
    new = new.order_by("issued_at", "id").first()
    if new is not None:
        return new.issued_at, new.total
    retry = Payment.objects.filter(account=state.account).exclude(pk__in=attempts_before).order_by("id").first()
    return (retry.attempted_at, retry.amount) if retry else None


EXPECTED_STATES = {"trialing", "monthly", "yearly", "downgrading", "cancelling", "credit", "pastdue", "suspended",
                   "policy", "renewed", "refunded", "custom"}


def test_pay4_the_demo_builds_the_twelve_states(states):
    assert set(states) == EXPECTED_STATES
    subs = {key: state.account.subscriptions.order_by("-id").first()
            for key, state in states.items()}
    assert subs["trialing"].status == "trialing" and subs["pastdue"].status == "past_due"
    assert subs["suspended"].status == "suspended" and states["policy"].account.suspension_reason == "policy_violation"
    assert subs["cancelling"].cancel_at_period_end and subs["downgrading"].scheduled_plan.code == "personal"
    assert (subs["yearly"].cycle, subs["yearly"].extra_properties) == ("yearly", 2)
    assert subs["refunded"].plan.is_free and subs["custom"].plan.code == "custom-corp-pro"


@pytest.mark.parametrize("state", sorted(EXPECTED_STATES), indirect=True)
def test_pay4_page_email_and_quote_state_the_charge_the_run_then_makes(state):
    key = state.key
    statement = account_statement(state.account, TODAY)
    charge = statement.next_charge
    overview = shown_on_overview(state)
    email = latest_billing_email(state)
    if charge is None:
        assert overview.startswith("None scheduled"), (key, overview)
        assert "Next charge:" not in email, (key, email)
        # Nothing is charged: not at any daily run in the next six weeks.
        assert charged_by_the_run(state, TODAY + timedelta(days=42)) is None, key
        return
    day = terms.local_date(state.account, charge.at)
    money = format_money(charge.total, charge.currency)
    # The billing page.
    assert overview.startswith(f"{day:%Y-%m-%d}: {money}"), (key, overview, day, money)
    # The latest billing e-mail states the same date and amount.
    assert dateformat.format(day, "F j, Y") in email and money in email, (key, email, day, money)
    # The quote that led here, when there was one.
    if state.quote is not None and state.quote.next_charge is not None:
        quoted = state.quote.next_charge
        assert (terms.local_date(state.account, quoted.at), quoted.total) == (day, charge.total), key
    # And the run charges exactly that, on that day.
    made = charged_by_the_run(state, charge.at + timedelta(minutes=1))
    assert made is not None, key
    assert (terms.local_date(state.account, made[0]), made[1]) == (day, charge.total), (key, made)


@pytest.mark.parametrize("state", sorted(EXPECTED_STATES), indirect=True)
def test_not4_each_states_emails_state_the_ledger_at_their_event(state, at_event):
    """Every billing e-mail of each demo state (its latest one included) states what the ledger
    said when its event happened, not when it was delivered (the demo's e-mails are delivered after
    the whole build, as with the scheduler stopped): the statement's next charge at that moment,
    and a receipt's invoice as issued (its total and tax)."""
    entries = list(EmailLog.objects.filter(account=state.account, category=Category.BILLING,
                                           recipient=state.email).order_by("id"))
    recorded = list(at_event[state.account.pk])
    assert entries, state.key
    for entry in entries:
        event = next(e for e in recorded if e.kind == entry.kind
                     and str(e.data.get(entry.related_type + "_id", "")) in ("", entry.related_id))
        recorded.remove(event)
        if any(text in entry.body_text for text in ("Next charge:", "Nothing more is charged", "No further charge",
                                                    "We try the unpaid", "is unpaid; it is charged")):
            assert event.next_charge_sentence in entry.body_text, (state.key, entry.kind,
                                                                   event.next_charge_sentence, entry.body_text)
        if entry.related_type == "invoice" and entry.attach_pdf:  # a receipt: the invoice as issued
            invoice = Invoice.objects.get(pk=entry.related_id)
            assert f"Total: {format_money(invoice.total, invoice.currency)}" in entry.body_text, state.key
            if invoice.shows_tax:
                assert format_money(invoice.tax_amount, invoice.currency) in entry.body_text, state.key
        elif event.data.get("amount") not in (None, ""):  # the amount of the event (a failed charge's, say)
            assert format_money(Decimal(event.data["amount"]), state.account.subscription.plan.currency) \
                in entry.body_text, state.key
