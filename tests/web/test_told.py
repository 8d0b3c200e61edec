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
