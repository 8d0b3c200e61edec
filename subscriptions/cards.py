"""The card on file and paying with it now (PAY-1, PAY-5, DUN-3, DUN-4): what a customer asks of
the engine about a payment method. Public through `subscriptions.billing` (the billing page, the
Stripe webhooks and scripts call `billing.set_payment_method` and the others).
"""

from django.db import transaction

from accounts.audit import audit
from invoices import services as ledger
from invoices.gateways import CardDeclined, GatewayError, GatewayUnavailable, get_gateway
from invoices.models import Invoice, InvoiceStatus, PaymentMethod

from . import charges, dunning, selectors, terms
from .errors import BillingError, InvalidChange, NotEligible, PaymentDeclined
from .locks import account_lock, account_subscription_lock, invoice_lock
from .models import Subscription

# --- payment methods (PAY-1, DUN-3, DUN-4) -----------------------------------------------------------------


def set_payment_method(account, token: str, *, actor=None, now=None) -> PaymentMethod:
    """Attach a card from a gateway token and make it the default (PAY-1). While past due the
    open invoice is retried at once (DUN-4); after a suspension for non-payment a full new period
    is charged from today (DUN-3). A decline of that retry keeps the new card and raises."""
    now = terms.clock(now)
    token = (token or "").strip()
    if not token:
        raise InvalidChange("Enter a payment method token.")
    gateway = get_gateway()
    try:
        customer_id = gateway.ensure_customer(account)
        details = gateway.attach(customer_id, token)
    except CardDeclined as exc:
        raise PaymentDeclined(str(exc), exc.code) from None
    except GatewayUnavailable:
        raise BillingError("The payment provider did not answer. Nothing was changed; please try again.") from None
    except GatewayError as exc:
        raise BillingError(str(exc)) from None
    with transaction.atomic():
        account = account_lock(account.pk)
        if account.gateway_customer_id != customer_id:
            account.gateway_customer_id = customer_id
            account.save(update_fields=["gateway_customer_id"])
        old = list(PaymentMethod.objects.filter(account=account, is_default=True))
        PaymentMethod.objects.filter(account=account, is_default=True).update(is_default=False)
        # The same card saved twice (the card form and a webhook racing) is one row, made the default.
        card = {"brand": details.brand, "last4": details.last4, "exp_month": details.exp_month,
                "exp_year": details.exp_year, "fingerprint": details.fingerprint, "is_default": True}
        method, _created = PaymentMethod.objects.update_or_create(
            account=account, gateway=gateway.name, gateway_id=details.gateway_id,
            defaults={**card, "detached_at": None}, create_defaults={**card, "created_at": now},
        )
        audit(account=account, actor=actor, action="payment_method.set", obj=method,
              before={"default": str(old[0]) if old else None}, after={"default": str(method)}, now=now)
    dunning.collect_after_new_payment_method(account, actor=actor, now=now)
    return method


def payment_method_detached(account, gateway_id: str, *, now=None) -> None:
    """A card removed at the gateway. Never a cancellation (CAN-1): renewals will fail into dunning."""
    now = terms.clock(now)
    with transaction.atomic():
        account_lock(account.pk)
        for method in PaymentMethod.objects.filter(account=account, gateway_id=gateway_id, detached_at__isnull=True):
            method.detached_at, method.is_default = now, False
            method.save(update_fields=["detached_at", "is_default"])
            audit(account=account, actor=None, action="payment_method.detached", obj=method, now=now)


