"""Invoices, credit notes and charge attempts: the money ledger under the engine.

Only the engine (subscriptions: charges, lifecycle, renewals, overage) calls these. A charge is
three steps so that no crash or timeout can charge twice (PAY-2, REN-3):

1. `payment_begin` (in the caller's transaction): a Payment row in status `unknown` with a
   unique idempotency key is committed *before* the gateway is called;
2. `payment_send` (outside any transaction): the gateway call; a lost answer is settled at once
   by asking the gateway about the key, and stays `unknown` if it cannot tell;
3. `payment_record` (in a new transaction): the outcome is written; the invoice is paid.

An `unknown` payment is always settled with the gateway (find by key) before any new attempt.
"""

from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

from django.db.models import F, Q

from core.money import ZERO, cents

from . import tax_rates, tax_rules
from .gateways import ChargeResult, GatewayError, GatewayUnavailable, RefundResult, get_gateway
from .models import (
    CreditApplication,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    Sequence,
)
from .totals import InvoiceTotals


@dataclass(frozen=True)
class Line:
    """An invoice line to create: a quote line plus the period and unit it covers."""

    description: str
    amount: Decimal
    computation: str = ""
    quantity: Decimal = Decimal("1")
    unit_price: Decimal | None = None
    period_start: object = None
    period_end: object = None

    @classmethod
    def from_quote(cls, line, period_start=None, period_end=None) -> "Line":
        """From a quote line (description, amount, computation), for the span it charges."""
        return cls(line.description, line.amount, line.computation, quantity=Decimal(line.quantity),
                   unit_price=line.unit_price, period_start=period_start, period_end=period_end)


def next_number(series: str, year: int) -> int:
    """Gapless (INV-1): the counter row is locked until the caller's transaction ends, so a
    rollback gives the number back and two issuers never get the same one."""
    return next_numbers(series, year, 1)[0]


def next_numbers(series: str, year: int, count: int) -> range:
    """`count` consecutive numbers, under the same lock as `next_number`."""
    Sequence.objects.get_or_create(series=series, year=year)
    seq = Sequence.objects.select_for_update().get(series=series, year=year)
    seq.last = F("last") + count
    seq.save(update_fields=["last"])
    seq.refresh_from_db(fields=["last"])
    return range(seq.last - count + 1, seq.last + 1)


def invoice_create(*, account, subscription, kind, lines: list[Line], currency: str, now,
                   period_start=None, period_end=None, dedupe_key=None, notes="",
                   pending_change=None) -> Invoice:
    """A draft invoice with its lines, its tax and the account's credit applied (DWN-4, REN-2).

    The amounts and the facts they rest on are fixed together, here, because the draft's total is
    what the gateway charges: the account's billing details as they are now (INV-4) and its tax
    treatment at the rate in force today (TAX-2, TAX-3), tax per line, half up; the seller as
    configured now (the `seller` column's default) and the account's billing time zone, the calendar
    of every date it prints (INV-6). Issuing numbers and dates the draft; nothing of it changes
    after (INV-2, INV-6)."""
    decision = tax_rates.decision_for(account, now)
    totals = tax_rates.totals_for(decision, [line.amount for line in lines])
    invoice = Invoice.objects.create(
        account=account, subscription=subscription, kind=kind, currency=currency,
        period_start=period_start, period_end=period_end, dedupe_key=dedupe_key, notes=notes,
        pending_change=pending_change or {}, created_at=now, status=InvoiceStatus.DRAFT,
        timezone=account.timezone, **_bill_to(account), **_tax_fields(totals),
    )
    InvoiceLine.objects.bulk_create([
        InvoiceLine(invoice=invoice, **line_fields(line, invoice.period_start, invoice.period_end, decision.rate,
                                                    line_tax))
        for line, line_tax in zip(lines, totals.line_taxes, strict=True)])
    totals = credit_apply(invoice, totals, now=now)
    invoice.credit_applied, invoice.total = totals.credit_applied, totals.total
    invoice.save(update_fields=["credit_applied", "total"])
    return invoice


def _bill_to(account) -> dict:
    """The account's billing details as they are now (INV-4)."""
    return {"bill_to_name": account.name, "bill_to_company": account.company, "bill_to_address": account.address,
            "bill_to_country": str(account.country or ""), "bill_to_vat_id": account.vat_id}


def _tax_fields(totals: InvoiceTotals) -> dict:
    """The invoice's tax columns: the frozen treatment and the amounts (TAX-2)."""
    decision = totals.decision
    return {"tax_treatment": decision.treatment, "tax_rate": decision.rate, "tax_country": decision.country,
            "tax_vat_id": decision.vat_id, "tax_mention": decision.mention, "prices_include_tax": totals.inclusive,
            "subtotal": cents(totals.subtotal), "tax_amount": totals.tax}


def line_fields(line: Line, period_start, period_end, tax_rate: Decimal, tax_amount: Decimal) -> dict:
    """An invoice line's columns (the set-wise insert writes them in this order)."""
    return {"description": line.description[:300], "computation": line.computation[:300],
            "quantity": line.quantity, "unit_price": line.amount if line.unit_price is None else line.unit_price,
            "amount": line.amount, "period_start": line.period_start or period_start,
            "period_end": line.period_end or period_end, "tax_rate": tax_rate, "tax_amount": tax_amount}


