"""The Stripe adapter against a running Stripe emulator (localstripe): PAY-1, PAY-2.

These need no billing engine: they drive invoices.gateways.stripe.StripeGateway directly.
"""

from decimal import Decimal

import pytest
import stripe

from invoices.gateways import CardDeclined, GatewayError, GatewayUnavailable, get_gateway
from invoices.gateways.stripe import METADATA_KEY, StripeGateway, from_minor, to_minor

pytestmark = pytest.mark.django_db


def stripe_key():
    from django.conf import settings

    return settings.STRIPE_SECRET_KEY


def charges_of(customer_id: str) -> list:
    return list(stripe.Charge.list(customer=customer_id, api_key=stripe_key()).auto_paging_iter())


def card_from_number(number: str) -> str:
    """A payment method made from a card number, as Stripe.js does in the browser."""
    pm = stripe.PaymentMethod.create(
        type="card", card={"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}, api_key=stripe_key()
    )
    return pm.id


# -- money at the boundary ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [("14.50", "USD", 1450), ("0.01", "usd", 1), ("134.40", "EUR", 13440), ("1500", "JPY", 1500)],
)
def test_amounts_cross_the_boundary_as_integer_minor_units(amount, currency, minor):
    """D-3: amounts go to Stripe and come back as exact integer minor units (cents; yen as they are), never floats."""
    assert to_minor(Decimal(amount), currency) == minor
    assert from_minor(minor, currency) == Decimal(amount)


def test_an_amount_finer_than_the_currency_is_refused_not_rounded():
    """D-3: an amount finer than its currency allows (14.505 USD, 10.5 JPY) is refused, never rounded silently."""
    with pytest.raises(GatewayError):
        to_minor(Decimal("14.505"), "USD")
    with pytest.raises(GatewayError):
        to_minor(Decimal("10.5"), "JPY")


def test_get_gateway_returns_the_stripe_adapter(settings):
    """PAY-1: PAYMENT_GATEWAY=stripe selects the Stripe adapter."""
    settings.PAYMENT_GATEWAY = "stripe"
    assert isinstance(get_gateway(), StripeGateway)


# -- customers and cards -----------------------------------------------------------------------


def test_ensure_customer_creates_one_djstripe_customer_per_account(gateway, account):
    """PAY-1: each account gets one Stripe customer, made through dj-stripe (local row linked to the account) and reused
    the second time."""
    from djstripe.models import Customer

    customer_id = gateway.ensure_customer(account)

    assert customer_id.startswith("cus_")
    assert gateway.ensure_customer(account) == customer_id  # the local row answers the second time
    local = Customer.objects.get(id=customer_id)
    assert local.subscriber == account
    remote = stripe.Customer.retrieve(customer_id, api_key=stripe_key())
    assert remote.email == "owner@example.com"
    assert remote.metadata["djstripe_subscriber"] == str(account.pk)


def test_ensure_customer_trusts_the_id_stored_on_the_account(gateway, account):
    """A Stripe customer id already stored on the account is used as it is."""
    account.gateway_customer_id = "cus_alreadyKnown"
    assert gateway.ensure_customer(account) == "cus_alreadyKnown"


def test_pay1_attach_pm_card_visa_keeps_brand_last4_expiry_fingerprint_and_default(gateway, account):
    customer_id = gateway.ensure_customer(account)

    card = gateway.attach(customer_id, "pm_card_visa")

    assert card.gateway_id.startswith("pm_") and card.gateway_id != "pm_card_visa"
    assert (card.brand, card.last4) == ("visa", "4242")
    assert 1 <= card.exp_month <= 12 and card.exp_year >= 2026
    assert card.fingerprint
    customer = stripe.Customer.retrieve(customer_id, api_key=stripe_key())
    assert customer.invoice_settings.default_payment_method == card.gateway_id


def test_pay1_the_same_card_twice_has_the_same_fingerprint(gateway, account):
    customer_id = gateway.ensure_customer(account)
    first = gateway.attach(customer_id, "pm_card_visa")
    second = gateway.attach(customer_id, "pm_card_visa")
    assert first.gateway_id != second.gateway_id
    assert first.fingerprint == second.fingerprint


