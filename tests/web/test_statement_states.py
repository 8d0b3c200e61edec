"""PAY-4: in every account state, the next charge the billing page, the latest e-mail and the quote
state (its date and amount) is what the billing run then charges. The states are the demo
customers (subscriptions/demo.py), built through the engine on a clock that ends at TODAY."""

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import dateformat

from core.money import format_money
from invoices.models import Invoice, Payment
from notifications.models import Category, EmailLog
from subscriptions import demo, scheduler, terms
from subscriptions.statement import account_statement
from tests.factories import UserFactory

from .conftest import at

TODAY = at("2026-06-15T12:00")
NEXT_CHARGE = re.compile(r'<dd id="next-charge">([^<]*)</dd>')


@pytest.fixture
def states(catalog, django_capture_on_commit_callbacks):
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    with django_capture_on_commit_callbacks(execute=True):  # committed: the e-mails go out
        built = demo.build_states(TODAY, staff_user)
    for state in built:
        state.account.refresh_from_db()
    return {state.key: state for state in built}


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


@pytest.mark.parametrize("key", sorted(EXPECTED_STATES))
def test_pay4_page_email_and_quote_state_the_charge_the_run_then_makes(states, key):
    state = states[key]
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
