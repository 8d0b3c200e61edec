"""The billing engine charging through Stripe (localstripe): PAY-1, PAY-2, UPG-4, DUN-4.
Needs the engine (subscriptions.billing)."""

from decimal import Decimal

import pytest
import stripe

from invoices.gateways.stripe import METADATA_KEY
from invoices.models import InvoiceStatus, Payment, PaymentStatus
from tests.stripe.conftest import SECRET_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(localstripe, catalog):
    from tests.factories import AccountFactory

    return AccountFactory()


def test_pay1_set_payment_method_stores_the_card_and_the_stripe_customer(account):
    from subscriptions import billing

    method = billing.set_payment_method(account, "pm_card_visa")

    account.refresh_from_db()
    assert account.gateway_customer_id.startswith("cus_")
    assert (method.gateway, method.brand, method.last4, method.is_default) == ("stripe", "visa", "4242", True)
    assert method.fingerprint
    customer = stripe.Customer.retrieve(account.gateway_customer_id, api_key=SECRET_KEY)
    assert customer.invoice_settings.default_payment_method == method.gateway_id


def test_pay2_subscribe_charges_once_through_stripe_with_the_payments_key(account):
    from subscriptions import billing

    billing.set_payment_method(account, "pm_card_visa")
    subscription = billing.subscribe(account, "personal")

    assert subscription.plan.code == "personal"
    payment = Payment.objects.get(account=account)
    assert payment.status == PaymentStatus.SUCCEEDED and payment.invoice.status == InvoiceStatus.PAID
    intent = stripe.PaymentIntent.retrieve(payment.gateway_reference, api_key=SECRET_KEY)
    assert (intent.amount, intent.currency, intent.status) == (1400, "usd", "succeeded")
    assert intent.metadata[METADATA_KEY] == payment.idempotency_key
    account.refresh_from_db()
    assert len(stripe.Charge.list(customer=account.gateway_customer_id, api_key=SECRET_KEY).data) == 1


def test_upg4_a_declined_first_charge_changes_nothing_and_says_why(account):
    from subscriptions import billing

    billing.set_payment_method(account, "pm_card_chargeCustomerFail")
    with pytest.raises(billing.PaymentDeclined) as declined:
        billing.subscribe(account, "personal")

    assert "Your card was declined." in str(declined.value)
    assert account.subscription.plan.code == "free"
    payment = Payment.objects.get(account=account)
    assert payment.status == PaymentStatus.FAILED and payment.decline_code == "card_declined"
    assert payment.gateway_reference.startswith("pi_")


def test_pay1_a_card_refused_when_attached_is_not_saved(account):
    from invoices.models import PaymentMethod
    from subscriptions import billing

    declining = stripe.PaymentMethod.create(
        type="card", card={"number": "4000000000000002", "exp_month": 12, "exp_year": 2031, "cvc": "123"},
        api_key=SECRET_KEY,
    )
    with pytest.raises(billing.PaymentDeclined):
        billing.set_payment_method(account, declining.id)
    assert not PaymentMethod.objects.filter(account=account).exists()


def test_ref_a_refund_through_the_engine_reaches_stripe(account):
    """REF-4: a staff refund made through the engine (begin, send, record) reaches Stripe as one refund of 1400 cents on
    the payment's intent."""
    from subscriptions import billing, charges

    billing.set_payment_method(account, "pm_card_visa")
    billing.subscribe(account, "personal")
    payment = Payment.objects.get(account=account)

    begun = charges.refunds_begin([(payment, Decimal("14.00"))], key_prefix="ref-test-1",
                                  reason="System failure (REF-4)", actor=None, now=payment.attempted_at)
    [refund] = charges.refunds_send_and_record(begun, now=payment.attempted_at)

    assert refund.gateway_reference.startswith("re_")
    refunds = stripe.Refund.list(payment_intent=payment.gateway_reference, api_key=SECRET_KEY).data
    assert [(r.id, r.amount) for r in refunds] == [(refund.gateway_reference, 1400)]
