"""D-5 in a real browser: sign-up takes the browser's time zone; the owner changes it on the billing
details page and reads from when it applies."""

import pytest

from accounts.models import Account
from subscriptions import billing
from tests.subscriptions.conftest import at

from .conftest import ARTIFACTS, sign_up

pytestmark = pytest.mark.browser


def test_d5_sign_up_in_kolkata_then_choose_kiritimati_on_the_billing_details_page(browser, live_server, catalog,
                                                                                 transactional_db):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900},
                                  timezone_id="Asia/Kolkata")
    page = context.new_page()
    try:
        sign_up(page, "Zone Co", "owner@zone.example", "a-long-passphrase-42")
        account = Account.objects.get(name="Zone Co")
        assert account.timezone == "Asia/Kolkata"  # Chromium says "Asia/Calcutta", CLDR's older name

        billing.set_payment_method(account, "pm_card_visa")
        billing.subscribe(account, "personal", now=at("2026-01-30T19:00"))  # local Jan 31 00:30
        page.goto("/billing/details/")
        assert page.get_by_label("Billing time zone").input_value() == "Asia/Kolkata"
        page.get_by_label("Billing time zone").select_option("Pacific/Kiritimati")
        page.get_by_role("button", name="Save time zone").click()
        page.wait_for_url("**/billing/details/")
        text = page.content()
        assert "Billing time zone saved." in text
        assert "Your current period follows the calendar of Asia/Kolkata and still ends on 2026-02-28" in text
        assert page.get_by_label("Billing time zone").input_value() == "Pacific/Kiritimati"
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "test_d5_billing_zone.png"), full_page=True)
        account.refresh_from_db()
        assert account.timezone == "Pacific/Kiritimati"
    finally:
        context.close()
