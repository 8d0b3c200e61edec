"""PAY-5 on the billing page: "pay now" on an open invoice (its page and the overview's past-due
banner) and removing the card on file, for the owner and billing roles only (ACC-1)."""

import pytest
from django.urls import reverse

from invoices.models import Invoice, InvoiceStatus, PaymentMethod, SandboxCard, SandboxCharge
from subscriptions import billing, scheduler

from .conftest import at, current, login


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def past_due(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    billing.set_payment_method(account, "pm_card_chargeDeclinedInsufficientFunds")
    scheduler.run(now=at("2026-04-30T01:00"))
    travel("2026-04-30T09:00")
    assert current(account).status == "past_due"
    return Invoice.objects.get(account=account, kind="renewal", status=InvoiceStatus.OPEN)


def topped_up(account):
    method = PaymentMethod.objects.get(account=account, is_default=True)
    SandboxCard.objects.filter(gateway_id=method.gateway_id).update(token="pm_card_visa:topped-up")


def test_pay5_the_open_invoice_page_offers_pay_now_with_the_card_on_file(past_due, client_owner):
    html = _text(client_owner.get(reverse("invoices:detail", args=[past_due.pk])))
    assert "$14.00 is due" in html and "Pay it now with your card on file, Visa •••• 9995" in html
    assert f'action="/billing/invoices/{past_due.pk}/pay/"' in html and "Pay $14.00 now" in html


def test_pay5_pay_now_from_the_invoice_page_pays_it(past_due, client_owner):
    topped_up(past_due.account)
    response = client_owner.post(reverse("invoices:pay", args=[past_due.pk]), follow=True)
    html = _text(response)
    assert f"Paid $14.00: invoice {past_due.number} is paid." in html
    assert "your subscription is in good standing again" in html and 'id="pay-now"' not in html
    past_due.refresh_from_db()
    assert past_due.status == InvoiceStatus.PAID and current(past_due.account).status == "active"


def test_pay5_a_declined_pay_now_shows_the_reason_and_the_way_out(past_due, client_owner):
    response = client_owner.post(reverse("invoices:pay", args=[past_due.pk]))
    html = _text(response)
    assert response.status_code == 402
    assert "The payment did not go through." in html and "Your card has insufficient funds." in html
    assert 'href="/billing/payment-method/">Update payment method' in html


def test_pay5_a_double_click_charges_once_and_says_the_invoice_is_paid(past_due, client_owner):
    topped_up(past_due.account)
    client_owner.post(reverse("invoices:pay", args=[past_due.pk]))
    charges = SandboxCharge.objects.count()
    html = _text(client_owner.post(reverse("invoices:pay", args=[past_due.pk]), follow=True))
    assert f"Invoice {past_due.number} is paid: nothing is owed on it." in html
    assert SandboxCharge.objects.count() == charges


def test_pay5_the_past_due_banner_pays_what_is_owed(past_due, client_owner):
    html = _text(client_owner.get(reverse("billing:overview")))
    assert 'id="pay-open"' in html and "Pay $14.00 now with Visa •••• 9995" in html
    topped_up(past_due.account)
    html = _text(client_owner.post(reverse("billing:pay_open"), follow=True))
    assert f"Paid $14.00 (invoice {past_due.number})." in html and 'id="past-due-banner"' not in html


def test_acc1_members_cannot_pay_and_billing_users_can(past_due, member_user, billing_user):
    assert login(member_user).post(reverse("invoices:pay", args=[past_due.pk])).status_code == 403
    assert login(member_user).post(reverse("billing:pay_open")).status_code == 403
    topped_up(past_due.account)
    assert login(billing_user).post(reverse("invoices:pay", args=[past_due.pk])).status_code == 302
    past_due.refresh_from_db()
    assert past_due.status == InvoiceStatus.PAID


def test_acc1_another_accounts_invoice_cannot_be_paid(past_due, other_account):
    from accounts.models import Role

    stranger = other_account.memberships.get(role=Role.OWNER).user
    assert login(stranger).post(reverse("invoices:pay", args=[past_due.pk])).status_code == 404
    assert login(stranger).get(reverse("invoices:pay", args=[past_due.pk])).status_code in (404, 405)


def test_pay5_the_payment_page_explains_why_the_card_stays(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    html = _text(client_owner.get(reverse("billing:payment_method")))
    assert "You cannot remove this card now." in html and "The next charge of your Personal subscription" in html
    assert 'id="remove-card"' not in html
    response = client_owner.post(reverse("billing:payment_method_remove"), follow=True)
    assert "Your card was not removed. The next charge of your Personal subscription" in _text(response)
    assert PaymentMethod.objects.get(account=account, is_default=True).detached_at is None


def test_pay5_on_free_the_payment_page_removes_the_card(account, client_owner):
    html = _text(client_owner.get(reverse("billing:payment_method")))
    assert 'id="remove-card"' in html and "Remove this card" in html
    html = _text(client_owner.post(reverse("billing:payment_method_remove"), follow=True))
    assert "Your card Visa •••• 4242" in html and "is removed" in html and "No card on file." in html
    assert not PaymentMethod.objects.filter(account=account, is_default=True).exists()


def test_acc1_members_cannot_remove_the_card(account, member_user):
    assert login(member_user).post(reverse("billing:payment_method_remove")).status_code == 403
    assert PaymentMethod.objects.filter(account=account, is_default=True).exists()
