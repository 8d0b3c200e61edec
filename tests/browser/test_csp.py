"""Issue 28 item 4 in Chromium: with the Content-Security-Policy on, the pages' own scripts still
run (the sign-up page's time zone, the submit-once guard, the staff API docs) and the browser
reports no violation."""

import pytest
from playwright.sync_api import expect

from subscriptions import billing
from tests.browser.conftest import PASSWORD, log_in
from tests.factories import AccountFactory, UserFactory
from tests.subscriptions.conftest import at

pytestmark = pytest.mark.browser


def violations_of(page) -> list[str]:
    """Every CSP violation the page reports (console errors and securitypolicyviolation events)."""
    seen = []
    page.on("console", lambda message: seen.append(message.text)
            if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text else None)
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => console.error("
                         "'Content Security Policy violation: ' + e.violatedDirective + ' ' + e.blockedURI))")
    return seen


def test_csp_pages_work_in_chromium_with_the_policy_on(page, catalog):
    """Issue 28 item 4: sign-up's nonced script runs and the billing pages load with no CSP violation in Chromium."""
    violations = violations_of(page)
    page.goto("/signup/")
    expect(page.locator("#id_timezone")).not_to_have_value("")  # the nonced inline script ran
    user = UserFactory()
    account = AccountFactory(owner=user)
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-01-01"))
    log_in(page, user.email, PASSWORD)
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    for path in ("/billing/plans/", "/billing/payment-method/", "/billing/invoices/", "/account/properties/"):
        page.goto(path)
        expect(page.locator("main, body").first).to_be_visible()
    assert violations == []


def test_csp_the_staff_api_docs_render_from_local_files(page, catalog):
    """Issue 28 item 4: Swagger UI renders for staff from django-ninja's static files, no CDN, no violation."""
    violations = violations_of(page)
    staff = UserFactory(is_staff=True, is_superuser=True)
    page.goto("/admin/login/")
    page.get_by_label("Username").fill(staff.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Billing back office")).to_be_visible()
    page.goto("/api/v1/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Prorata usage and entitlements API")
    assert violations == []
