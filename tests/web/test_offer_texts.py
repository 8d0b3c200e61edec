"""The plans page and the quotes say what a change really does (issue 23, item 9): a trial is
offered only where one starts (TRI-1), a downgrade already scheduled is not offered again (DWN-1),
a lower limit is stated on the offer and in the quote, a quote says what it clears (UPG-5), one
quote writes its dates one way, one pluralising helper, "the EU", and no "paid service" during a
trial."""

import re
from decimal import Decimal

from django.urls import reverse

from invoices.tax_rules import EXPORT, TaxDecision, tax_line_text
from subscriptions import billing
from subscriptions.statement import account_statement
from tests.factories import PlanFactory

from .conftest import current

MONTH_NAMES = re.compile(r"(January|February|March|April|May|June|July|August|September|October|November|"
                         r"December) \d")


def _text(response) -> str:
    return response.content.decode()


def _quote(client, plan, cycle) -> str:
    return _text(client.get(reverse("billing:change"), {"plan": plan, "cycle": cycle}))


def test_tri1_the_plans_page_offers_no_trial_to_a_paying_customer(account, client_owner, travel):
    travel("2026-04-01")
    assert "14-day free trial" in _text(client_owner.get(reverse("billing:plans")))  # on Free, never trialled
    billing.subscribe(account, "personal", "monthly")  # paying, without a trial
    page = _text(client_owner.get(reverse("billing:plans")))
    assert "free trial" not in page


def test_dwn1_a_scheduled_downgrade_is_not_offered_again(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "advanced", "monthly")
    billing.change_plan(current(account), "personal", "monthly")
    page = _text(client_owner.get(reverse("billing:plans")))
    assert "Scheduled for 2026-05-01" in page
    assert "Downgrade to Personal <span class=\"small\">(monthly" not in page  # yearly is another change
    assert "Downgrade to Free" in page


def test_upg5_the_quote_says_it_clears_a_scheduled_downgrade_or_cancellation(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    billing.change_plan(current(account), "free", "monthly")
    assert ("This upgrade clears your scheduled change to Free on 2026-05-01."
            in _quote(client_owner, "advanced", "monthly"))
    billing.resume(current(account))
    billing.cancel(current(account))
    assert ("This upgrade clears your cancellation: your subscription no longer ends on 2026-05-01 and renews."
            in _quote(client_owner, "advanced", "monthly"))


def test_cat3_an_offer_that_lowers_the_custom_plans_limit_says_so(account, client_owner, travel):
    PlanFactory(code="custom-pro", name="Custom Pro", rank=2, monthly_price=Decimal("49.00"), yearly_price=None,
                limit_properties=25, limit_sessions=100000, extra_property_monthly=Decimal("30.00"),
                overage_per_1000=Decimal("1.50"), public=False, account=account, trial_days=0)
    travel("2026-04-01")
    billing.subscribe(account, "custom-pro", "monthly")
    plans = _text(client_owner.get(reverse("billing:plans")))
    offer = plans[plans.index('id="plan-advanced"'):]
    assert "Upgrade to Advanced" in offer and "Your property limit goes from 25 to 10." in offer
    assert "Your property limit goes from 25 to 10." in _quote(client_owner, "advanced", "yearly")


def test_pay3_one_quote_writes_its_dates_one_way(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    travel("2026-04-16")
    page = _quote(client_owner, "advanced", "monthly")
    assert "Renews on 2026-05-01" in page and "on 2026-04-30" in page
    assert not MONTH_NAMES.search(page), MONTH_NAMES.search(page)


def test_add1_one_extra_property_is_singular(account, client_owner, travel):
    travel("2026-06-01")
    billing.subscribe(account, "advanced", "monthly")
    travel("2026-06-11")
    page = _text(client_owner.get(reverse("billing:extra_properties"), {"quantity": 1}))
    assert "1 extra property" in page and "1 extra properties" not in page


def test_tax3_export_mention_writes_the_eu_in_capitals():
    description, _ = tax_line_text(TaxDecision(EXPORT, Decimal("0"), "US", ""), Decimal("29.00"), Decimal("0"),
                                   "USD")
    assert description == "VAT 0 % (export, outside the EU)"


def test_tri4_no_paid_service_is_said_to_end_during_a_trial(account, client_owner, travel):
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    billing.change_plan(current(account), "free", "monthly")  # the trial then moves to Free
    sentence = account_statement(account).next_charge_sentence
    assert "paid service" not in sentence and "your free trial ends on April 15, 2026" in sentence
    page = _text(client_owner.get(reverse("billing:overview")))
    assert "paid service" not in page and "your free trial ends on 2026-04-15" in page
