"""Reads of the ledger for the billing page and the admin."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce

from core import zones

from .models import PARTLY_REFUNDED, REFUNDED, CreditNoteKind, Invoice, InvoiceStatus

ZERO = Value(Decimal("0"), output_field=DecimalField(max_digits=12, decimal_places=2))


def with_credit_totals(queryset):
    """Invoices with `refunded_total` and `credited_total` (for Invoice.status_label) in the same query."""
    return queryset.annotate(
        refunded_total=Coalesce(Sum("credit_notes__amount", filter=Q(credit_notes__kind=CreditNoteKind.REFUND)), ZERO),
        credited_total=Coalesce(Sum("credit_notes__amount", filter=~Q(credit_notes__kind=CreditNoteKind.REFUND)),
                                ZERO),
    )


def issued_invoices(account):
    """The account's issued invoices, newest first, with what was refunded or credited on each."""
    return with_credit_totals(Invoice.objects.filter(account=account, number__isnull=False)).order_by("-issued_at",
                                                                                                      "-id")


def last_paid_invoice(subscription) -> Invoice | None:
    """The subscription's latest paid invoice: the one a DWN-4 credit note corrects (and whose tax
    it reverses), named the same way by the quote and by the downgrade."""
    return (Invoice.objects.filter(subscription=subscription, status="paid", number__isnull=False)
            .order_by("-issued_at", "-id").first())


@dataclass(frozen=True)
class StatusLine:
    """An invoice's status as a customer reads it, with the date of the event that gave it."""

    label: str  # "Paid", "Refunded", "Partly credited", "Open", "Void"…
    on: date | None  # the local date of that event on the invoice's calendar; None: no event date
    tone: str  # the page's badge colour (Invoice.status_tone)

    @property
    def text(self) -> str:
        """"Refunded on 2026-05-03": what the invoice page and its PDF both print."""
        return f"{self.label} on {self.on:%Y-%m-%d}" if self.on else self.label


def invoice_status_line(invoice: Invoice) -> StatusLine:
    """INV-6: the one status line of an invoice, for its page and its PDF alike. Each status is an
    event with its own date, read on the invoice's frozen calendar: paid on the payment's date,
    refunded (or partly) on the latest refund credit note's date, credited (or partly) on the latest
    other credit note's date, void on the day it was voided. Open and uncollectible carry no date."""
    label = invoice.status_label
    at = None
    if invoice.status == InvoiceStatus.PAID:
        at = invoice.paid_at
        if label != InvoiceStatus.PAID.label:  # refunded or credited: the latest such note's date
            notes = invoice.credit_notes.all()
            notes = (notes.filter(kind=CreditNoteKind.REFUND) if label in (REFUNDED, PARTLY_REFUNDED)
                     else notes.exclude(kind=CreditNoteKind.REFUND))
            at = notes.order_by("-issued_at", "-id").values_list("issued_at", flat=True).first()
    elif invoice.status == InvoiceStatus.VOID:
        at = invoice.voided_at
    return StatusLine(label, zones.local_date(at, invoice.zone) if at else None, invoice.status_tone)
