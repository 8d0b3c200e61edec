"""Invoice and credit-note PDFs (INV-1, INV-3): the text is extractable and states the facts."""

import shutil
import subprocess
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import Account
from invoices import services as ledger
from invoices.models import CreditNoteKind, InvoiceKind, Payment, PaymentStatus
from invoices.pdf import credit_note_pdf, invoice_pdf
from subscriptions import billing
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 4, 16, 10, 0, tzinfo=UTC)
needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")


def pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "document.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def paid_invoice(catalog, django_capture_on_commit_callbacks):
    account = AccountFactory(name="Acme Analytics")
    Account.objects.filter(pk=account.pk).update(
        company="Acme GmbH", address="Hauptstrasse 1\n10115 Berlin", country="DE", vat_id="DE123456789"
    )
    account.refresh_from_db()
    billing.set_payment_method(account, "pm_card_visa", now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        billing.subscribe(account, "advanced", "monthly", now=NOW)
    return account.invoices.get(kind=InvoiceKind.SUBSCRIPTION)


@needs_pdftotext
def test_inv1_invoice_pdf_states_number_parties_lines_totals_and_payments(paid_invoice, tmp_path):
    data = invoice_pdf(paid_invoice)

    assert data.startswith(b"%PDF-")
    text = pdf_text(data, tmp_path)
    assert paid_invoice.number in text
    for fact in ("Prorata", "Acme GmbH", "Hauptstrasse 1", "10115 Berlin", "Germany", "VAT ID DE123456789",
                 "2026-04-16", "Paid", "$29.00", "Subtotal", "Credit applied", "Total", "Amount paid", "Succeeded",
                 "Visa"):
        assert fact in text, fact
    assert "2026-04-16 to 2026-05-16" in text  # the line's period


@needs_pdftotext
def test_inv4_invoice_pdf_uses_billing_details_as_issued(paid_invoice, tmp_path):
    Account.objects.filter(pk=paid_invoice.account_id).update(company="Renamed Ltd")
    paid_invoice.refresh_from_db()

    text = pdf_text(invoice_pdf(paid_invoice), tmp_path)

    assert "Acme GmbH" in text
    assert "Renamed Ltd" not in text


@needs_pdftotext
@pytest.mark.parametrize("unicode_font", [True, False], ids=["dejavu", "core-font"])
def test_inv1_invoice_pdf_prints_policy_signs_and_failed_attempts(catalog, tmp_path, unicode_font):
    account = AccountFactory(name="Zoë Café")
    invoice = ledger.invoice_create(
        account=account, subscription=account.subscription, kind=InvoiceKind.UPGRADE, currency="USD", now=NOW,
        lines=[ledger.Line("Personal → Advanced, 15 of 30 days", Decimal("7.50"),
                           computation="(29.00 \u2212 14.00) \u00d7 15/30 = 7.50")],
        notes="The 15 unused days of the monthly period are forfeited (UPG-3).",
    )
    ledger.invoice_issue(invoice, now=NOW)
    Payment.objects.create(invoice=invoice, account=account, amount=Decimal("7.50"), idempotency_key="k-1",
                           gateway="sandbox", status=PaymentStatus.FAILED, decline_message="Insufficient funds.")

    text = pdf_text(invoice_pdf(invoice, unicode_font=unicode_font), tmp_path)

    assert invoice.number in text
    assert "Zoë Café" in text
    assert "Insufficient funds." in text
    assert "forfeited" in text
    assert "$7.50" in text
    if unicode_font:
        assert "(29.00 \u2212 14.00) \u00d7 15/30" in text
    else:
        assert "(29.00 - 14.00) x 15/30" in text


@needs_pdftotext
def test_inv2_credit_note_pdf_names_the_invoice(paid_invoice, tmp_path):
    note = ledger.credit_note_issue(
        account=paid_invoice.account, invoice=paid_invoice, kind=CreditNoteKind.DOWNGRADE, amount=Decimal("7.50"),
        reason="Unused Advanced days after an immediate downgrade", now=NOW,
        computation="(29.00 \u2212 14.00) \u00d7 15/30 = 7.50",
    )

    text = pdf_text(credit_note_pdf(note), tmp_path)

    assert note.number in text
    assert paid_invoice.number in text
    assert "$7.50" in text
    assert "Credit remaining" in text
    assert "never paid out" in text


def test_inv3_same_invoice_renders_the_same_bytes(paid_invoice):
    assert invoice_pdf(paid_invoice) == invoice_pdf(paid_invoice)


@needs_pdftotext
def test_inv1_text_beyond_latin1_switches_to_the_embedded_unicode_font(paid_invoice, tmp_path):
    pytest.importorskip("fontTools")
    from invoices.pdf import _dejavu

    if _dejavu() is None:
        pytest.skip("DejaVu Sans is not installed")
    paid_invoice.bill_to_company = "ООО «Акме» Ελλάς"
    latin1 = invoice_pdf(paid_invoice)
    assert b"DejaVu" in latin1
    assert "ООО «Акме» Ελλάς" in pdf_text(latin1, tmp_path)


def test_inv1_latin1_text_uses_the_core_font_without_embedding(paid_invoice):
    data = invoice_pdf(paid_invoice)

    assert b"/Helvetica" in data and b"DejaVu" not in data
