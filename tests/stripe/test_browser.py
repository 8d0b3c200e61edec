"""PAY-1 in a real browser: the owner adds a card through the Stripe Elements form (Stripe.js served
by the emulator's stand-in at /js.stripe.com/v3/), the SetupIntent is confirmed in the browser,
and the card shows on the payment-method and billing pages. Needs the engine and Chromium.
"""

from pathlib import Path

import pytest
import stripe

from tests.stripe.conftest import SECRET_KEY

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "password-123"  # tests.factories.UserFactory

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls made between browser
    # steps are synchronous and sequential, so Django's async guard does not apply. Only while this
    # module runs: a process started later must not inherit it (check --deploy refuses it).
    with pytest.MonkeyPatch.context() as env, sync_playwright() as playwright:
        env.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server, transactional_db, localstripe):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    yield tab
    context.close()


def log_in(page, email: str) -> None:
    page.goto("/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/billing/")


def fill_card(page, number: str) -> None:
    """The stand-in Element renders plain inputs named by their placeholder."""
    form = page.locator("#stripe-card-element")
    form.get_by_placeholder("number").fill(number)
    form.get_by_placeholder("exp_month").fill("12")
    form.get_by_placeholder("exp_year").fill("31")
    form.get_by_placeholder("cvc").fill("123")
    form.get_by_placeholder("postal_code").fill("10001")


def test_pay1_owner_adds_a_card_through_stripe_elements_and_sees_it(page, catalog):
    from invoices.models import PaymentMethod
    from tests.factories import AccountFactory, UserFactory

    account = AccountFactory(owner=UserFactory(username="cardholder@example.com"))
    log_in(page, "cardholder@example.com")

    page.goto("/billing/payment-method/")
    script = page.locator("script[src$='/js.stripe.com/v3/']")
    script.wait_for(state="attached")
    fill_card(page, "4242424242424242")
    page.get_by_role("button", name="Save card").click()
    # The same URL before and after: wait for the confirmation, not for the address.
    page.get_by_text("Your card Visa •••• 4242 (12/2031) is saved.").wait_for()

    assert "•••• 4242" in page.locator("#current-card").locator("..").inner_text()
    method = PaymentMethod.objects.get(account=account)
    assert (method.gateway, method.last4, method.exp_month, method.exp_year) == ("stripe", "4242", 12, 2031)
    account.refresh_from_db()
    attached = stripe.PaymentMethod.list(customer=account.gateway_customer_id, type="card", api_key=SECRET_KEY)
    assert [pm.id for pm in attached.data] == [method.gateway_id]

    page.goto("/billing/")
    assert "Visa •••• 4242 (12/2031)" in page.content()


def test_pay1_a_card_refused_by_the_bank_shows_the_reason_and_saves_nothing(page, catalog):
    from invoices.models import PaymentMethod
    from tests.factories import AccountFactory, UserFactory

    account = AccountFactory(owner=UserFactory(username="refused@example.com"))
    log_in(page, "refused@example.com")

    page.goto("/billing/payment-method/")
    fill_card(page, "4000000000000002")
    page.get_by_role("button", name="Save card").click()

    error = page.locator("#stripe-card-error")
    error.wait_for(state="visible")
    assert "declined" in error.inner_text().lower()
    assert not PaymentMethod.objects.filter(account=account).exists()


def test_a_payment_method_not_from_our_setup_intent_is_refused(client, localstripe, catalog):
    """The save view only accepts the pm_… our SetupIntent produced for this account."""
    from invoices.models import PaymentMethod
    from tests.factories import AccountFactory, UserFactory

    user = UserFactory(username="forger@example.com")
    account = AccountFactory(owner=user)
    client.force_login(user)
    assert client.post("/billing/stripe/setup-intent/").status_code == 200
    foreign = stripe.PaymentMethod.create(
        type="card", card={"number": "4242424242424242", "exp_month": 1, "exp_year": 2031, "cvc": "123"},
        api_key=SECRET_KEY,
    )

    response = client.post("/billing/stripe/card/", {"payment_method": foreign.id}, follow=True)

    assert "not set up through this form" in response.content.decode()
    assert not PaymentMethod.objects.filter(account=account).exists()


def test_the_setup_intent_endpoint_is_off_with_the_sandbox(client, db, catalog):
    """PAY-1: with the sandbox gateway (the default) the Stripe SetupIntent endpoint does not exist (404)."""
    from tests.factories import AccountFactory, UserFactory

    user = UserFactory(username="sandboxed@example.com")
    AccountFactory(owner=user)
    client.force_login(user)
    assert client.post("/billing/stripe/setup-intent/").status_code == 404
