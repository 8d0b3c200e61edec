"""Invoice and credit-note PDFs (INV-1, INV-3), drawn with fpdf2: pure Python, no network.

The text is real text (not images), so `pdftotext` and screen readers find the number and the
amounts. The PDF core font Helvetica is used when the document fits latin-1 once a few signs are
spelled out (the policy's "−" and "×" become "-" and "x"): it costs nothing to draw. When some
text would be lost (a name in another script), the document is drawn again with DejaVu Sans
embedded, if the system has it; embedding costs about a second per document.

Money goes through `format_money` (D-3); dates are the account's calendar dates (D-2) as they
were at issue (INV-6).

INV-6: a document is drawn only from its own record: the seller, the bill-to block, the calendar
(time zone) of its dates, lines, tax and mentions were fixed at issue, so the settings or the account
as they are now never change it. The PDF bytes are not stored: the same record draws the same bytes
(the creation date is the issue instant, no other clock or random input), and a download after a
status change (a refund, a credit note) differs only by that status, as the page does.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from accounts.countries import country_name
from core.money import format_money
from core.seller import Seller

from .documents import seller_rows
from .models import CreditNote, Invoice
from .selectors import invoice_status_line

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"), Path("/usr/share/fonts/TTF"))
LATIN1_REPLACEMENTS = {
    "\u2212": "-",  # minus sign
    "\u00d7": "x",  # multiplication sign
    "\u2013": "-",
    "\u2014": "-",
    "\u2022": "*",
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2192": "->",
    "\u2026": "...",
    "\u20ac": "EUR ",
}
INK = (29, 36, 51)
MUTED = (91, 101, 120)
RULE = (221, 226, 234)
BRAND = (31, 58, 104)


def _dejavu() -> tuple[Path, Path] | None:
    for folder in FONT_DIRS:
        regular, bold = folder / "DejaVuSans.ttf", folder / "DejaVuSans-Bold.ttf"
        if regular.is_file() and bold.is_file():
            return regular, bold
    return None


class _Document(FPDF):
    def __init__(self, *, title: str, number: str, seller: Seller, unicode_font: bool = False):
        super().__init__(orientation="P", unit="mm", format="A4")
        fonts = _dejavu() if unicode_font else None
        self.lossy = False  # set when latin-1 could not hold some text
        if fonts:
            self.add_font("DejaVu", "", str(fonts[0]))
            self.add_font("DejaVu", "B", str(fonts[1]))
            self.base_font = "DejaVu"
        else:
            self.base_font = "Helvetica"
        self.has_unicode = bool(fonts)
        self.doc_title, self.doc_number = title, number
        self.seller = seller  # as the document was issued by (INV-6)
        self.set_title(f"{title} {number}")
        self.set_author(self.seller.name)
        self.set_creator("Prorata billing")
        self.set_producer("Prorata billing")  # not the library's version: a document's bytes depend on its record
        self.set_auto_page_break(auto=True, margin=18)
        self.set_margins(18, 18, 18)
        self.alias_nb_pages()
        self.add_page()

    def clean(self, text) -> str:
        text = "" if text is None else str(text)
        if self.has_unicode:
            return text
        for char, replacement in LATIN1_REPLACEMENTS.items():
            text = text.replace(char, replacement)
        try:
            return text.encode("latin-1").decode("latin-1")
        except UnicodeEncodeError:
            self.lossy = True
            return text.encode("latin-1", "replace").decode("latin-1")

    def use(self, size: float, bold: bool = False, color=INK) -> None:
        self.set_font(self.base_font, "B" if bold else "", size)
        self.set_text_color(*color)

    def line_text(self, text, *, size: float = 10, bold: bool = False, color=INK, height: float = 5, align="L",
                  width: float = 0) -> None:
        self.use(size, bold, color)
        self.multi_cell(width, height, self.clean(text), align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    def footer(self) -> None:
        self.set_y(-12)
        self.use(8, color=MUTED)
        self.cell(0, 5, self.clean(f"{self.seller.name} · {self.doc_title} {self.doc_number}"), align="L")
        self.set_x(self.l_margin)
        self.cell(0, 5, f"Page {self.page_no()}/{{nb}}", align="R")

    def rule(self) -> None:
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())

    def heading(self, kind_label: str) -> None:
        """The seller (TAX-1: legal name, address, country, tax ID, registration, support) on the left,
        the document's title and number on the right."""
        top = self.get_y()
        half = (self.w - self.l_margin - self.r_margin) / 2
        self.use(16, bold=True, color=BRAND)
        self.multi_cell(half + 10, 8, self.clean(self.seller.name), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        for row in seller_rows(self.seller):
            self.line_text(row, size=9, color=MUTED, height=4.5, width=half + 10)
        left_bottom = self.get_y()
        self.set_xy(self.l_margin, top)
        self.use(16, bold=True)
        self.cell(0, 8, self.clean(self.doc_title.upper()), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.use(11, bold=True)
        self.cell(0, 6, self.clean(self.doc_number), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.use(9, color=MUTED)
        self.cell(0, 5, self.clean(kind_label), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_y(max(left_bottom, self.get_y()))
        self.ln(4)
        self.rule()
        self.ln(4)

    def parties(self, bill_to: list[str], facts: list[tuple[str, str]]) -> None:
        """Bill-to on the left, the document's facts on the right."""
        top = self.get_y()
        half = (self.w - self.l_margin - self.r_margin) / 2
        self.use(8, bold=True, color=MUTED)
        self.cell(half, 5, "BILL TO", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        for row in bill_to:
            self.line_text(row, width=half - 4)
        left_bottom = self.get_y()
        self.set_y(top)
        for label, value in facts:
            self.set_x(self.l_margin + half)
            self.use(9, color=MUTED)
            self.cell(half * 0.36, 5, self.clean(label))
            self.use(10, bold=label in ("Status",))
            self.multi_cell(half * 0.64, 5, self.clean(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_y(max(left_bottom, self.get_y()) + 6)

    def table_rows(self, headings: tuple[str, ...], rows: list[tuple[str, ...]], widths: tuple[int, ...],
                   right: set[int]) -> None:
        self.use(9)
        self.set_draw_color(*RULE)
        with self.table(
            col_widths=widths, text_align=tuple("RIGHT" if i in right else "LEFT" for i in range(len(widths))),
            line_height=5, padding=1.5, borders_layout="HORIZONTAL_LINES", first_row_as_headings=True,
            headings_style=_heading_style(self.base_font),
        ) as table:
            table.row([self.clean(h) for h in headings])
            for values in rows:
                table.row([self.clean(v) for v in values])
        self.ln(3)

    def totals(self, rows: list[tuple[str, str, bool]]) -> None:
        width = (self.w - self.l_margin - self.r_margin) * 0.45
        for label, value, strong in rows:
            self.set_x(self.w - self.r_margin - width)
            self.use(10, bold=strong, color=INK if strong else MUTED)
            self.cell(width * 0.55, 6, self.clean(label))
            self.use(10, bold=strong)
            self.cell(width * 0.45, 6, self.clean(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(4)

    def section(self, title: str) -> None:
        self.ln(2)
        self.use(8, bold=True, color=MUTED)
        self.cell(0, 5, self.clean(title.upper()), new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _heading_style(family: str):
    from fpdf.fonts import FontFace

    return FontFace(family=family, emphasis="BOLD", color=MUTED)


# --- formatting ------------------------------------------------------------------------------


def _day(value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return ""
    return f"{value.astimezone(zone).date():%Y-%m-%d}"


def span(start, end, zone) -> str:
    """A line's or an invoice's period as printed: local dates of the document's calendar."""
    if not start:
        return ""
    return f"{_day(start, zone)} to {_day(end, zone)}" if end else f"from {_day(start, zone)}"


def _quantity(value: Decimal) -> str:
    return format(value.normalize(), "f") if value is not None else ""


def _bill_to(document: Invoice) -> list[str]:
    """As fixed on the invoice (INV-4), not the account's current details: the company when there
    is one, else the account's name; the address, the country by its ISO name, the VAT ID."""
    rows = [document.bill_to_company or document.bill_to_name, *document.bill_to_address.splitlines()]
    if document.bill_to_country:
        rows.append(country_name(document.bill_to_country))
    if document.bill_to_vat_id:
        rows.append(f"VAT ID {document.bill_to_vat_id}")
    return [row for row in rows if row.strip()]


def tax_rows(document, money) -> list[tuple[str, str, bool]]:
    """Tax by rate (TAX-2) for the totals: one rate per document (one treatment per customer)."""
    if not document.shows_tax:
        return []
    base = document.net_amount
    if document.prices_include_tax:
        return [(f"incl. {document.tax_label} on {money(base)}", money(document.tax_amount), False)]
    return [(f"{document.tax_label} on {money(base)}", money(document.tax_amount), False)]


def _finish(pdf: _Document, when: datetime | None) -> bytes:
    if when is not None:
        pdf.set_creation_date(when)  # the same document renders to the same bytes
    return bytes(pdf.output())


# --- documents -------------------------------------------------------------------------------


def _render(draw, document, unicode_font: bool | None) -> bytes:
    """Draw with the core font, or with DejaVu when asked to or when latin-1 would lose text."""
    if unicode_font is None:
        pdf = draw(document, unicode_font=False)
        if pdf.lossy and _dejavu():
            pdf = draw(document, unicode_font=True)
    else:
        pdf = draw(document, unicode_font=unicode_font)
    return _finish(pdf, getattr(document, "issued_at", None) or getattr(document, "created_at", None))


def invoice_pdf(invoice: Invoice, *, unicode_font: bool | None = None) -> bytes:
    """The invoice as a PDF: seller, bill-to, number, issue date, status, lines, totals, notes
    and payment attempts (INV-1). `unicode_font` None picks the font for the text."""
    return _render(_draw_invoice, invoice, unicode_font)


def credit_note_pdf(credit_note: CreditNote, *, unicode_font: bool | None = None) -> bytes:
    """The credit note as a PDF, naming the invoice it corrects (INV-2)."""
    return _render(_draw_credit_note, credit_note, unicode_font)


def _invoice_lines(pdf: _Document, invoice: Invoice, money) -> None:
    """The invoice's lines, with each line's VAT rate when the invoice shows tax (TAX-2)."""
    zone = invoice.zone
    rows = []
    for line in invoice.lines.all():
        description = line.description + (f"\n{line.computation}" if line.computation else "")
        row = (description, span(line.period_start, line.period_end, zone), _quantity(line.quantity),
               money(line.unit_price))
        rows.append((*row, f"{line.tax_rate.normalize():f} %", money(line.amount)) if invoice.shows_tax
                    else (*row, money(line.amount)))
    if invoice.shows_tax:  # TAX-2: each line's rate
        pdf.table_rows(("Description", "Period", "Qty", "Unit price", "VAT", "Amount"), rows,
                       (62, 38, 12, 22, 16, 24), {2, 3, 4, 5})
    else:
        pdf.table_rows(("Description", "Period", "Qty", "Unit price", "Amount"), rows, (70, 42, 14, 24, 24),
                       {2, 3, 4})


def _invoice_history(pdf: _Document, invoice: Invoice, money) -> None:
    """What happened to the invoice: its payment attempts, then its credit notes."""
    zone = invoice.zone
    payments = list(invoice.payments.select_related("payment_method").order_by("attempted_at", "id"))
    pdf.section("Payment attempts")
    if payments:
        pdf.table_rows(
            ("Date", "Method", "Amount", "Result"),
            [(_day(p.attempted_at, zone), p.method_label, money(p.amount),
              p.get_status_display() + (f": {p.decline_message}" if p.decline_message else "")
              + (f" (refunded {money(p.refunded_amount)})" if p.refunded_amount else ""))
             for p in payments],
            (26, 62, 26, 60), {2},
        )
    else:
        pdf.line_text("No payment attempts." if invoice.total else "Nothing to charge: marked paid.", size=9,
                      color=MUTED)

    notes = list(invoice.credit_notes.order_by("issued_at", "id"))
    if notes:
        pdf.section("Credit notes")
        pdf.table_rows(("Number", "Date", "Reason", "Amount"),
                       [(n.number, _day(n.issued_at, zone), n.reason, money(n.amount)) for n in notes],
                       (36, 26, 86, 26), {3})


def _draw_invoice(invoice: Invoice, *, unicode_font: bool) -> _Document:
    money = lambda amount: format_money(amount, invoice.currency)  # noqa: E731
    zone = invoice.zone
    number = invoice.number or f"Draft #{invoice.pk}"
    pdf = _Document(title="Invoice" if invoice.number else "Draft invoice", number=number,
                    seller=invoice.issued_by_seller, unicode_font=unicode_font)
    pdf.heading(invoice.get_kind_display())
    facts = [
        ("Invoice number", number),
        ("Issue date", _day(invoice.issued_at, zone) or "not issued"),
        ("Status", invoice_status_line(invoice).text),  # the page's status line (INV-6)
    ]
    if invoice.period_start:
        facts.append(("Period", span(invoice.period_start, invoice.period_end, zone)))
    if invoice.paid_at:
        facts.append(("Paid on", _day(invoice.paid_at, zone)))
    facts.append(("Currency", invoice.currency))
    pdf.parties(_bill_to(invoice), facts)

    _invoice_lines(pdf, invoice, money)
    subtotal = "Subtotal (net)" if invoice.shows_tax and not invoice.prices_include_tax else "Subtotal"
    pdf.totals([
        (subtotal, money(invoice.subtotal), False),
        *tax_rows(invoice, money),
        ("Credit applied", money(-invoice.credit_applied) if invoice.credit_applied else money(Decimal("0")), False),
        ("Total", money(invoice.total), True),
        ("Amount paid", money(invoice.amount_paid), False),
        ("Amount due", money(invoice.amount_due), True),
    ])
    if invoice.tax_mention:  # TAX-3: reverse charge (Art. 196) or export
        pdf.line_text(invoice.tax_mention, size=9, bold=True)
        pdf.ln(2)

    if invoice.notes:
        pdf.section("Notes")
        pdf.line_text(invoice.notes, size=9)

    _invoice_history(pdf, invoice, money)
    return pdf


def _draw_credit_note(credit_note: CreditNote, *, unicode_font: bool) -> _Document:
    money = lambda amount: format_money(amount, credit_note.currency)  # noqa: E731
    invoice = credit_note.invoice
    zone = credit_note.zone
    pdf = _Document(title="Credit note", number=credit_note.number, seller=credit_note.issued_by_seller,
                    unicode_font=unicode_font)
    pdf.heading(credit_note.get_kind_display())
    pdf.parties(_bill_to(invoice), [
        ("Credit note number", credit_note.number),
        ("Issue date", _day(credit_note.issued_at, zone)),
        ("Corrects invoice", invoice.number or f"Draft #{invoice.pk}"),
        ("Invoice date", _day(invoice.issued_at, zone)),
        ("Currency", credit_note.currency),
    ])
    pdf.table_rows(("Description", "Amount"),
                   [(credit_note.reason + (f"\n{credit_note.computation}" if credit_note.computation else ""),
                     money(credit_note.net_amount if credit_note.shows_tax else credit_note.amount))],
                   (148, 26), {1})
    if credit_note.shows_tax:  # TAX-2: the invoice's tax, reversed in proportion
        pdf.totals([("Net", money(credit_note.net_amount), False),
                    (f"{credit_note.tax_label} reversed", money(credit_note.tax_amount), False)])
        if invoice.tax_mention:
            pdf.line_text(invoice.tax_mention, size=9, bold=True)
            pdf.ln(2)
    if credit_note.kind == "refund":
        pdf.totals([("Credit note total", money(credit_note.amount), True),
                    ("Refunded to the card", money(credit_note.amount - credit_note.remaining), False)])
        pdf.line_text("The amount is paid back to the payment method used for the invoice.", size=9, color=MUTED)
    else:
        pdf.totals([("Credit note total", money(credit_note.amount), True),
                    ("Credit remaining", money(credit_note.remaining), False)])
        pdf.line_text("The credit is applied automatically to the next invoices until it is used up. "
                      "Credit is never paid out.", size=9, color=MUTED)
    return pdf
