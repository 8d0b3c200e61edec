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
from core.sql import update_from_values

from .gateways import ChargeRequest, ChargeResult, GatewayError, GatewayUnavailable, RefundResult, get_gateway
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
        return cls(line.description, line.amount, line.computation, period_start=period_start,
                   period_end=period_end)


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
    """A draft invoice with its lines, and the account's credit applied (DWN-4, REN-2)."""
    invoice = Invoice.objects.create(
        account=account, subscription=subscription, kind=kind, currency=currency,
        period_start=period_start, period_end=period_end, dedupe_key=dedupe_key, notes=notes,
        pending_change=pending_change or {}, created_at=now, status=InvoiceStatus.DRAFT,
    )
    InvoiceLine.objects.bulk_create([_line_row(invoice, line) for line in lines])
    invoice.subtotal = cents(sum((line.amount for line in lines), ZERO))
    invoice.credit_applied = credit_apply(invoice, now=now)
    invoice.total = invoice.subtotal - invoice.credit_applied
    invoice.save(update_fields=["subtotal", "credit_applied", "total"])
    return invoice


def _line_row(invoice: Invoice, line: Line) -> InvoiceLine:
    return InvoiceLine(
        invoice=invoice, description=line.description[:300], computation=line.computation[:300],
        quantity=line.quantity, unit_price=line.amount if line.unit_price is None else line.unit_price,
        amount=line.amount, period_start=line.period_start or invoice.period_start,
        period_end=line.period_end or invoice.period_end,
    )


def credit_apply(invoice: Invoice, *, now) -> Decimal:
    """Use the account's remaining credit, oldest note first, up to the invoice subtotal."""
    due = invoice.subtotal
    applied = ZERO
    notes = CreditNote.objects.select_for_update().filter(
        account_id=invoice.account_id, remaining__gt=0, currency=invoice.currency
    ).order_by("issued_at", "id")
    for note in notes:
        if due <= 0:
            break
        use = min(note.remaining, due)
        note.remaining -= use
        note.save(update_fields=["remaining"])
        CreditApplication.objects.create(credit_note=note, invoice=invoice, amount=use, applied_at=now)
        due -= use
        applied += use
    return applied


def credit_release(invoice: Invoice) -> None:
    """Give back the credit a draft reserved, when the draft is abandoned (UPG-4)."""
    for application in CreditApplication.objects.select_related("credit_note").filter(invoice=invoice):
        CreditNote.objects.filter(pk=application.credit_note_id).update(remaining=F("remaining") + application.amount)
        application.delete()  # a draft's reservation, never part of an issued document
    Invoice.objects.filter(pk=invoice.pk).update(credit_applied=ZERO, total=F("subtotal"))
    invoice.refresh_from_db()


def invoice_issue(invoice: Invoice, *, now) -> Invoice:
    """Give the invoice its number and the account's billing details as they are now (INV-1,
    INV-4). A zero invoice is paid at once without a charge (INV-5)."""
    if invoice.number:
        return invoice
    year = now.astimezone(UTC).year
    _issued(invoice, invoice.account, f"{year}-{next_number('INV', year):06d}", now)
    invoice.save()
    return invoice


def _issued(invoice: Invoice, account, number: str, now) -> None:
    invoice.number = number
    invoice.issued_at = now
    invoice.bill_to_name = account.name
    invoice.bill_to_company = account.company
    invoice.bill_to_address = account.address
    invoice.bill_to_country = account.country
    invoice.bill_to_vat_id = account.vat_id
    if invoice.status == InvoiceStatus.DRAFT:
        invoice.status = InvoiceStatus.PAID if invoice.amount_due <= 0 else InvoiceStatus.OPEN
        if invoice.status == InvoiceStatus.PAID:
            invoice.paid_at = now


# --- set-wise: the billing run issues and collects a chunk of invoices in a few statements ---------


@dataclass(frozen=True)
class Draft:
    """An invoice to issue with `invoices_issue_many`."""

    account: object
    subscription: object
    kind: str
    lines: list[Line]
    currency: str
    period_start: object
    period_end: object
    dedupe_key: str


def accounts_with_credit(account_ids) -> set[int]:
    """Accounts holding unused credit: their invoices go through `invoice_create` (DWN-4)."""
    return set(CreditNote.objects.filter(account_id__in=account_ids, remaining__gt=0)
               .values_list("account_id", flat=True))


