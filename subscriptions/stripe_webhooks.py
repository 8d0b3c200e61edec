"""Stripe webhooks, received through dj-stripe's endpoint (`/stripe/webhook/<uuid>/`).

dj-stripe checks the signature, stores every event (`djstripe.models.Event`, so an unknown type
is kept and ignored) and runs the receivers below once per event id: a redelivered event does not
reach them again. Each receiver is also idempotent by what it changes, because Stripe may send
two events about one object, late or out of order: it looks at the object as Stripe has it now
(not as the event described it) and at our ledger, and changes billing state only through the
engine (subscriptions.billing), whose functions settle a payment or record a refund once.

A failure raises: dj-stripe rolls the event back. The endpoint (invoices/stripe_endpoint.py) then
answers 500 for a fault that passes (Stripe or the database not answering), so that Stripe delivers
it again, and 200 for input no redelivery can fix (not an event, an object Stripe no longer
returns), leaving the trigger row for staff. Work that calls the gateway (taking a new default
card, which may retry a charge) runs after dj-stripe's transaction commits, since the gateway is
never called inside an open transaction.
"""

import logging

from django.db import transaction
from djstripe.event_handlers import djstripe_receiver

from accounts.audit import audit
from accounts.locks import account_lock
from accounts.models import Account, AccountFlag, FlagKind
from invoices.gateways import get_gateway
from invoices.gateways.stripe import METADATA_KEY, from_minor
from invoices.models import Payment, PaymentMethod, PaymentStatus
from subscriptions import billing, charges
from subscriptions.errors import PaymentDeclined

logger = logging.getLogger(__name__)

SETTLED_INTENT_STATUSES = {"succeeded", "requires_payment_method", "canceled"}

# The events to enable on the endpoint registered at Stripe (docs/stripe.md).
HANDLED_EVENTS = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "charge.refunded",
    "charge.dispute.created",
    "payment_method.attached",
    "payment_method.detached",
    "customer.updated",
]


def _gateway():
    return get_gateway("stripe")


def _object(event) -> dict:
    return (event.data or {}).get("object") or {}


# -- payments (PAY-2) ----------------------------------------------------------------------------


def payment_for_intent(intent: dict) -> Payment | None:
    """Our Payment for a PaymentIntent: by the idempotency key we put in its metadata, else by id."""
    key = (intent.get("metadata") or {}).get(METADATA_KEY)
    if key:
        payment = Payment.objects.filter(idempotency_key=key).first()
        if payment is not None:
            return payment
    if intent.get("id"):
        return Payment.objects.filter(gateway="stripe", gateway_reference=intent["id"]).first()
    return None


@djstripe_receiver(["payment_intent.succeeded", "payment_intent.payment_failed"])
def on_payment_intent(sender, event, **kwargs):
    """A charge's outcome arrived (perhaps the response to our own call was lost): settle an
    unknown payment. A settled payment is left alone, whatever the event says."""
    intent = _object(event)
    payment = payment_for_intent(intent)
    if payment is None or payment.status != PaymentStatus.UNKNOWN:
        return
    settle_from_stripe(payment, intent["id"])


def settle_from_stripe(payment: Payment, intent_id: str) -> bool:
    """Settle an unknown payment from its PaymentIntent as Stripe has it now; False while the
    intent has no final outcome (processing, requires_action)."""

    gateway = _gateway()
    intent = gateway.retrieve_intent(intent_id)
    if intent.get("status") not in SETTLED_INTENT_STATUSES:
        return False
    try:
        charges.payment_settle(payment, gateway.result_of(intent))
    except PaymentDeclined:
        pass  # the decline is recorded; nobody is waiting for the message
    return True


# -- refunds made at Stripe ----------------------------------------------------------------------


@djstripe_receiver("charge.refunded")
def on_charge_refunded(sender, event, **kwargs):
    charge = _object(event)
    intent_id = charge.get("payment_intent")
    payment = Payment.objects.filter(gateway="stripe", gateway_reference=intent_id).first() if intent_id else None
    if payment is None or payment.status != PaymentStatus.SUCCEEDED:
        return
    record_external_refunds(payment)


def record_external_refunds(payment: Payment) -> list:
    """Record the refunds made at Stripe (the dashboard, support) that Prorata did not make.
    Ours carry our key in their metadata and are recorded by the engine when it makes them."""

    recorded = []
    for refund in _gateway().list_refunds(payment.gateway_reference):
        if refund.get("status") != "succeeded" or (refund.get("metadata") or {}).get(METADATA_KEY):
            continue
        if payment.refunds.filter(gateway_reference=refund["id"]).exists():
            continue
        amount = from_minor(refund["amount"], refund["currency"])
        recorded.append(charges.payment_record_external_refund(payment, amount, refund["id"]))
    return recorded


# -- disputes --------------------------------------------------------------------------------


