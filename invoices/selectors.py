"""Reads of the ledger for the billing page and the admin."""

from decimal import Decimal

from django.db.models import DecimalField, Q, Sum, Value
from django.db.models.functions import Coalesce

from .models import CreditNoteKind, Invoice

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