def invoices_issue_many(drafts: list[Draft], *, now) -> list[Invoice]:
    """`invoice_create` + `invoice_issue` for many invoices in four statements, for accounts
    without credit (the caller checks `accounts_with_credit` in the same transaction). Numbers are
    taken last, in one step, so the counter's lock is held only for the inserts (INV-1). A
    duplicate `dedupe_key` raises IntegrityError for the whole set (REN-3)."""
    if not drafts:
        return []
    invoices = []
    for draft in drafts:
        subtotal = cents(sum((line.amount for line in draft.lines), ZERO))
        invoices.append(Invoice(
            account=draft.account, subscription=draft.subscription, kind=draft.kind, currency=draft.currency,
            period_start=draft.period_start, period_end=draft.period_end, dedupe_key=draft.dedupe_key,
            created_at=now, status=InvoiceStatus.DRAFT, subtotal=subtotal, total=subtotal,
        ))
    year = now.astimezone(UTC).year
    for invoice, draft, number in zip(invoices, drafts, next_numbers("INV", year, len(invoices)), strict=True):
        _issued(invoice, draft.account, f"{year}-{number:06d}", now)
    Invoice.objects.bulk_create(invoices)
    InvoiceLine.objects.bulk_create([_line_row(invoice, line)
                                     for invoice, draft in zip(invoices, drafts, strict=True)
                                     for line in draft.lines])
    return invoices


def payments_begin_many(pairs: list[tuple[Invoice, PaymentMethod]], *, now) -> list[Payment]:
    """Step 1 for the first attempt on many new invoices, in one statement."""
    gateway = get_gateway().name
    return Payment.objects.bulk_create([
        Payment(invoice=invoice, account=invoice.account, payment_method=method, amount=invoice.amount_due,
                currency=invoice.currency, idempotency_key=f"prorata-inv{invoice.pk}-a1", gateway=gateway,
                status=PaymentStatus.UNKNOWN, attempted_at=now)
        for invoice, method in pairs
    ])


def payments_send_many(payments: list[Payment]) -> list[ChargeResult | None]:
    """Step 2 for many payments, outside any transaction: one call where the gateway takes a
    batch (`charge_many`), else one `payment_send` each. None: still unknown (PAY-2)."""
    if not payments:
        return []
    gateway = get_gateway(payments[0].gateway)
    charge_many = getattr(gateway, "charge_many", None)
    if charge_many is None or any(p.gateway != payments[0].gateway for p in payments):
        return [payment_send(payment) for payment in payments]
    requests = [ChargeRequest(customer_id=gateway.ensure_customer(p.account),
                              payment_method_id=p.payment_method.gateway_id, amount=p.amount, currency=p.currency,
                              idempotency_key=p.idempotency_key, description=f"Invoice {p.invoice_id}")
                for p in payments]
    try:
        return charge_many(requests)
    except GatewayUnavailable:
        return [payment_lookup(payment, unseen_means_not_sent=False) for payment in payments]


def payments_record_succeeded(pairs: list[tuple[Payment, ChargeResult]], *, now) -> list[Payment]:
    """Step 3 for many succeeded charges, in the caller's transaction: the payments still
    unknown are marked succeeded and their invoices paid. Returns those settled by this call
    (a webhook or another worker may have settled some first)."""
    done = update_from_values(  # one statement; only payments still unknown (PAY-2)
        Payment, {"gateway_reference": "text"},
        [(payment.pk, result.reference) for payment, result in pairs],
        constants={"status": PaymentStatus.SUCCEEDED, "settled_at": now},
        where="status = %s", where_params=(PaymentStatus.UNKNOWN,),
    )
    settled = []
    for payment, result in pairs:
        if payment.pk in done:
            payment.status, payment.gateway_reference, payment.settled_at = (
                PaymentStatus.SUCCEEDED, result.reference, now)
            settled.append(payment)
    by_amount: dict[Decimal, list[int]] = {}
    for payment in settled:
        by_amount.setdefault(payment.amount, []).append(payment.invoice_id)
    for amount, invoice_ids in by_amount.items():
        Invoice.objects.filter(pk__in=invoice_ids).update(amount_paid=F("amount_paid") + amount, paid_at=now)
    Invoice.objects.filter(
        pk__in=[payment.invoice_id for payment in settled], amount_paid__gte=F("total"),
        status__in=[InvoiceStatus.OPEN, InvoiceStatus.DRAFT],
    ).update(status=InvoiceStatus.PAID)
    return settled


def invoice_void(invoice: Invoice, *, now) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.VOID, voided_at=now)
    invoice.refresh_from_db()


def credit_note_issue(*, account, invoice, kind, amount: Decimal, reason: str, now, remaining=None,
                      computation="", issued_by=None) -> CreditNote:
    year = now.astimezone(UTC).year
    number = f"CN-{year}-{next_number('CN', year):06d}"
    return CreditNote.objects.create(
        account=account, invoice=invoice, number=number, kind=kind, currency=invoice.currency,
        amount=amount, remaining=amount if remaining is None else remaining, reason=reason,
        computation=computation[:300], issued_at=now, issued_by=issued_by,
    )


def default_payment_method(account) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True).first()


def payment_begin(invoice: Invoice, payment_method: PaymentMethod, *, now) -> Payment:
    """Step 1: record the attempt before calling the gateway."""
    attempt = Payment.objects.filter(invoice=invoice).count() + 1
    return Payment.objects.create(
        invoice=invoice, account_id=invoice.account_id, payment_method=payment_method,
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
