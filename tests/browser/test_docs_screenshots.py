"""Screenshots of the main billing pages for the README (docs/screenshots/, 1280 px wide).

Run with UPDATE_SCREENSHOTS=1 to refresh them:
    UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser/test_docs_screenshots.py
"""

import os
from datetime import date
from pathlib import Path

import pytest
from django.utils import timezone

from accounts import preferences
from accounts.models import UsageMonth
from subscriptions import billing
from tests.factories import AccountFactory, PropertyFactory

from .conftest import ARTIFACTS, log_in

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.environ.get("UPDATE_SCREENSHOTS"), reason="set UPDATE_SCREENSHOTS=1 to refresh"),
]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def test_docs_screenshots_of_the_main_pages(page, catalog):
    """Docs: refreshes the README screenshots (only with UPDATE_SCREENSHOTS=1);
    each page must show its key text first."""
    account = AccountFactory(name="Acme Analytics")
    preferences.billing_details_update(account, company="Acme Analytics GmbH", address="Hauptstr. 1\n10115 Berlin",
                                       country="DE", vat_id="DE136695976")
    billing.set_payment_method(account, "pm_card_visa")
    billing.subscribe(account, "personal", "monthly")
    for name, domain in (("Shop", "shop.acme.example"), ("Blog", "blog.acme.example")):
        PropertyFactory(account=account, name=name, domain=domain)
    month = timezone.now().date().replace(day=1)
    UsageMonth.objects.update_or_create(account=account, month=date(month.year, month.month, 1),
                                        defaults={"sessions": 8_420, "sessions_included": 10_000})
    DOCS.mkdir(parents=True, exist_ok=True)
    log_in(page, account.owner.email)

    def save(name: str, must_show: str) -> None:
        assert must_show in page.content()
        page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)

    page.goto("/billing/")
    save("overview", "Upcoming charges")
    page.goto("/billing/plans/")
    save("plans", "Upgrade to Advanced")
    page.get_by_role("button", name="Switch to yearly").click()
    save("quote", "forfeited")
    page.goto("/billing/invoices/")
    save("invoices", "First period")
    page.goto("/billing/payment-method/")
    save("payment-method", "pm_card_chargeCustomerFail")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone, for our own look
    page.goto("/billing/")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "overview-phone.png"), full_page=True)
