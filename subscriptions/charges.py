"""Money moving through the gateway, in three steps so that no crash or timeout charges or refunds
twice (PAY-2, REN-3): record the intent and commit; call the gateway outside any transaction with
the intent's idempotency key; record the outcome once in a new transaction. An outcome that is
not known yet is settled with the gateway before anything else is tried (`payments_settle_unknown`,
`refunds_settle_unknown`, both run by the billing run and by `reconcile_payments`).
"""

import dataclasses
import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction

from accounts.audit import audit
from core import events
from core.clock import clock
from invoices import services as ledger
from invoices.gateways import ChargeResult, RefundResult
from invoices.models import Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus, Refund, RefundStatus

from . import lifecycle
from .changes import PendingChange
from .errors import InvalidChange, NotEligible, PaymentDeclined, PaymentPending
from .locks import payment_lock

log = logging.getLogger(__name__)

# Kinds whose payment applies a change the customer asked for (and is undone by a decline).
IMMEDIATE_KINDS = {InvoiceKind.UPGRADE, InvoiceKind.SUBSCRIPTION, InvoiceKind.ADD_ON, InvoiceKind.REACTIVATION}


# --- immediate charges: a change the customer asked for (UPG-4, PAY-2) -------------------------------


def charge_begin(sub, *, kind, lines, pending: PendingChange, currency, period, notes="", actor, now):
    """Step 1 inside the caller's transaction (which holds the subscription's lock): a draft invoice
    holding `pending`, the change its payment applies, and an `unknown` payment, committed before
    the gateway is called. Returns the Payment, or the paid Invoice when nothing is due (INV-5)."""
    if sub.charge_in_flight_id:
        payment = Payment.objects.get(pk=sub.charge_in_flight_id)
        if payment.status == PaymentStatus.UNKNOWN:
            raise InvalidChange("A payment for your subscription is still being processed. "
                                "Try again in a minute.")
    method = ledger.default_payment_method(sub.account)
    invoice = ledger.invoice_create(account=sub.account, subscription=sub, kind=kind, lines=lines,
                                    currency=currency, now=now, period_start=period[0], period_end=period[1],
                                    notes=notes, pending_change=dataclasses.replace(
                                        pending, actor_id=getattr(actor, "pk", None)).to_json())
    if invoice.amount_due <= 0:  # INV-5: covered by credit (or free): paid without a charge
        ledger.invoice_issue(invoice, now=now)
        lifecycle.paid_change_apply(invoice, actor=actor, now=now)
        return invoice
    if method is None:
        raise NotEligible("Add a payment method first.")
    payment = ledger.payment_begin(invoice, method, now=now)
    sub.charge_in_flight = payment
    sub.save(update_fields=["charge_in_flight", "updated_at"])
    return payment


def charge_finish(step, *, actor, now) -> Invoice:
    """Steps 2 and 3: call the gateway outside any transaction, then record the outcome."""
    if isinstance(step, Invoice):
        return step
    result = ledger.payment_send(step)
    return payment_settle(step, result, actor=actor, now=now)


# --- collection: renewals, trial conversions, overage (REN-1, TRI-3, USE-3) ---------------------------


def invoice_issue_and_begin(sub, kind, lines, period, key, now) -> Payment | None:
    """An issued invoice (numbered, INV-1) and its first payment attempt, inside the caller's
    claim of the subscription. None: nothing to charge now (someone else made this invoice first,
    it is covered by credit, or there is no card: dunning starts)."""
    try:
        with transaction.atomic():
            invoice = ledger.invoice_create(account=sub.account, subscription=sub, kind=kind, lines=lines,
                                            currency=sub.plan.currency, now=now, period_start=period[0],
                                            period_end=period[1], dedupe_key=key)
    except IntegrityError:
        return None  # REN-3: someone else created this invoice first
    ledger.invoice_issue(invoice, now=now)
    audit(account=sub.account, actor=None, action="invoice.issued", obj=invoice,
          after={"number": invoice.number, "kind": kind, "total": str(invoice.total)}, now=now)
    if invoice.status == InvoiceStatus.PAID:  # covered by credit (INV-5)
        lifecycle.dunning_collected(invoice, None, sub, now)
        return None
    method = ledger.default_payment_method(sub.account)
    if method is None:
        lifecycle.dunning_failed(invoice, sub, "No payment method on file.", now, emit=True)
        return None
    return ledger.payment_begin(invoice, method, now=now)


