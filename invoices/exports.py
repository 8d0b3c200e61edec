"""The accountant's export (TAX-2): the invoices and credit notes issued in one month, with each
document's net, tax by rate, treatment, country and VAT ID, then the month's totals by country,
treatment and rate. Credit notes count negative. CSV, one row per document."""

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal

from accounts.countries import country_name
from core.money import ZERO

from .models import CreditNote, Invoice, InvoiceStatus

COLUMNS = ["document", "number", "issued_on", "corrects", "account_id", "customer", "country", "country_name",
           "vat_id", "tax_treatment", "currency", "net", "tax_rate", "tax", "gross"]


def month_bounds(month: date) -> tuple[datetime, datetime]:
    start = datetime(month.year, month.month, 1, tzinfo=UTC)
    end = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def tax_rows(month: date) -> list[dict]:
    """One row per invoice and credit note issued in `month` (UTC): issued invoices that were not
    voided, and every credit note, with its amounts before credit applied (credit is a payment)."""
    start, end = month_bounds(month)
    rows = []
    invoices = (Invoice.objects.filter(issued_at__gte=start, issued_at__lt=end, number__isnull=False)
                .exclude(status=InvoiceStatus.VOID).order_by("issued_at", "id"))
    for inv in invoices:
        rows.append(_row("invoice", inv.number, inv.issued_at, "", inv, inv, inv.net_amount, inv.tax_amount,
                         inv.gross_amount))
    notes = (CreditNote.objects.filter(issued_at__gte=start, issued_at__lt=end).select_related("invoice")
             .order_by("issued_at", "id"))
    for note in notes:
        rows.append(_row("credit_note", note.number, note.issued_at, note.invoice.number or "", note.invoice, note,
                         -note.net_amount, -note.tax_amount, -note.amount))
    return rows


def _row(kind, number, issued_at, corrects, invoice, document, net, tax, gross) -> dict:
    country = invoice.tax_country or invoice.bill_to_country
    return {"document": kind, "number": number, "issued_on": issued_at.astimezone(UTC).date().isoformat(),
            "corrects": corrects, "account_id": invoice.account_id,
            "customer": invoice.bill_to_company or invoice.bill_to_name, "country": country,
            "country_name": country_name(country), "vat_id": invoice.tax_vat_id,
            "tax_treatment": document.tax_treatment, "currency": invoice.currency, "net": net,
            "tax_rate": document.tax_rate, "tax": tax, "gross": gross}


def tax_csv(month: date) -> str:
    """The month's documents, then a blank line and the totals by (currency, country, treatment, rate)."""
    rows = tax_rows(month)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row[column] for column in COLUMNS])
    totals: dict[tuple, list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for row in rows:
        key = (row["currency"], row["country"], row["tax_treatment"], row["tax_rate"])
        for i, column in enumerate(("net", "tax", "gross")):
            totals[key][i] += row[column]
    writer.writerow([])
    writer.writerow(["total", "currency", "country", "country_name", "tax_treatment", "tax_rate", "net", "tax",
                     "gross"])
    for (currency, country, treatment, rate), (net, tax, gross) in sorted(totals.items(), key=lambda kv: (
            kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
        writer.writerow([f"{month:%Y-%m}", currency, country, country_name(country), treatment, rate, net, tax,
                         gross])
    return out.getvalue()