@djstripe_receiver("charge.dispute.created")
def on_dispute_created(sender, event, **kwargs):
    """A chargeback: flag the account for staff. Billing does not change by itself."""
    dispute = _object(event)
    account = _account_for_dispute(dispute)
    if account is None:
        logger.warning("Stripe dispute %s matches no account", dispute.get("id"))
        return
    dispute_flag(account, dispute)


def _account_for_dispute(dispute: dict) -> Account | None:
    intent_id = dispute.get("payment_intent")
    if intent_id:
        payment = Payment.objects.select_related("account").filter(gateway_reference=intent_id).first()
        if payment is not None:
            return payment.account
    charge_id = dispute.get("charge")
    if isinstance(charge_id, dict):
        charge_id = charge_id.get("id")
    if not charge_id:
        return None
    charge = _gateway().retrieve_charge(charge_id)
    return account_for_customer(charge.get("customer"))


@transaction.atomic
def dispute_flag(account: Account, dispute: dict) -> tuple[AccountFlag, bool]:
    """One flag per dispute (the dispute id starts the flag's detail), with an audit row.
    Returns the flag and whether this call created it."""
    account_lock(account.pk)
    marker = f"Stripe dispute {dispute['id']}"
    existing = AccountFlag.objects.filter(account=account, kind=FlagKind.DISPUTE, detail__startswith=marker).first()
    if existing is not None:
        return existing, False
    amount = from_minor(dispute.get("amount") or 0, dispute.get("currency") or "usd")
    charge = dispute.get("charge")
    charge_id = charge.get("id") if isinstance(charge, dict) else charge
    detail = (
        f"{marker}: {amount} {(dispute.get('currency') or '').upper()} on charge {charge_id}"
        f" ({dispute.get('payment_intent') or 'no payment intent'}), reason {dispute.get('reason') or 'unknown'},"
        f" status {dispute.get('status') or 'unknown'}. Answer it in the Stripe dashboard before the deadline."
    )
    flag = AccountFlag.objects.create(account=account, kind=FlagKind.DISPUTE, detail=detail)
    audit(account=account, actor=None, action="payment.disputed", obj=flag,
          after={"dispute": dispute["id"], "amount": str(amount), "reason": dispute.get("reason") or ""})
    return flag, True


# -- cards and customers -------------------------------------------------------------------


def account_for_customer(customer_id: str | None) -> Account | None:
    if not customer_id:
        return None
    account = Account.objects.filter(gateway_customer_id=customer_id).first()
    if account is not None:
        return account
    from djstripe.models import Customer

    customer = Customer.objects.filter(id=customer_id).first()
    subscriber = customer.subscriber if customer is not None else None
    return subscriber if isinstance(subscriber, Account) else None


@djstripe_receiver("payment_method.detached")
def on_payment_method_detached(sender, event, **kwargs):
    """A card removed at Stripe: the engine marks ours detached (never a cancellation, CAN-1)."""

    pm_id = _object(event).get("id")
    for method in PaymentMethod.objects.filter(gateway="stripe", gateway_id=pm_id, detached_at__isnull=True):
        billing.payment_method_detached(method.account, pm_id)


@djstripe_receiver("payment_method.attached")
def on_payment_method_attached(sender, event, **kwargs):
    """Our card form attaches cards through the engine; a card attached elsewhere (the Stripe
    dashboard) only becomes ours when it is the customer's default (see on_customer_updated)."""
    pm = _object(event)
    account = account_for_customer(pm.get("customer"))
    if account is not None:
        mirror_default_card_after_commit(account, pm["customer"])


@djstripe_receiver("customer.updated")
def on_customer_updated(sender, event, **kwargs):
    customer = _object(event)
    account = account_for_customer(customer.get("id"))
    if account is not None:
        mirror_default_card_after_commit(account, customer["id"])


def mirror_default_card_after_commit(account: Account, customer_id: str) -> None:
    """dj-stripe runs the receivers inside its transaction; taking a card may charge it (DUN-4), and
    the gateway is never called inside an open transaction. So the card is taken once the event is
    stored; if that fails it is logged, and the daily reconciliation takes it (reconcile_payments)."""
    transaction.on_commit(lambda: mirror_default_card(account, customer_id), robust=True)


def mirror_default_card(account: Account, customer_id: str) -> PaymentMethod | None:
    """When the customer's default card at Stripe (read now, so late or reordered events agree)
    is a card we do not know, take it through the engine as the account's payment method. A
    card we already hold is left as it is."""

    customer = _gateway().retrieve_customer(customer_id)
    if customer.get("deleted"):
        return None
    default = (customer.get("invoice_settings") or {}).get("default_payment_method")
    if isinstance(default, dict):
        default = default.get("id")
    if not default or not default.startswith("pm_"):
        return None
    if PaymentMethod.objects.filter(account=account, gateway_id=default).exists():
        return None
    logger.info("Account %s: default card %s set at Stripe; recording it", account.pk, default)
    try:
        return billing.set_payment_method(account, default)
    except billing.PaymentDeclined:
        return None  # the card is kept and the retry's decline recorded (DUN-4)
