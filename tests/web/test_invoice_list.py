"""INV-3: the invoice list is paginated (an account with 1,000 invoices gets 25 a page, not all
of them), newest first, and each invoice says "Refunded" or "Partly credited" where that is true."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices.models import CreditNote, CreditNoteKind, Invoice, InvoiceKind, InvoiceStatus

from .conftest import at


def _text(response) -> str:
    return response.content.decode()


def make_invoices(account, n: int) -> list[Invoice]:
    """`n` paid overage invoices, one a day from 2023-01-01 (numbers in issue order)."""
    start = at("2023-01-01")
    return Invoice.objects.bulk_create([
        Invoice(account=account, number=f"{(start + timedelta(days=i)).year}-9{i:05d}", kind=InvoiceKind.OVERAGE,
                status=InvoiceStatus.PAID, issued_at=start + timedelta(days=i), paid_at=start + timedelta(days=i),
                subtotal=Decimal("1.00"), total=Decimal("1.00"), amount_paid=Decimal("1.00"))
        for i in range(n)])


def rows(html: str) -> list[str]:
    table = html.split('id="invoice-table"')[1].split("</table>")[0]
    return [row.split("</a>")[0].rsplit(">", 1)[1] for row in table.split("<tbody>")[1].split("<tr>")[1:]]


def test_inv3_a_thousand_invoices_are_listed_25_a_page_newest_first(account, client_owner,
                                                                   django_assert_max_num_queries):
    invoices = make_invoices(account, 1000)
    newest_first = [invoice.number for invoice in reversed(invoices)]
    with django_assert_max_num_queries(12):
        response = client_owner.get(reverse("invoices:list"))
    html = _text(response)
    assert rows(html) == newest_first[:25]
    assert "Page 1 of 40 (1–25 of 1000)" in html
    assert 'href="?page=2" rel="next">Older invoices</a>' in html and 'rel="prev"' not in html.split("notes-title")[0]
    assert len(response.content) < 40_000  # was 333 KB with every invoice on the page

    html = _text(client_owner.get(reverse("invoices:list"), {"page": "2"}))
    assert rows(html) == newest_first[25:50]
    assert 'href="?page=1" rel="prev">Newer invoices</a>' in html and 'href="?page=3" rel="next"' in html


@pytest.mark.parametrize(("asked", "shown"), [("40", 40), ("999", 40), ("abc", 1), ("-1", 40), ("", 1)])
def test_inv3_a_page_out_of_range_shows_the_nearest_page(account, client_owner, asked, shown):
    make_invoices(account, 1000)
    html = _text(client_owner.get(reverse("invoices:list"), {"page": asked}))
    assert f"Page {shown} of 40" in html


def test_inv3_credit_notes_page_on_their_own_and_keep_the_invoice_page(account, client_owner):
    invoices = make_invoices(account, 30)
    CreditNote.objects.bulk_create([
        CreditNote(account=account, invoice=invoices[0], number=f"CN-2023-{i:06d}", kind=CreditNoteKind.CORRECTION,
                   amount=Decimal("0.01"), remaining=Decimal("0"), reason="Correction", issued_at=at("2023-02-01")
                   + timedelta(hours=i)) for i in range(30)])
    html = _text(client_owner.get(reverse("invoices:list"), {"page": "2", "notes": "2"}))
    assert "Page 2 of 2 (26–30 of 30)" in html.split("notes-title")[0]
    assert 'href="?notes=1&amp;page=2" rel="prev">Newer credit notes</a>' in html


def test_inv2_a_refunded_or_credited_invoice_says_so_in_the_list(account, client_owner):
    refunded, credited, plain = make_invoices(account, 3)
    CreditNote.objects.create(account=account, invoice=refunded, number="CN-2023-000001", kind=CreditNoteKind.REFUND,
                              amount=Decimal("1.00"), remaining=Decimal("0"), reason="Refund")
    CreditNote.objects.create(account=account, invoice=credited, number="CN-2023-000002",
                              kind=CreditNoteKind.CORRECTION, amount=Decimal("0.40"), remaining=Decimal("0.40"),
                              reason="Goodwill")
    html = _text(client_owner.get(reverse("invoices:list")))
    table = html.split('id="invoice-table"')[1]
    row = {number: table.split(f">{number}</a>")[1].split("</tr>")[0] for number in
           (refunded.number, credited.number, plain.number)}
    assert '<span class="badge warn">Refunded</span>' in row[refunded.number]
    assert '<span class="badge warn">Partly credited</span>' in row[credited.number]
    assert '<span class="badge ok">Paid</span>' in row[plain.number]