def payment_method_remove(account, *, actor=None, now=None) -> PaymentMethod:
    """PAY-5: the owner (or billing role) removes the card on file, unless a paid subscription
    needs it (`selectors.card_removal_refusal`: a trial that converts, a renewal, money owed, an
    overage invoice to come), then NotEligible says why. Removing a card is never a cancellation
    (CAN-1). The card stops being used when this commits, then it is detached at the gateway,
    outside any transaction; if the gateway does not do it, the card is put back as it was and
    nothing changed (a detach that did happen despite a lost answer is caught by Stripe's
    `payment_method.detached` webhook and by `reconcile_payments`). Audited (ACC-3)."""
    now = terms.clock(now)
    with transaction.atomic():
        sub = account_subscription_lock(account)
        account = sub.account
        method = ledger.default_payment_method(account)
        if method is None:
            raise InvalidChange("There is no card on file to remove.")
        refusal = selectors.card_removal_refusal(account, now)
        if refusal:
            raise NotEligible(refusal)
        method.detached_at, method.is_default = now, False
        method.save(update_fields=["detached_at", "is_default"])
        audit(account=account, actor=actor, action="payment_method.removed", obj=method,
              before={"default": str(method)}, after={"default": None}, now=now)
    try:
        get_gateway(method.gateway).detach(method.gateway_id)
    except GatewayError as exc:
        with transaction.atomic():
            account_lock(account.pk)
            still_none = ledger.default_payment_method(account) is None
            if still_none and PaymentMethod.objects.filter(pk=method.pk, detached_at=now).update(
                    detached_at=None, is_default=True):
                audit(account=account, actor=actor, action="payment_method.remove_failed", obj=method,
                      after={"default": str(method)}, reason=str(exc)[:300], now=now)
        if isinstance(exc, GatewayUnavailable):
            raise BillingError("The payment provider did not answer, so your card is still on file. Please try "
                               "again.") from None
        raise BillingError(f"The payment provider did not remove the card: {exc} Your card is still on file.") \
            from None
    return method


# --- paying an open invoice now (PAY-5) ------------------------------------------------------------------


def invoice_pay_now(invoice, *, actor=None, now=None) -> Invoice:
    """PAY-5: pay an open invoice now with the card on file, without saving the card again. The
    three steps of every charge (PAY-2): under the invoice's locks the attempt is recorded as the
    subscription's charge in flight and committed; the gateway is called outside any transaction;
    `charges.payment_settle` records the outcome once. Paid: past due ends when nothing else is
    open (DUN-4's outcome) and the receipt goes out. Declined: PaymentDeclined with the bank's
    reason; the invoice stays open and the dunning schedule is the run's, unchanged. A second
    click while the first attempt is in flight, or on a paid invoice, is refused with the reason
    (`selectors.pay_now_refusal`), so nothing is charged twice. While the account is suspended
    for non-payment the old renewal is not charged: a new card pays a new period (DUN-3)."""
    now = terms.clock(now)
    with transaction.atomic():
        invoice = invoice_lock(invoice.pk)
        if not invoice.is_issued:
            raise InvalidChange("This invoice does not exist.")
        refusal = selectors.pay_now_refusal(invoice)
        if refusal:
            raise NotEligible(refusal)
        payment = ledger.payment_begin(invoice, ledger.default_payment_method(invoice.account), now=now)
        if invoice.subscription_id is not None:  # locked by invoice_lock
            Subscription.objects.filter(pk=invoice.subscription_id).update(charge_in_flight=payment, updated_at=now)
        audit(account=invoice.account, actor=actor, action="invoice.pay_now", obj=invoice,
              after={"number": invoice.number, "amount": str(payment.amount), "payment": payment.idempotency_key},
              now=now)
    return charges.payment_settle(payment, ledger.payment_send(payment), actor=actor, now=now)


def open_invoices_pay_now(account, *, actor=None, now=None) -> list[Invoice]:
    """PAY-5 from the past-due banner: pay every open invoice, oldest first, with the card on file
    (`invoice_pay_now` each). Stops at the first decline, which is raised; returns those paid."""
    now = terms.clock(now)
    invoices = list(Invoice.objects.filter(account=account, status=InvoiceStatus.OPEN, number__isnull=False)
                    .order_by("issued_at", "id"))
    if not invoices:
        raise InvalidChange("Nothing is owed: your invoices are paid.")
    return [invoice_pay_now(invoice, actor=actor, now=now) for invoice in invoices]