def payment_send_and_settle(payment: Payment | None, now) -> None:
    """Steps 2 and 3 for a collection attempt; a decline starts or continues dunning (DUN-1)."""
    if payment is None:
        return
    result = ledger.payment_send(payment)
    if result is not None:
        try:
            payment_settle(payment, result, now=now)
        except PaymentDeclined:  # pragma: no cover - collections never raise a decline
            pass


# --- outcomes ---------------------------------------------------------------------------------------


def payment_settle(payment: Payment, result: ChargeResult | None, *, actor=None, now=None) -> Invoice:
    """Apply a gateway outcome to a payment whose status is unknown; idempotent (PAY-2).

    For an upgrade, subscription, add-on or reactivation the change applies on success and
    nothing changes on a decline (UPG-4: PaymentDeclined is raised). For a renewal, trial
    conversion or overage a decline starts or continues dunning (DUN-1..3), unless the customer
    asked for this attempt ("pay now", PAY-5): then PaymentDeclined is raised and dunning is left
    as it was. Paid, it ends past due once nothing else is open, either way."""
    now = clock(now)
    if result is None:
        raise PaymentPending("We could not confirm your payment with the bank yet. You will not be charged twice; "
                             "we will finish this within minutes.")
    declined = None
    with transaction.atomic():
        locked = payment_lock(payment.pk)
        sub, invoice = locked.subscription, locked.invoice
        if not ledger.payment_record(payment, result, now=now):
            invoice.refresh_from_db()
            return invoice  # settled already (a webhook, a reconcile or another worker)
        payment.refresh_from_db()
        # A charge the customer started from the billing page (a change, or "pay now" on an open
        # invoice, PAY-5) is the subscription's charge in flight; the billing run's are not.
        asked_by_customer = sub is not None and sub.charge_in_flight_id == payment.pk
        if asked_by_customer:
            sub.charge_in_flight = None
            sub.save(update_fields=["charge_in_flight", "updated_at"])
        invoice.refresh_from_db()
        if invoice.kind in IMMEDIATE_KINDS:
            if result.succeeded:
                ledger.invoice_issue(invoice, now=now)
                lifecycle.paid_change_apply(invoice, actor=actor, now=now)
                events.emit("payment.succeeded", invoice.account_id, now=now, invoice_id=invoice.pk,
                            payment_id=payment.pk, amount=str(payment.amount))
            else:
                ledger.credit_release(invoice)  # the draft is never issued: nothing changed (UPG-4)
                audit(account=invoice.account, actor=actor, action="charge.declined", obj=payment,
                      after={"invoice_kind": invoice.kind, "amount": str(payment.amount),
                             "decline_code": payment.decline_code}, now=now)
                reason = payment.decline_message or "Your card was declined."
                declined = PaymentDeclined(f"{reason} Nothing was charged and your plan is unchanged.",
                                           payment.decline_code or "card_declined")
        elif payment.status == PaymentStatus.SUCCEEDED:
            lifecycle.dunning_collected(invoice, payment, sub, now)
        elif asked_by_customer:
            # PAY-5: the owner's own "pay now" was declined. They read the reason on the page at once;
            # the invoice stays open and dunning's schedule, count and e-mails stay the run's.
            audit(account=invoice.account, actor=actor, action="charge.declined", obj=payment,
                  after={"invoice_kind": invoice.kind, "invoice": invoice.number, "amount": str(payment.amount),
                         "decline_code": payment.decline_code}, now=now)
            reason = payment.decline_message or "Your card was declined."
            declined = PaymentDeclined(f"{reason} Nothing was charged; invoice {invoice.number} is still open.",
                                       payment.decline_code or "card_declined")
        else:
            lifecycle.dunning_failed(invoice, sub, payment.decline_message or "Your card was declined.", now,
                                     emit=payment.decline_code != "not_sent", payment=payment)
    if declined:
        raise declined
    invoice.refresh_from_db()
    return invoice


