"""Issue 23's billing pages in a real browser: the cancel page while past due says the subscription
ends at once (CAN-6) before the owner confirms; resuming without a card is refused with a link to
add one (PAY-6); the usage tables on a 390 px phone scroll inside their own labelled box instead
of being clipped. axe-core (AXE_CORE_JS) finds nothing critical or serious on each."""

from datetime import date, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import UsageDay, UsageMonth
from subscriptions import billing, scheduler
from tests.factories import AccountFactory, PropertyFactory

from .conftest import log_in
from .test_self_service import axe_clean, current

pytestmark = pytest.mark.browser


def unpaid_period_customer():
    """Personal monthly; the renewal failed and the unpaid period began two days ago (DUN-1)."""
    now = timezone.now()
    start = now - timedelta(days=33)
    account = AccountFactory(name="Late Payer Ltd")
    billing.set_payment_method(account, "pm_card_visa", now=start)
    billing.subscribe(account, "personal", "monthly", now=start)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=start + timedelta(days=1))
    end = current(account).current_period_end
    scheduler.run(now=end - timedelta(hours=23))  # the renewal fails
    scheduler.run(now=end + timedelta(minutes=1))  # the unpaid period begins
    assert current(account).status == "past_due" and current(account).current_period_start == end
    return account


def test_can6_the_cancel_page_while_past_due_says_it_ends_at_once(page, shot, catalog):
    account = unpaid_period_customer()
    log_in(page, account.owner.email)
    page.get_by_role("link", name="Cancel subscription").click()
    banner = page.locator("#cancel-now")
    expect(banner).to_contain_text("Your subscription ends at once.")
    expect(banner).to_contain_text("is voided, so you owe nothing for it")
    expect(page.get_by_text("the period you paid for")).to_have_count(0)
    axe_clean(page, "cancel page, past due")
    shot()
    page.get_by_role("button", name="Cancel my subscription").click()
    expect(page.get_by_text("Your subscription has ended and your account is on the Free plan")).to_be_visible()
    assert current(account).plan.code == "free"


def test_pay6_resume_without_a_card_is_refused_with_a_link_to_add_one(page, shot, catalog):
    now = timezone.now()
    account = AccountFactory(name="No Card Co")
    billing.set_payment_method(account, "pm_card_visa", now=now - timedelta(days=5))
    billing.subscribe(account, "personal", "monthly", now=now - timedelta(days=5))
    billing.cancel(current(account), now=now - timedelta(days=1))
    billing.payment_method_remove(account, now=now - timedelta(days=1))
    log_in(page, account.owner.email)
    page.get_by_role("button", name="Resume subscription").click()
    expect(page.get_by_role("heading", name="Add a payment method first")).to_be_visible()
    expect(page.locator("#refused")).to_contain_text("There is no card on file")
    axe_clean(page, "resume refused")
    shot()
    page.get_by_role("link", name="Add a payment method").click()
    expect(page.get_by_role("heading", name="Payment method")).to_be_visible()
    assert current(account).cancel_at_period_end


def test_use2_the_usage_tables_on_a_390px_phone_scroll_in_a_labelled_box(page, shot, catalog):
    now = timezone.now()
    account = AccountFactory(name="Acme Analytics On The Go")
    billing.set_payment_method(account, "pm_card_visa")
    billing.subscribe(account, "personal", "monthly", now=now - timedelta(days=70))
    site = PropertyFactory(account=account, name="Shop")
    this_month = date(now.year, now.month, 1)
    last_month = (this_month - timedelta(days=1)).replace(day=1)
    UsageMonth.objects.create(account=account, month=last_month, sessions=1_212_500, sessions_included=10_000)
    days = [this_month + timedelta(days=i) for i in range((now.date() - this_month).days + 1)]
    for day in days:
        UsageDay.objects.create(property=site, account=account, day=day, sessions=123_456)
    UsageMonth.objects.create(account=account, month=this_month, sessions=123_456 * len(days),
                              sessions_included=10_000)
    log_in(page, account.owner.email)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/billing/usage/")
    expect(page.locator("#months-title")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for name in (f"Sessions by day, {now:%B %Y}", "Usage by month"):
        region = page.get_by_role("region", name=name)
        expect(region).to_have_count(1)
        box = region.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (name, box)
        # nothing hidden off to the right (1 px of sub-pixel rounding aside): every cell is in view
        assert region.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), name
        assert region.get_attribute("tabindex") == "0"
        cells = region.locator("tbody tr").first.locator("td")
        for i in range(cells.count()):
            cell = cells.nth(i).bounding_box()
            assert cell is not None and cell["x"] >= 0 and cell["x"] + cell["width"] <= 390, (name, i, cell)
    expect(page.get_by_role("row", name="1,212,500")).to_have_count(1)  # still rows of a table to a reader
    axe_clean(page, "usage at 390 px")
    shot()
