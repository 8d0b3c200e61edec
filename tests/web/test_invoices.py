"""Invoices and credit notes on the billing page (INV-3): list, detail and a real PDF."""

import subprocess
from decimal import Decimal

import pytest
from django.urls import reverse

from invoices import services as ledger
from invoices.models import Invoice
from subscriptions import billing

from .conftest import current


@pytest.fixture
def paid(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    travel("2026-04-16")
    billing.change_plan(current(account), "advanced", "monthly")
    return Invoice.objects.filter(account=account).order_by("id")


def pdf_text(content: bytes, tmp_path) -> str:
    path = tmp_path / "doc.pdf"
    path.write_bytes(content)
    return subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True).stdout


def test_inv3_list_shows_invoices_and_credit_notes(paid, account, client_owner):
    first, upgrade = paid
    note = ledger.credit_note_issue(account=account, invoice=upgrade, kind="correction", amount=Decimal("2.00"),
                                    reason="Goodwill", now=upgrade.issued_at)
    html = client_owner.get(reverse("invoices:list")).content.decode()
    assert first.number in html and upgrade.number in html and note.number in html
    assert "$14.00" in html and "$7.50" in html and "$2.00" in html
    assert reverse("invoices:pdf", args=[upgrade.pk]) in html
    assert reverse("invoices:credit_note_pdf", args=[note.pk]) in html


def test_inv3_detail_shows_lines_computation_and_payments(paid, client_owner):
    upgrade = paid[1]
    html = client_owner.get(reverse("invoices:detail", args=[upgrade.pk])).content.decode()
    assert f"Invoice {upgrade.number}" in html
    assert "($29.00 − $14.00) × 15/30 days = $7.50" in html
    assert "Succeeded" in html and "Visa •••• 4242" in html


@pytest.mark.skipif(subprocess.run(["which", "pdftotext"], capture_output=True).returncode != 0,
                    reason="pdftotext (poppler-utils) is not installed")
def test_inv3_invoice_and_credit_note_download_as_real_pdfs(paid, account, client_owner, tmp_path):
    upgrade = paid[1]
    response = client_owner.get(reverse("invoices:pdf", args=[upgrade.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert f'filename="invoice-{upgrade.number}.pdf"' in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")
    text = pdf_text(response.content, tmp_path)
    assert upgrade.number in text and "7.50" in text
    note = ledger.credit_note_issue(account=account, invoice=upgrade, kind="correction", amount=Decimal("2.00"),
                                    reason="Goodwill", now=upgrade.issued_at)
    response = client_owner.get(reverse("invoices:credit_note_pdf", args=[note.pk]))
    assert response.content.startswith(b"%PDF") and note.number in pdf_text(response.content, tmp_path)
    detail = client_owner.get(reverse("invoices:credit_note", args=[note.pk])).content.decode()
    assert note.number in detail and upgrade.number in detail and "Goodwill" in detail


def test_inv3_billing_role_downloads_invoices(paid, billing_user):
    from .conftest import login

    response = login(billing_user).get(reverse("invoices:pdf", args=[paid[0].pk]))
    assert response.status_code == 200 and response.content.startswith(b"%PDF")
