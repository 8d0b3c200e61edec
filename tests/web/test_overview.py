"""The overview: plan, period, next charge, upcoming charges (CAT-4, REN-2), usage (USE-2),
past-due and suspension banners (DUN-1, SUS-1), and a fixed number of queries."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.models import UsageDay, UsageMonth
from invoices import services as ledger
from invoices.models import InvoiceKind
from plans.models import Plan
from subscriptions import billing, scheduler

from .conftest import add_properties, at, current


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def personal(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    return current(account)


def test_overview_shows_plan_cycle_status_period_and_next_charge(personal, client_owner, travel):
    """REN-1: the overview shows plan, cycle, status, period, the next charge date (24 hours before the period ends),
    the card and the $14.00 upcoming charge."""
    travel("2026-04-10")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "<strong>Personal</strong>" in html and "Monthly" in html and "Active" in html
    assert "2026-04-01 to 2026-05-01" in html
    # REN-1: 24 hours before the period ends; PAY-4: with the amount the run will charge
    assert '<dt>Next charge</dt><dd id="next-charge">2026-04-30: $14.00</dd>' in html
    assert "Visa •••• 4242" in html
    assert "Personal (monthly)" in html and "$14.00" in html


def test_cat4_a_new_catalog_price_shows_under_upcoming_charges(personal, client_owner, travel):
    Plan.objects.filter(code="personal").update(monthly_price=Decimal("16.00"))
    travel("2026-04-10")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "New price from 2026-05-01: $16.00 per month (you paid $14.00 for the current period)." in html
    assert '<td class="num"><strong>$16.00</strong></td>' in html


def test_ren2_upcoming_charges_show_the_scheduled_plan_add_ons_and_credit(account, client_owner, travel):
    travel("2026-06-01")
    billing.subscribe(account, "advanced", "monthly")
    billing.set_extra_properties(current(account), 2)
    invoice = account.invoices.filter(kind=InvoiceKind.SUBSCRIPTION).get()
    ledger.credit_note_issue(account=account, invoice=invoice, kind="correction", amount=Decimal("5.00"),
                             reason="goodwill", now=at("2026-06-01"))
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "2 extra properties" in html and "$60.00" in html
    assert "Credit applied" in html and "−$5.00" in html
    assert '<strong>$84.00</strong>' in html  # 29 + 60 - 5
    billing.change_plan(current(account), "advanced", "yearly")  # upgrade to yearly keeps the add-on
    billing.change_plan(current(account), "personal", "monthly")  # scheduled for the year end
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "From 2027-06-01 you move to Personal (monthly), as you scheduled." in html
    assert "Downgrade to Personal (monthly) on 2027-06-01" in html


def test_use2_usage_bars_against_the_quota_and_projected_overage(personal, client_owner, travel):
    UsageMonth.objects.create(account=personal.account, month=date(2026, 4, 1), sessions=9000,
                              sessions_included=10000)
    add_properties(personal.account, 2)
    travel("2026-04-16")  # 15 of 30 days: projected 18,000 sessions, 8,000 over at $2.00 / 1,000
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "Usage in April 2026" in html
    assert "9,000 of 10,000" in html and 'class="bar warn"' in html and "width: 90%" in html
    assert "2 of 3" in html
    assert "Projected for the month: 18,000 sessions, overage $16.00" in html
    assert "Projected overage:" in html and "invoiced on 2026-05-01" in html


def test_use2_hard_capped_plan_says_the_quota_is_reached(account, client_owner, travel):
    UsageMonth.objects.create(account=account, month=date(2026, 4, 1), sessions=1000, sessions_included=1000)
    travel("2026-04-16")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "1,000 of 1,000" in html and 'class="bar bad"' in html and "Quota reached" in html


def test_dun1_past_due_banner_shows_the_decline_reason_and_update_button(personal, client_owner, travel):
    billing.set_payment_method(personal.account, "pm_card_chargeCustomerFail")
    scheduler.run(now=at("2026-04-30T01:00"))
    assert current(personal.account).status == "past_due"
    travel("2026-04-30T02:00")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert 'id="past-due-banner"' in html
    assert "Your payment of $14.00 failed:</strong> Your card was declined." in html
    assert "the next attempt is on 2026-05-01" in html
    assert f'<a class="btn" href="{reverse("billing:payment_method")}">Update payment method</a>' in html


def test_sus1_suspension_for_non_payment_says_why_and_what_to_do(personal, client_owner, travel):
    billing.set_payment_method(personal.account, "pm_card_chargeCustomerFail")
    scheduler.run(now=at("2026-04-30T01:00"))
    for day in (1, 3, 5, 7):  # DUN-2 retries, the last one suspends
        scheduler.run(now=at("2026-04-30T01:00") + timedelta(days=day, minutes=1))
    assert current(personal.account).status == "suspended"
    travel("2026-05-08")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert 'id="suspension-banner"' in html
    assert "suspended because the last payment retry failed" in html
    assert "Update your payment method: a full new period is charged from today" in html
    assert "Update payment method</a>" in html


def test_sus1_cancelled_trial_suspension_offers_reactivation(account, client_owner, travel):
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    billing.cancel(current(account))
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "suspended because you cancelled your free trial" in html
    assert "Reactivate trial" in html and "See plans" in html


def _history(account, n: int) -> None:
    """n issued invoices, n credit notes, n properties and n usage days."""
    props = add_properties(account, n)
    for i in range(n):
        invoice = ledger.invoice_create(account=account, subscription=current(account), kind=InvoiceKind.OVERAGE,
                                        lines=[ledger.Line(f"Overage {i}", Decimal("1.00"))], currency="USD",
                                        now=at("2026-04-02"))
        ledger.invoice_issue(invoice, now=at("2026-04-02"))
        ledger.credit_note_issue(account=account, invoice=invoice, kind="correction", amount=Decimal("0.10"),
                                 reason="test", now=at("2026-04-02"))
        UsageDay.objects.create(property=props[i % len(props)], account=account, day=date(2026, 3, 1) + timedelta(i),
                                sessions=10)


def test_overview_renders_with_a_fixed_number_of_queries(account, client_owner, travel, other_account,
                                                          django_assert_max_num_queries):
    """Speed: the overview's query count does not grow with the account's history (30 invoices, credit notes,
    properties, usage days) and stays at most 25."""
    travel("2026-04-01")
    billing.subscribe(account, "advanced", "monthly")
    billing.subscribe(other_account, "advanced", "monthly")
    _history(other_account, 1)
    client_owner.get(reverse("billing:overview"))  # warm the session and the content types
    from .conftest import login

    few = login(other_account.owner)
    with CaptureQueriesContext(connection) as small:
        assert few.get(reverse("billing:overview")).status_code == 200
    _history(account, 30)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client_owner.get(reverse("billing:overview")).status_code == 200
    assert len(small.captured_queries) <= 25
