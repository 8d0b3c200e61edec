"""What the billing pages tell customers matches the ledger (issue 14's reports, each seen in use)."""

from decimal import Decimal

from django.urls import reverse

from accounts.models import Account
from subscriptions import billing, selectors
from tests.factories import PlanFactory

from .conftest import at


def test_tri2_the_plans_page_offers_no_free_trial_once_the_trial_was_used(account, client_owner, travel):
    travel("2026-04-01")
    Account.objects.filter(pk=account.pk).update(trial_used_at=at("2026-01-15"))
    html = client_owner.get(reverse("billing:plans")).content.decode()
    assert "already had a free trial" in html and "-day free trial" not in html


def test_dwn1_yearly_to_monthly_on_a_dearer_plan_is_a_switch_at_period_end_not_a_downgrade(account, catalog):
    """A custom plan dearer than the current one was labelled "Downgrade to Acme Pro (monthly, $49.00)"."""
    pro = PlanFactory(code="acme-pro", name="Acme Pro", rank=2, monthly_price=Decimal("49.00"), yearly_price=None,
                      public=False, account=account)
    sub = billing.subscribe(account, "personal", "yearly", now=at("2026-04-01"))
    assert selectors.plan_action(sub, pro, "monthly", "refused") == (
        "downgrade", "Switch to Acme Pro (monthly) at period end")
    assert selectors.plan_action(sub, catalog["personal"], "monthly", "refused") == ("downgrade", "Switch to monthly")


def test_add3_the_downgrade_quote_says_the_extra_properties_end(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    billing.set_extra_properties(sub, 2, now=at("2026-04-02"))
    quote = billing.preview_change(sub, "personal", "monthly", now=at("2026-04-10"))
    assert "Your 2 extra properties end then: Personal does not offer extra properties." in quote.notes


def test_use3_on_free_after_a_bigger_plan_the_usage_panel_says_whose_quota_this_month_is(
    account, client_owner, travel
):
    """The panel read "0 of 250,000 sessions" on Free without saying why (USE-3: the month keeps the
    highest quota of its plans)."""
    from accounts.models import UsageMonth

    travel("2026-04-10")
    UsageMonth.objects.create(account=account, month=at("2026-04-01").date(), sessions=0, sessions_included=100_000)
    html = client_owner.get(reverse("billing:overview")).content.decode()
    assert "0 of 100,000" in html
    assert ("This month's quota of 100,000 sessions is that of the plan you had earlier this month; "
            "from next month it is 1,000.") in html


def test_pay4_an_upgrade_line_charges_from_the_change_to_the_period_end(account):
    """The upgrade line bought on 04-16 said 04-01 to 05-01, the whole period (PAY-4)."""
    from invoices.models import Invoice

    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16T10:00"))
    upgrade = Invoice.objects.get(account=account, kind="upgrade")
    [line] = upgrade.lines.all()
    assert (line.period_start, line.period_end) == (at("2026-04-16T10:00"), at("2026-05-01"))
    assert (upgrade.period_start, upgrade.period_end) == (at("2026-04-16T10:00"), at("2026-05-01"))
    assert "(2026-04-16 to 2026-05-01)" in line.description and line.amount == Decimal("7.50")


def test_add1_the_extra_properties_line_says_how_many_and_from_when(account, client_owner, travel):
    """The HTML invoice showed "2 extra properties ... QTY 1" for a line bought mid-period."""
    from invoices.models import Invoice

    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    billing.set_extra_properties(sub, 2, now=at("2026-06-11"))
    invoice = Invoice.objects.get(account=account, kind="add_on")
    [line] = invoice.lines.all()
    assert (line.quantity, line.unit_price, line.amount) == (Decimal("2"), Decimal("30.00"), Decimal("40.00"))
    assert (line.period_start, line.period_end) == (at("2026-06-11"), at("2026-07-01"))
    travel("2026-06-12")
    html = client_owner.get(reverse("invoices:detail", args=[invoice.pk])).content.decode()
    assert '<td class="num" data-label="Qty">2</td>' in html  # the quantity column (stacked on a phone)


def test_inv2_a_refunded_invoice_says_refunded_not_paid(account, client_owner, travel):
    """A refunded invoice still showed "Paid" on the overview and the invoice list."""
    from invoices.models import Invoice
    from subscriptions import staff
    from tests.factories import UserFactory

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    invoice = Invoice.objects.get(account=account)
    manager = UserFactory(is_staff=True, is_superuser=True)
    staff.refund_invoice(invoice, reason="Tracking outage", actor=manager, now=at("2026-04-05"))
    invoice = Invoice.objects.get(pk=invoice.pk)
    assert invoice.status == "paid" and invoice.status_label == "Refunded"
    travel("2026-04-06")
    for url in (reverse("billing:overview"), reverse("invoices:list")):
        html = client_owner.get(url).content.decode()
        assert '<span class="badge warn">Refunded</span>' in html and ">Paid</span>" not in html, url


def test_dun4_when_a_past_due_renewal_is_paid_the_page_shows_the_new_period_at_once(account, client_owner, travel):
    """After the period ended while past due, paying (a new card) left the page on the old period
    until the next billing run rolled it over."""
    from subscriptions import scheduler

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-02"))
    scheduler.run(at("2026-04-30T01:00"))  # the renewal fails: past due (DUN-1)
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-05-01T09:00"))  # DUN-4: retried, paid
    travel("2026-05-01T09:05")  # before the next run rolls the period over
    html = client_owner.get(reverse("billing:overview")).content.decode()
    assert "2026-05-01 to 2026-06-01" in html
    assert '<dd id="next-charge">2026-05-31: $14.00</dd>' in html