def test_pay1_a_card_refused_when_attached_raises_card_declined(gateway, account):
    customer_id = gateway.ensure_customer(account)
    declining = card_from_number("4000000000000002")

    with pytest.raises(CardDeclined) as refused:
        gateway.attach(customer_id, declining)

    assert refused.value.code == "card_declined"
    assert str(refused.value)


def test_an_unknown_payment_method_is_refused_with_a_message(gateway, account):
    """PAY-1: attaching an unknown payment method is refused as a card error (CardDeclined, code invalid_token), not a
    crash."""
    customer_id = gateway.ensure_customer(account)
    with pytest.raises(CardDeclined) as refused:
        gateway.attach(customer_id, "pm_doesNotExist000")
    assert refused.value.code == "invalid_token"


# -- charges -----------------------------------------------------------------------------------


@pytest.fixture
def customer_with_card(gateway, account):
    customer_id = gateway.ensure_customer(account)
    card = gateway.attach(customer_id, "pm_card_visa")
    return customer_id, card.gateway_id


def test_pay1_off_session_charge_succeeds_with_the_idempotency_key_in_metadata(gateway, customer_with_card):
    customer_id, pm_id = customer_with_card

    result = gateway.charge(
        customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("14.50"), currency="USD",
        idempotency_key="pay:test:1", description="Personal, monthly",
    )

    assert result.succeeded and result.reference.startswith("pi_")
    intent = stripe.PaymentIntent.retrieve(result.reference, api_key=stripe_key())
    assert (intent.amount, intent.currency, intent.status) == (1450, "usd", "succeeded")
    assert intent.metadata[METADATA_KEY] == "pay:test:1"
    assert intent.customer == customer_id and intent.payment_method == pm_id


def test_pay1_a_declining_card_gives_a_failed_result_with_code_and_message(gateway, account):
    customer_id = gateway.ensure_customer(account)
    card = gateway.attach(customer_id, "pm_card_chargeCustomerFail")  # attaches, then every charge fails

    result = gateway.charge(
        customer_id=customer_id, payment_method_id=card.gateway_id, amount=Decimal("29.00"), currency="USD",
        idempotency_key="pay:test:declined",
    )

    assert not result.succeeded
    assert result.reference.startswith("pi_")
    assert result.decline_code == "card_declined"
    assert result.decline_message == "Your card was declined."
    # The failed attempt is found again by its key, with the same outcome (PAY-2).
    assert gateway.find_charge("pay:test:declined", customer_id=customer_id) == result


def test_pay1_a_card_number_that_fails_on_charge(gateway, account):
    customer_id = gateway.ensure_customer(account)
    card = gateway.attach(customer_id, card_from_number("4000000000000341"))

    result = gateway.charge(
        customer_id=customer_id, payment_method_id=card.gateway_id, amount=Decimal("5.00"), currency="USD",
        idempotency_key="pay:test:0341",
    )

    assert not result.succeeded and result.decline_code == "card_declined"


def test_pay2_retrying_with_the_same_key_charges_once(gateway, customer_with_card):
    customer_id, pm_id = customer_with_card
    kwargs = dict(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("29.00"), currency="USD",
                  idempotency_key="pay:test:retry")

    first = gateway.charge(**kwargs)
    second = gateway.charge(**kwargs)

    assert first == second
    assert [c.payment_intent for c in charges_of(customer_id)] == [first.reference]


def test_pay2_the_same_key_with_another_amount_is_refused(gateway, customer_with_card):
    customer_id, pm_id = customer_with_card
    gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("29.00"), currency="USD",
                   idempotency_key="pay:test:amount")
    with pytest.raises(GatewayError):
        gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("30.00"), currency="USD",
                       idempotency_key="pay:test:amount")
    assert len(charges_of(customer_id)) == 1


def test_pay2_find_charge_by_key(gateway, customer_with_card):
    customer_id, pm_id = customer_with_card
    made = gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("7.50"),
                          currency="USD", idempotency_key="pay:test:find")
    gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("1.00"),
                   currency="USD", idempotency_key="pay:test:other")

    assert gateway.find_charge("pay:test:find", customer_id=customer_id) == made
    assert gateway.find_charge("pay:test:never-sent", customer_id=customer_id) is None