def payments_settle_unknown(*, since=None, now=None, older_than: timedelta | None = None) -> list[Payment]:
    """PAY-2: ask the gateway about every payment whose outcome is unknown and settle it."""
    now = clock(now)
    grace = older_than if older_than is not None else timedelta(seconds=settings.BILLING_SETTLE_GRACE_SECONDS)
    pending = Payment.objects.filter(status=PaymentStatus.UNKNOWN, attempted_at__lte=now - grace)
    if since:
        pending = pending.filter(attempted_at__gte=since)
    settled = []
    for payment in pending.select_related("invoice", "account", "payment_method").order_by("id"):
        result = ledger.payment_lookup(payment)
        if result is None:
            continue
        try:
            payment_settle(payment, result, now=now)
        except PaymentDeclined:
            pass  # recorded; the customer who asked has long gone
        payment.refresh_from_db()
        settled.append(payment)
    return settled


# --- refunds (REF-2, REF-4) ---------------------------------------------------------------------------


def refunds_begin(payments_and_amounts: list[tuple[Payment, Decimal]], *, key_prefix: str, reason: str, actor,
                  now, request=None) -> list[Refund]:
    """Step 1 for the refunds of one decision, in the caller's transaction: one refund per payment,
    keyed `<key_prefix>-p<payment>` so that the decision can never refund a payment twice."""
    return [ledger.refund_begin(payment, amount, key=f"{key_prefix}-p{payment.pk}", reason=reason, now=now,
                                issued_by=actor, request=request)
            for payment, amount in payments_and_amounts]


def refunds_send_and_record(refunds: list[Refund], *, now) -> list[Refund]:
    """Steps 2 and 3 for refunds whose intent is committed: the gateway call outside any
    transaction, then each outcome in its own transaction. A refund whose answer was lost stays
    unknown (`refunds_settle_unknown` finishes it); returns the refunds as they are now. The
    credit note of a staff refund is e-mailed; a trial-refund request e-mails its decision instead."""
    done = []
    for refund in refunds:
        if refund.status == RefundStatus.UNKNOWN:
            outcome = ledger.refund_send(refund)
            if outcome is not None:
                with transaction.atomic():
                    ledger.refund_record(refund, outcome, now=now)
                    if isinstance(outcome, RefundResult) and refund.credit_note_id:
                        _announce_refund(refund, now, emit=refund.refund_request_id is None)
        refund.refresh_from_db()
        done.append(refund)
    return done


def _announce_refund(refund: Refund, now, *, emit: bool) -> None:
    note = refund.credit_note
    audit(account=note.account, actor=refund.issued_by, action="credit_note.issued", obj=note,
          after={"number": note.number, "amount": str(refund.amount), "kind": "refund"}, reason=refund.reason, now=now)
    if emit:
        events.emit("credit_note.issued", note.account_id, now=now, credit_note_id=note.pk, amount=str(note.amount),
                    reason=note.reason)


def refunds_settle_unknown(*, now=None) -> list[Refund]:
    """Refunds recorded as intents whose outcome was never recorded (a lost answer, a crash after
    the gateway call): sent again with the same key, which the gateway never refunds twice, and
    recorded. Run by the billing run and by `reconcile_payments`."""
    now = clock(now)
    pending = list(Refund.objects.filter(status=RefundStatus.UNKNOWN).select_related("payment").order_by("id"))
    return [refund for refund in refunds_send_and_record(pending, now=now) if refund.status != RefundStatus.UNKNOWN]


def payment_record_external_refund(payment: Payment, amount: Decimal, reference: str, *, now=None) -> Refund:
    """A refund made at the gateway outside Prorata (the Stripe dashboard): recorded once
    (a succeeded Refund and its refund credit note)."""
    now = clock(now)
    with transaction.atomic():
        locked = payment_lock(payment.pk)
        known = Refund.objects.filter(gateway_reference=reference).first()
        if known is not None:
            return known
        refund = ledger.refund_record_external(locked.payment, amount, reference,
                                               reason="Refund made at the payment provider", now=now)
        audit(account=locked.payment.account, actor=None, action="refund.recorded", obj=refund,
              after={"amount": str(amount), "reference": reference}, now=now)
        return refund
