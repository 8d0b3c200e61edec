"""The payment method page (PAY-1) and updating the card while past due (DUN-4, DUN-3)."""

from datetime import timedelta

import pytest
from django.urls import reverse

from invoices.models import InvoiceStatus
from subscriptions import billing, scheduler

from .conftest import at, current


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def past_due(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    billing.set_payment_method(account, "pm_card_chargeCustomerFail")
    scheduler.run(now=at("2026-04-30T01:00"))
    travel("2026-04-30T02:00")
    assert current(account).status == "past_due"
    return current(account)


def test_pay1_page_shows_brand_last4_expiry_and_lists_the_sandbox_tokens(account, client_owner):
    html = _text(client_owner.get(reverse("billing:payment_method")))
    assert "<dd>Visa</dd>" in html and "•••• 4242" in html and "/2029" in html
    for token in ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds",
                  "pm_card_chargeCustomerFail"):
        assert f'value="{token}"' in html
    assert "<legend>Test card</legend>" in html


def test_pay1_a_card_declined_when_attached_is_not_saved(account, client_owner):
    response = client_owner.post(reverse("billing:payment_method"), {"token": "pm_card_chargeDeclined"})
    assert response.status_code == 402 and "Your card was declined." in _text(response)
    assert account.payment_methods.get(is_default=True).last4 == "4242"


def test_pay1_stripe_mode_shows_the_stripe_card_form(account, client_owner, settings):
    from django.template import TemplateDoesNotExist
    from django.template.loader import get_template

    try:
        get_template("invoices/stripe_card_form.html")
    except TemplateDoesNotExist:
        pytest.skip("the Stripe card form (invoices/stripe_card_form.html) is not there yet")
    settings.PAYMENT_GATEWAY = "stripe"
    html = _text(client_owner.get(reverse("billing:payment_method")))
    assert 'value="pm_card_chargeCustomerFail"' not in html


def test_dun4_updating_the_card_while_past_due_retries_at_once(past_due, client_owner):
    response = client_owner.post(reverse("billing:payment_method"), {"token": "pm_card_visa"}, follow=True)
    html = _text(response)
    assert "The open invoice was paid and your subscription is active again." in html
    assert 'id="past-due-banner"' not in html
    sub = current(past_due.account)
    assert sub.status == "active"
    assert not past_due.account.invoices.filter(status=InvoiceStatus.OPEN).exists()


def test_dun4_a_failed_retry_keeps_the_new_card_and_says_so(past_due, client_owner):
    response = client_owner.post(reverse("billing:payment_method"),
                                 {"token": "pm_card_chargeDeclinedInsufficientFunds"})
    html = _text(response)
    assert response.status_code == 402
    assert "Your new card was saved, but the retry failed: Your card has insufficient funds." in html
    assert current(past_due.account).status == "past_due"


def test_dun3_updating_the_card_after_suspension_reactivates(past_due, client_owner, travel):
    for day in (1, 3, 5, 7):
        scheduler.run(now=at("2026-04-30T01:00") + timedelta(days=day, minutes=1))
    travel("2026-05-08")
    page = _text(client_owner.get(reverse("billing:payment_method")))
    assert "Saving a working card charges a full new period from today" in page
    client_owner.post(reverse("billing:payment_method"), {"token": "pm_card_visa"})
    account = past_due.account
    account.refresh_from_db()
    assert not account.is_suspended and current(account).status == "active"


def test_tri1_adding_a_card_from_the_plans_page_returns_there(catalog, owner):
    from tests.factories import AccountFactory

    from .conftest import login

    AccountFactory(owner=owner)
    client = login(owner)
    page = _text(client.get(reverse("billing:payment_method") + "?next=plans"))
    assert '<input type="hidden" name="next" value="plans">' in page
    response = client.post(reverse("billing:payment_method"), {"token": "pm_card_visa", "next": "plans"})
    assert response["Location"] == reverse("billing:plans")
    assert "Start free trial" in _text(client.get(reverse("billing:plans")))