def credit_apply(invoice: Invoice, totals: InvoiceTotals, *, now) -> InvoiceTotals:
    """Use the account's remaining credit, oldest note first: `totals` with the credit the invoice
    takes (`InvoiceTotals.with_credit`: up to its amount with tax, since credit notes hold
    tax-inclusive amounts: they reversed the tax of what they credit)."""
    notes = list(CreditNote.objects.select_for_update().filter(
        account_id=invoice.account_id, remaining__gt=0, currency=invoice.currency
    ).order_by("issued_at", "id"))
    totals = totals.with_credit(sum((note.remaining for note in notes), ZERO))
    due = totals.credit_applied
    for note in notes:
        if due <= 0:
            break
        use = min(note.remaining, due)
        note.remaining -= use
        note.save(update_fields=["remaining"])
        CreditApplication.objects.create(credit_note=note, invoice=invoice, amount=use, applied_at=now)
        due -= use
    return totals


def credit_release(invoice: Invoice) -> None:
    """Give back the credit a draft reserved, when the draft is abandoned (UPG-4)."""
    for application in CreditApplication.objects.select_related("credit_note").filter(invoice=invoice):
        CreditNote.objects.filter(pk=application.credit_note_id).update(remaining=F("remaining") + application.amount)
        application.delete()  # a draft's reservation, never part of an issued document
    invoice.refresh_from_db()
    Invoice.objects.filter(pk=invoice.pk).update(credit_applied=ZERO, total=invoice.gross_amount)
    invoice.refresh_from_db()


def invoice_issue(invoice: Invoice, *, now) -> Invoice:
    """Give the invoice its number and its issue date (INV-1); its billing details and tax were
    fixed with its amounts (`invoice_create`). A zero invoice is paid at once without a charge
    (INV-5)."""
    if invoice.number:
        return invoice
    year = now.astimezone(UTC).year
    _issued(invoice, invoice.account, f"{year}-{next_number('INV', year):06d}", now)
    invoice.save()
    return invoice


def _issued(invoice: Invoice, account, number: str, now) -> None:
    invoice.number = number
    invoice.issued_at = now
    if not invoice.bill_to_name:  # a draft made before its details were fixed with its amounts
        for field, value in _bill_to(account).items():
            setattr(invoice, field, value)
    if invoice.status == InvoiceStatus.DRAFT:
        invoice.status = InvoiceStatus.PAID if invoice.amount_due <= 0 else InvoiceStatus.OPEN
        if invoice.status == InvoiceStatus.PAID:
            invoice.paid_at = now


def invoice_void(invoice: Invoice, *, now) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.VOID, voided_at=now)
    invoice.refresh_from_db()


def credit_note_issue(*, account, invoice, kind, reason: str, now, amount: Decimal | None = None,
                      net_amount: Decimal | None = None, remaining=None, computation="",
                      issued_by=None) -> CreditNote:
    """A credit note on `invoice` (INV-2), its tax reversed in proportion to the invoice's (TAX-2):
    give `amount`, what is credited or refunded with tax (a refund: the money paid back), or
    `net_amount`, a value before tax (DWN-4's unused days), to which the invoice's tax is added.
    Its treatment and rate are the invoice's, not the customer's today."""
    net, tax_amount = tax_rules.credit_split(invoice_net=invoice.net_amount, invoice_tax=invoice.tax_amount,
                                       net=net_amount, gross=amount)
    gross = net + tax_amount
    year = now.astimezone(UTC).year
    number = f"CN-{year}-{next_number('CN', year):06d}"
    return CreditNote.objects.create(
        account=account, invoice=invoice, number=number, kind=kind, currency=invoice.currency,
        amount=gross, net_amount=net, tax_amount=tax_amount, tax_rate=invoice.tax_rate,
        tax_treatment=invoice.tax_treatment, remaining=gross if remaining is None else remaining, reason=reason,
        computation=computation[:300], issued_at=now, issued_by=issued_by,
        timezone=account.timezone,  # INV-6: its dates on the account's calendar at issue; the seller: the default
    )


def default_payment_method(account) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True).first()


def payment_begin(invoice: Invoice, payment_method: PaymentMethod, *, now) -> Payment:
    """Step 1: record the attempt before calling the gateway."""
    attempt = Payment.objects.filter(invoice=invoice).count() + 1
    return Payment.objects.create(
        invoice=invoice, account_id=invoice.account_id, payment_method=payment_method,
        card_brand=payment_method.brand, card_last4=payment_method.last4,
        amount=invoice.amount_due, currency=invoice.currency,
        idempotency_key=f"prorata-inv{invoice.pk}-a{attempt}", gateway=get_gateway().name,
        status=PaymentStatus.UNKNOWN, attempted_at=now,
    )


