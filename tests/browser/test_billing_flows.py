"""The customer billing page in a real browser: sign up and trial, upgrade with the quoted amount,
a refused downgrade, cancel and resume, a declined card and its fix, an invoice PDF."""

import subprocess
from datetime import timedelta

import pytest

from invoices.models import Invoice, InvoiceKind
from subscriptions import billing, scheduler, terms
from subscriptions.pricing import format_money
from tests.factories import AccountFactory, PropertyFactory

from .conftest import ARTIFACTS, log_in, sign_up

pytestmark = pytest.mark.browser


def current(account):
    return account.subscriptions.select_related("plan").order_by("-id").first()


@pytest.fixture
def customer(catalog, transactional_db):
    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa")
    return account


def test_signup_then_start_a_trial_after_adding_the_test_card(page, shot, catalog):
    """ACC-1, TRI-1: a visitor signs up onto Free, adds the test card, and starts a 14-day Personal trial quoted at
    $0.00."""
    sign_up(page, "Browser Co", "owner@browser.example", "a-long-passphrase-42")
    assert "You are on the Free plan" in page.content()

    page.get_by_role("link", name="Plans", exact=True).click()
    page.locator("#plan-personal").locator("..").get_by_role("link", name="Start free trial (monthly)").click()
    page.get_by_label("pm_card_visa: Visa •••• 4242, every charge succeeds").check()
    page.get_by_role("button", name="Save card").click()
    page.wait_for_url("**/billing/plans/")
    page.locator("#plan-personal").locator("..").get_by_role("button", name="Start free trial").first.click()
    assert page.locator("#amount-due").inner_text() == "$0.00"
    assert "14-day free trial of Personal" in page.content()
    page.locator("#confirm").click()
    page.wait_for_url("**/billing/")
    assert "Your free trial of Personal has started" in page.content()
    assert page.locator(".badge", has_text="Trialing").count() == 1
    shot()
    from accounts.models import Account

    account = Account.objects.get(name="Browser Co")
    assert current(account).status == "trialing"


def test_upgrade_shows_the_engines_quote_and_charges_it(page, shot, customer):
    """PAY-3, PAY-4: the upgrade page shows the engine's quote (amount and computation), and the invoice charged on
    confirmation equals it."""
    billing.subscribe(customer, "personal", "monthly")
    log_in(page, customer.owner.email)
    page.get_by_role("link", name="Change plan").click()
    page.get_by_role("button", name="Upgrade to Advanced (monthly").click()
    expected = billing.preview_change(current(customer), "advanced", "monthly")
    shown = page.locator("#amount-due").inner_text()
    assert shown == format_money(expected.amount_due, expected.currency)
    assert expected.lines[0].computation in page.content()
    shot("quote")
    page.locator("#confirm").click()
    page.wait_for_url("**/billing/")
    invoice = Invoice.objects.get(account=customer, kind=InvoiceKind.UPGRADE)
    assert invoice.total == expected.amount_due
    assert f"Charged {shown} (invoice {invoice.number})" in page.content()
    assert current(customer).plan.code == "advanced"
    shot()


def test_refused_downgrade_shows_what_to_remove(page, shot, customer):
    """DWN-3: a downgrade the account does not fit is refused with what to remove and a link to the properties; nothing
    is scheduled."""
    billing.subscribe(customer, "advanced", "monthly")
    for _ in range(5):
        PropertyFactory(account=customer)
    log_in(page, customer.owner.email)
    page.goto("/billing/plans/")
    page.get_by_role("button", name="Downgrade to Personal (monthly").click()
    message = page.locator("#refused").inner_text()
    assert "Personal allows 3 properties; you have 5. Delete 2 properties to downgrade." in message
    shot()
    page.get_by_role("link", name="Go to your properties").click()
    page.wait_for_url("**/account/properties/")
    assert current(customer).scheduled_plan_id is None