def test_pay2_find_charge_uses_our_payment_row_to_know_the_customer(gateway, account, customer_with_card):
    """The engine calls find_charge(key) alone: the adapter reads the customer from the Payment."""
    from invoices.models import Invoice, Payment

    customer_id, pm_id = customer_with_card
    account.gateway_customer_id = customer_id
    account.save(update_fields=["gateway_customer_id"])
    invoice = Invoice.objects.create(account=account, kind="subscription", total=Decimal("14.00"))
    Payment.objects.create(invoice=invoice, account=account, amount=Decimal("14.00"),
                           idempotency_key="pay:test:row", gateway="stripe")
    made = gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("14.00"),
                          currency="USD", idempotency_key="pay:test:row")

    assert gateway.find_charge("pay:test:row") == made
    assert gateway.find_charge("pay:test:no-such-payment") is None


def test_pay2_find_charge_when_the_account_id_was_not_stored_uses_the_djstripe_customer(
    gateway, account, customer_with_card
):
    from invoices.models import Invoice, Payment

    customer_id, pm_id = customer_with_card  # ensure_customer made dj-stripe's row; the account has no id
    invoice = Invoice.objects.create(account=account, kind="subscription", total=Decimal("14.00"))
    Payment.objects.create(invoice=invoice, account=account, amount=Decimal("14.00"),
                           idempotency_key="pay:test:djstripe", gateway="stripe")
    made = gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("14.00"),
                          currency="USD", idempotency_key="pay:test:djstripe")

    assert gateway.find_charge("pay:test:djstripe") == made


# -- refunds -----------------------------------------------------------------------------------


def test_refund_in_part_then_the_rest(gateway, customer_with_card):
    """The Stripe adapter refunds a charge in parts: $10.00, then $19.00; both are
    listed and $29.00 is refunded in all."""
    customer_id, pm_id = customer_with_card
    paid = gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("29.00"),
                          currency="USD", idempotency_key="pay:test:refund")

    part = gateway.refund(reference=paid.reference, amount=Decimal("10.00"), idempotency_key="refund:1")
    rest = gateway.refund(reference=paid.reference, amount=Decimal("19.00"), idempotency_key="refund:2")

    assert part.amount == Decimal("10.00") and part.reference.startswith("re_")
    assert rest.amount == Decimal("19.00")
    charge = stripe.Charge.list(customer=customer_id, api_key=stripe_key()).data[0]
    assert charge.amount_refunded == 2900
    assert {r["id"] for r in gateway.list_refunds(paid.reference)} == {part.reference, rest.reference}


def test_refund_with_the_same_key_refunds_once(gateway, customer_with_card):
    """Safety: a refund retried with the same idempotency key refunds once and returns the same result."""
    customer_id, pm_id = customer_with_card
    paid = gateway.charge(customer_id=customer_id, payment_method_id=pm_id, amount=Decimal("29.00"),
                          currency="USD", idempotency_key="pay:test:refund-once")

    first = gateway.refund(reference=paid.reference, amount=Decimal("29.00"), idempotency_key="refund:once")
    again = gateway.refund(reference=paid.reference, amount=Decimal("29.00"), idempotency_key="refund:once")

    assert first == again
    assert len(gateway.list_refunds(paid.reference)) == 1


def test_a_failed_charge_cannot_be_refunded(gateway, account):
    """A failed charge cannot be refunded: the adapter raises GatewayError."""
    customer_id = gateway.ensure_customer(account)
    card = gateway.attach(customer_id, "pm_card_chargeCustomerFail")
    failed = gateway.charge(customer_id=customer_id, payment_method_id=card.gateway_id, amount=Decimal("5.00"),
                            currency="USD", idempotency_key="pay:test:failed-refund")
    with pytest.raises(GatewayError):
        gateway.refund(reference=failed.reference, amount=Decimal("5.00"), idempotency_key="refund:failed")


# -- an unreachable Stripe ---------------------------------------------------------------------


def test_pay2_no_answer_is_gateway_unavailable(gateway, settings, account):
    """A closed port stands for a Stripe that does not answer: the outcome is unknown."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed}"

    with pytest.raises(GatewayUnavailable):
        gateway.charge(customer_id="cus_x", payment_method_id="pm_x", amount=Decimal("1.00"), currency="USD",
                       idempotency_key="pay:test:down")
    with pytest.raises(GatewayUnavailable):
        gateway.find_charge("pay:test:down", customer_id="cus_x")
    with pytest.raises(GatewayUnavailable):
        gateway.attach("cus_x", "pm_card_visa")