def payment_send(payment: Payment) -> ChargeResult | None:
    """Step 2, outside any transaction: the charge. None means the outcome is still unknown."""
    gateway = get_gateway(payment.gateway)
    method = payment.payment_method
    try:
        return gateway.charge(
            customer_id=gateway.ensure_customer(payment.account), payment_method_id=method.gateway_id,
            amount=payment.amount, currency=payment.currency, idempotency_key=payment.idempotency_key,
            description=f"Invoice {payment.invoice_id}",
        )
    except GatewayUnavailable:
        # Right after a lost answer the charge may still be in progress at the gateway: a key it
        # has not seen yet stays unknown, and is settled after the grace period (PAY-2).
        return payment_lookup(payment, unseen_means_not_sent=False)


def payment_lookup(payment: Payment, *, unseen_means_not_sent: bool = True) -> ChargeResult | None:
    """PAY-2: ask the gateway what happened to this key. None: it cannot tell yet."""
    try:
        found = get_gateway(payment.gateway).find_charge(payment.idempotency_key)
    except GatewayUnavailable:
        return None
    if found is None:
        if not unseen_means_not_sent:
            return None
        # Long after the attempt the gateway has never seen the key: it did not happen.
        return ChargeResult(False, "", "not_sent", "The payment was not sent to the bank.")
    return found


def payment_record(payment: Payment, result: ChargeResult, *, now) -> bool:
    """Step 3: write the outcome once; returns True when this call settled it. The invoice is
    marked paid when the charge succeeded."""
    updated = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.UNKNOWN).update(
        status=PaymentStatus.SUCCEEDED if result.succeeded else PaymentStatus.FAILED,
        gateway_reference=result.reference, decline_code=result.decline_code[:60],
        decline_message=(result.decline_message or "")[:300], settled_at=now,
    )
    payment.refresh_from_db()
    if updated and result.succeeded:
        Invoice.objects.filter(pk=payment.invoice_id).update(
            amount_paid=F("amount_paid") + payment.amount, paid_at=now,
        )
        invoice = Invoice.objects.get(pk=payment.invoice_id)
        if invoice.amount_paid >= invoice.total and invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.DRAFT):
            Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.PAID)
    return bool(updated)


# --- refunds: three steps like a charge (PAY-2, REF-2, REF-4) ----------------------------------------


def refund_begin(payment: Payment, amount: Decimal, *, key: str, reason: str, now, issued_by=None,
                 request=None) -> Refund:
    """Step 1, in the caller's transaction: the refund's intent, committed before the gateway is
    called. Idempotent by `key`: the same key returns the refund recorded first."""
    refund, _created = Refund.objects.get_or_create(
        idempotency_key=key,
        defaults={"payment": payment, "amount": amount, "reason": reason, "issued_by": issued_by,
                  "refund_request": request, "status": RefundStatus.UNKNOWN, "created_at": now},
    )
    return refund


def refund_send(refund: Refund) -> RefundResult | GatewayError | None:
    """Step 2, outside any transaction: the gateway refunds with the refund's key (never twice for
    one key, so sending an unknown refund again is how it is settled). Returns the result, the
    gateway's refusal, or None when the answer was lost (the refund stays unknown)."""
    payment = refund.payment
    try:
        return get_gateway(payment.gateway).refund(reference=payment.gateway_reference, amount=refund.amount,
                                                   idempotency_key=refund.idempotency_key)
    except GatewayUnavailable:
        return None
    except GatewayError as exc:
        return exc


def refund_record(refund: Refund, outcome: RefundResult | GatewayError, *, now) -> bool:
    """Step 3, in the caller's transaction: the outcome is written once (a conditional update of
    an unknown refund). On success the refund credit note is issued and the payment's refunded
    amount grows. Returns True when this call recorded it."""
    succeeded = isinstance(outcome, RefundResult)
    updated = Refund.objects.filter(pk=refund.pk, status=RefundStatus.UNKNOWN).update(
        status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED, settled_at=now,
        gateway_reference=outcome.reference if succeeded else "",
        failure_message="" if succeeded else str(outcome)[:300],
    )
    refund.refresh_from_db()
    if not updated or not succeeded:
        return bool(updated)
    payment = refund.payment
    note = credit_note_issue(account=payment.account, invoice=payment.invoice, kind="refund", amount=refund.amount,
                             remaining=ZERO, reason=refund.reason, now=now, issued_by=refund.issued_by)
    Refund.objects.filter(pk=refund.pk).update(credit_note=note)
    Payment.objects.filter(pk=payment.pk).update(refunded_amount=F("refunded_amount") + refund.amount)
    refund.refresh_from_db()
    return True


def refund_record_external(payment: Payment, amount: Decimal, reference: str, *, reason: str, now) -> Refund:
    """A refund made at the gateway outside Prorata (the Stripe dashboard): recorded once, as
    succeeded, with its refund credit note."""
    existing = Refund.objects.filter(Q(gateway_reference=reference) | Q(idempotency_key=f"external-{reference}"))
    if existing.exists():
        return existing.first()
    refund = Refund.objects.create(payment=payment, amount=amount, idempotency_key=f"external-{reference}",
                                   status=RefundStatus.UNKNOWN, reason=reason, created_at=now)
    refund_record(refund, RefundResult(reference, amount), now=now)
    return refund