def test_cancel_then_resume(page, shot, customer):
    """CAN-2, CAN-3, CAN-5: the owner cancels with a reason (kept), service runs until the period end, and the owner
    resumes."""
    billing.subscribe(customer, "personal", "monthly")
    sub = current(customer)
    until = f"{terms.local_date(customer, sub.current_period_end):%Y-%m-%d}"
    log_in(page, customer.owner.email)
    page.get_by_role("link", name="Cancel subscription").click()
    page.get_by_label("I am switching to another service").check()
    page.get_by_label("Anything else you want to tell us? (optional)").fill("Trying another tool")
    page.get_by_role("button", name="Cancel my subscription").click()
    page.wait_for_url("**/billing/")
    assert f"service runs until {until}" in page.content()
    shot("cancelled")
    assert current(customer).cancel_reason == "Trying another tool"
    assert current(customer).cancel_reason_code == "switched_service"
    page.get_by_role("button", name="Resume subscription").click()
    page.wait_for_url("**/billing/")
    assert "Your subscription continues" in page.content()
    assert not current(customer).cancel_at_period_end
    shot()


def test_declined_card_past_due_banner_then_fixing_the_card(page, shot, customer):
    """DUN-1, DUN-4: a failed renewal shows the past-due banner with the decline reason; a new card pays the open
    invoice at once and the subscription is active again."""
    billing.subscribe(customer, "personal", "monthly")
    log_in(page, customer.owner.email)
    page.get_by_role("link", name="Update payment method").first.click()
    page.get_by_label("pm_card_chargeCustomerFail: attaches; every charge is declined").check()
    page.get_by_role("button", name="Save card").click()
    assert "•••• 0341" in page.content()

    scheduler.run(now=current(customer).current_period_end - timedelta(hours=1))  # the renewal fails
    assert current(customer).status == "past_due"
    page.goto("/billing/")
    banner = page.locator("#past-due-banner")
    assert "Your card was declined." in banner.inner_text()
    shot("past-due")
    banner.get_by_role("link", name="Update payment method").click()
    page.get_by_label("pm_card_visa: Visa •••• 4242, every charge succeeds").check()
    page.get_by_role("button", name="Save card").click()
    page.wait_for_url("**/billing/")
    assert "The open invoice was paid and your subscription is active again." in page.content()
    assert page.locator("#past-due-banner").count() == 0
    assert current(customer).status == "active"
    shot()


def test_download_an_invoice_pdf(page, shot, customer):
    """INV-3: the owner opens an invoice from the billing page and downloads it as a PDF that carries its number."""
    billing.subscribe(customer, "personal", "monthly")
    invoice = Invoice.objects.get(account=customer, number__isnull=False)
    log_in(page, customer.owner.email)
    page.get_by_role("link", name="Invoices", exact=True).click()
    page.get_by_role("link", name=invoice.number, exact=True).click()
    shot()
    with page.expect_download() as info:
        page.locator("#download").click()
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"invoice-{invoice.number}.pdf"
    info.value.save_as(path)
    assert path.read_bytes().startswith(b"%PDF")
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout
    assert invoice.number in text


def test_pages_fit_a_phone_with_44px_buttons_and_visible_focus(page, shot, customer):
    """Accessibility: the billing pages fit a 390 px phone screen with no sideways scrolling, buttons are at least 44 px
    high, and keyboard focus is visible."""
    billing.subscribe(customer, "personal", "monthly")
    log_in(page, customer.owner.email)
    page.set_viewport_size({"width": 390, "height": 844})
    checked = 0
    for url in ("/billing/", "/billing/plans/", "/billing/invoices/", "/billing/payment-method/",
                "/billing/change/?plan=advanced&cycle=yearly", "/billing/emails/", "/billing/cancel/"):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, url
        heights = page.eval_on_selector_all("main .btn:not(.link)", "els => els.map(e => e.offsetHeight)")
        assert all(height >= 44 for height in heights), (url, heights)
        checked += len(heights)
    assert checked >= 10
    page.goto("/billing/payment-method/")
    page.locator("#content").focus()
    page.keyboard.press("Tab")
    focused = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused not in ("", "none")
    shot()
