"""INV-6: an issued invoice or credit note is a fact frozen at issue. Its page and its PDF say what
they said when it was issued, whatever the seller's settings, the account's billing details, its
billing time zone or its plan became since; only its status moves, each status with the date of
its own event, on the page and in the PDF alike. No internal rule ID reaches a document (INV-8)."""

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.groups import BILLING_MANAGERS, ensure_staff_groups
from accounts.models import Account
from core.seller import seller
from invoices.models import CreditNote, CreditNoteKind, Invoice, InvoiceKind, PaymentMethod
from invoices.pdf import credit_note_pdf, invoice_pdf
from invoices.tax_rates import EU_RATES, tax_rates_load_file
from plans.models import Plan
from subscriptions import billing, scheduler, staff
from tests.factories import AccountFactory, UserFactory

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")]

SELLER_DE = {"SELLER_NAME": "Beispiel Analytics GmbH", "SELLER_ADDRESS": "Hauptstrasse 1\n10115 Berlin",
             "SELLER_COUNTRY": "DE", "SELLER_TAX_ID": "DE136695976", "SELLER_REGISTRATION": "Amtsgericht Berlin HRB 1",
             "SELLER_SUPPORT_EMAIL": "billing@beispiel.example"}
SELLER_LATER = {"SELLER_NAME": "Renamed Holding Ltd", "SELLER_ADDRESS": "9 Other Road\\nDublin 2",
                "SELLER_COUNTRY": "IE", "SELLER_TAX_ID": "IE6388047V", "SELLER_REGISTRATION": "CRO 999999",
                "SELLER_SUPPORT_EMAIL": "help@renamed.example"}
RULE_ID = re.compile(r"[A-Z]{3}-\d")
# Kiritimati is UTC+14: 11:00 UTC is already the next day there, so a date read in UTC or in another
# zone later would show another day.
ZONE = "Pacific/Kiritimati"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "document.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


def document_html(client: Client, url: str) -> str:
    """The document part of a page (`#document` to the end of the content): the site's header and
    footer (the current support address) are the site's, not the document's."""
    html = client.get(url).content.decode()
    start = html.find('<div id="document">')
    start = html.index("<h1") if start < 0 else start  # (before INV-6 the page had no such mark)
    return html[start:html.index("</main>", start)]


def page_text(client: Client, url: str) -> str:
    html = client.get(url).content.decode()
    return " ".join(re.sub(r"<[^>]+>", " ", html[html.index("<main"):html.index("</main>")]).split())


def manager():
    groups = ensure_staff_groups()
    user = UserFactory(username="manager@prorata.test", is_staff=True)
    user.groups.add(groups[BILLING_MANAGERS])
    return user


def current(account):
    return account.subscriptions.select_related("plan").order_by("-id").first()


def owner_client(account) -> Client:
    client = Client()
    client.force_login(account.owner)
    return client


def customer(name="Acme Analytics") -> Account:
    account = AccountFactory(name=name)
    Account.objects.filter(pk=account.pk).update(company="Acme GmbH", address="Torstrasse 5\n10119 Berlin",
                                                 country="DE", timezone=ZONE)
    account.refresh_from_db()
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-03-01T11:00"))
    return account


@pytest.fixture
def issued(settings, catalog):
    """Personal monthly from 2026-04-01, upgraded to Advanced on 04-16 (UPG-2), then staff
    downgrade it back at once on 04-21 (DWN-4: a credit note on the upgrade invoice). German seller
    and customer: 19 % VAT on every line."""
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    account = customer()
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01T11:00"))
    billing.change_plan(current(account), "advanced", "monthly", now=at("2026-04-16T11:00"))
    staff.downgrade_now(current(account), "personal", reason="Tracking outage", actor=manager(),
                        now=at("2026-04-21T11:00"))
    return account


def test_inv6_issued_invoices_and_credit_notes_read_the_same_after_settings_details_zone_and_plan_change(
        issued, settings, tmp_path):
    account = issued
    client = owner_client(account)
    invoices = list(Invoice.objects.filter(account=account).order_by("id"))
    note = CreditNote.objects.get(account=account)
    assert [i.kind for i in invoices] == [InvoiceKind.SUBSCRIPTION, InvoiceKind.UPGRADE]

    def documents():
        return ([document_html(client, reverse("invoices:detail", args=[i.pk])) for i in invoices]
                + [document_html(client, reverse("invoices:credit_note", args=[note.pk]))],
                [invoice_pdf(Invoice.objects.get(pk=i.pk)) for i in invoices]
                + [credit_note_pdf(CreditNote.objects.get(pk=note.pk))])

    pages, pdfs = documents()
    upgrade_text = pdf_text(pdfs[1], tmp_path)
    # As issued: the seller then, the customer's details then, dates on Kiritimati's calendar.
    for fact in ("Beispiel Analytics GmbH", "Hauptstrasse 1", "10115 Berlin", "VAT ID DE136695976", "Visa **** 4242",
                 "Acme GmbH", "Torstrasse 5", "Issue date", "2026-04-17", "2026-04-17 to 2026-05-02", "VAT 19"):
        assert fact in upgrade_text, fact
    assert "2026-04-17" in pages[1] and "Beispiel Analytics GmbH" in pages[1] and "Acme GmbH" in pages[2]

    # Everything the documents were issued from changes.
    with override_settings(**SELLER_LATER):
        Account.objects.filter(pk=account.pk).update(name="Renamed Customer", company="Other Ltd",
                                                     address="1 New Street\nLondon", country="GB",
                                                     vat_id="", billing_email="ap@other.example")
        account.refresh_from_db()
        billing.set_billing_zone(account, "America/Adak", now=at("2026-04-22T11:00"))  # UTC-10: a day earlier
        PaymentMethod.objects.filter(account=account).update(last4="4444", exp_year=2031)  # the bank's updater (PAY-9)
        billing.change_plan(current(account), "free", "monthly", now=at("2026-04-22T12:00"))  # scheduled
        Plan.objects.filter(code="personal").update(name="Personal Plus")
        Plan.objects.filter(code="advanced").update(name="Advanced Pro")
        assert seller().name == "Renamed Holding Ltd"  # the settings in force now

        after_pages, after_pdfs = documents()

    assert after_pages == pages
    assert after_pdfs == pdfs  # byte for byte: the same record draws the same document
    download = client.get(reverse("invoices:pdf", args=[invoices[1].pk])).content  # what the customer gets
    assert download == pdfs[1]


def test_inv6_the_set_wise_renewal_freezes_the_seller_and_the_calendar(settings, catalog, tmp_path):
    """The billing run's set-wise issue (`invoices_issue_many`) stores the seller (one value for the
    batch) and each account's time zone like `invoice_create` does."""
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    accounts = [customer(f"Customer {n}") for n in range(3)]
    for account in accounts:
        billing.subscribe(account, "personal", "monthly", now=at("2026-04-01T11:00"))
    scheduler.run(now=at("2026-05-01T00:00"))  # renewals due within 24 h: the set-wise path
    renewals = list(Invoice.objects.filter(kind=InvoiceKind.RENEWAL).order_by("id"))
    assert len(renewals) == 3
    assert {(r.timezone, r.seller["name"], r.seller["tax_id"]) for r in renewals} == {
        (ZONE, "Beispiel Analytics GmbH", "DE136695976")}
    before = invoice_pdf(renewals[0])
    with override_settings(**SELLER_LATER):
        Account.objects.filter(pk=renewals[0].account_id).update(timezone="America/Adak")
        after = invoice_pdf(Invoice.objects.get(pk=renewals[0].pk))
    assert after == before
    text = pdf_text(after, tmp_path)
    assert "Beispiel Analytics GmbH" in text and "2026-05-02 to 2026-06-02" in text  # Kiritimati's dates


# --- status lines: each status with the date of its own event (INV-6) -------------------------------


def status_of(client: Client, invoice) -> str:
    html = client.get(reverse("invoices:detail", args=[invoice.pk])).content.decode()
    cell = re.search(r"<dt>Status</dt><dd[^>]*>(.*?)</dd>", html, re.S).group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", cell).split())


def pdf_status(invoice, tmp_path) -> str:
    text = pdf_text(invoice_pdf(Invoice.objects.get(pk=invoice.pk)), tmp_path)
    return " ".join(re.search(r"Status\s+(.+)", text).group(1).split())


def test_inv6_a_refunded_invoice_says_refunded_on_the_refunds_date_on_the_page_and_in_the_pdf(catalog, tmp_path):
    account = customer()
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T11:00"))  # paid 04-02 in Kiritimati
    invoice = Invoice.objects.get(account=account)
    staff.refund_invoice(invoice, reason="Tracking was down for a week", actor=manager(), now=at("2026-04-09T11:00"))

    client = owner_client(account)
    assert status_of(client, invoice) == "Refunded on 2026-04-10"  # REF-4's date, not the payment's (04-02)
    assert pdf_status(invoice, tmp_path) == "Refunded on 2026-04-10"  # was "Paid"
    assert "Paid on 2026-04-02" in page_text(client, reverse("invoices:detail", args=[invoice.pk]))


def test_inv6_a_partly_credited_invoice_says_so_on_the_credit_notes_date(catalog, tmp_path):
    account = customer()
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T11:00"))
    invoice = Invoice.objects.get(account=account)
    staff.downgrade_now(current(account), "personal", reason="Tracking outage", actor=manager(),
                        now=at("2026-04-21T11:00"))  # DWN-4: a credit note for the unused days

    assert CreditNote.objects.get(invoice=invoice).kind == CreditNoteKind.DOWNGRADE
    assert status_of(owner_client(account), invoice) == "Partly credited on 2026-04-22"  # not 04-02
    assert pdf_status(invoice, tmp_path) == "Partly credited on 2026-04-22"


def test_inv6_a_paid_invoice_says_paid_on_its_payment_date(catalog, tmp_path):
    account = customer()
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T11:00"))
    invoice = Invoice.objects.get(account=account)
    assert status_of(owner_client(account), invoice) == "Paid on 2026-04-02"
    assert pdf_status(invoice, tmp_path) == "Paid on 2026-04-02"


# --- the seller's address as the README writes it -----------------------------------------------------


def test_tax1_seller_address_with_a_literal_backslash_n_prints_two_lines(settings, catalog, tmp_path):
    """SELLER_ADDRESS="1 Market Street\\nSan Francisco, CA 94105" in an env file reaches the settings
    with a backslash and an n, not a line break: both spell a line break."""
    settings.SELLER_ADDRESS = r"1 Market Street\nSan Francisco, CA 94105"
    account = customer()
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T11:00"))
    invoice = Invoice.objects.get(account=account)

    text = pdf_text(invoice_pdf(invoice), tmp_path)
    html = owner_client(account).get(reverse("invoices:detail", args=[invoice.pk])).content.decode()
    assert "\\n" not in text and "\\n" not in html
    lines = [line.strip() for line in text.splitlines()]
    assert any(line.startswith("1 Market Street") for line in lines)
    assert any(line.startswith("San Francisco, CA 94105") for line in lines)
    assert "1 Market Street<br>San Francisco, CA 94105" in html


# --- no internal rule IDs on documents -------------------------------------------------------------------


def test_inv8_no_rule_id_on_any_invoice_or_credit_note_page_or_pdf(settings, catalog, tmp_path):
    """Every document the engine writes, on its page and in its PDF: a first period, an upgrade
    (UPG-2), a monthly-to-yearly upgrade with forfeited days (UPG-3), an immediate downgrade's
    credit note (DWN-4, by the setting and by staff), an upgrade paid wholly by credit (INV-5), a
    renewal with credit, a trial conversion and its refund (REF-2, staff's default reason), a refund of one
    invoice (REF-4). None carries an internal rule ID such as "INV-5"."""
    staff_user = manager()
    settings.BILLING_DOWNGRADE_TIMING = "immediate"
    first = customer("First")
    billing.subscribe(first, "personal", "monthly", now=at("2026-04-01T11:00"))
    billing.change_plan(current(first), "advanced", "monthly", now=at("2026-04-16T11:00"))
    billing.change_plan(current(first), "personal", "monthly", now=at("2026-04-20T11:00"))  # DWN-4 by the setting
    billing.change_plan(current(first), "advanced", "monthly", now=at("2026-04-28T11:00"))  # covered by it (INV-5)
    scheduler.run(now=at("2026-05-01T00:00"))  # the renewal, with the rest of the credit
    scheduler.run(now=at("2026-05-01T12:00"))  # its period starts
    billing.change_plan(current(first), "advanced", "yearly", now=at("2026-05-11T11:00"))  # UPG-3
    settings.BILLING_DOWNGRADE_TIMING = "period_end"

    second = customer("Second")
    billing.subscribe(second, "advanced", "monthly", now=at("2026-04-01T11:00"))
    staff.downgrade_now(current(second), "personal", reason="Outage", actor=staff_user, now=at("2026-04-10T11:00"))
    staff.refund_invoice(Invoice.objects.get(account=second, kind=InvoiceKind.SUBSCRIPTION), reason="Outage",
                         actor=staff_user, now=at("2026-04-12T11:00"))

    third = customer("Third")
    billing.start_trial(third, "advanced", "monthly", now=at("2026-04-01T11:00"))
    scheduler.run(now=at("2026-04-15T12:00"))  # TRI-3: the conversion charge
    conversion = Invoice.objects.get(account=third, kind=InvoiceKind.TRIAL_CONVERSION)
    request = billing.request_refund(conversion, now=at("2026-04-16T11:00"))
    staff.decide_refund(request, approve=True, reason="", actor=staff_user, now=at("2026-04-17T11:00"))

    invoices = list(Invoice.objects.filter(number__isnull=False))
    notes = list(CreditNote.objects.all())
    kinds = {i.kind for i in invoices}
    assert {InvoiceKind.SUBSCRIPTION, InvoiceKind.UPGRADE, InvoiceKind.RENEWAL,
            InvoiceKind.TRIAL_CONVERSION} <= kinds
    assert {n.kind for n in notes} == {CreditNoteKind.DOWNGRADE, CreditNoteKind.REFUND}
    assert any(i.total == 0 and i.credit_applied for i in invoices)  # paid wholly by credit
    assert any(i.notes for i in invoices)  # the forfeited days' notice
    found = {}
    for invoice in invoices:
        client = owner_client(invoice.account)
        found[invoice.number] = (RULE_ID.findall(pdf_text(invoice_pdf(invoice), tmp_path))
                                 + RULE_ID.findall(page_text(client, reverse("invoices:detail", args=[invoice.pk]))))
    for note in notes:
        client = owner_client(note.account)
        found[note.number] = (RULE_ID.findall(pdf_text(credit_note_pdf(note), tmp_path))
                              + RULE_ID.findall(page_text(client, reverse("invoices:credit_note", args=[note.pk]))))
    assert {number: ids for number, ids in found.items() if ids} == {}


def test_inv6_an_invoice_keeps_its_dates_when_the_account_moves_across_the_date_line(catalog, tmp_path):
    """The reported case: the issue date and the period column moved by a day after a change of
    the billing time zone, while the line's text kept the old dates."""
    account = customer()
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T11:00"))
    invoice = Invoice.objects.get(account=account)
    billing.set_billing_zone(account, "America/Adak", now=at("2026-04-03T11:00"))
    client = owner_client(account)
    text = pdf_text(invoice_pdf(Invoice.objects.get(pk=invoice.pk)), tmp_path)
    assert "2026-04-02 to 2026-05-02" in text
    assert "2026-04-01" not in text  # what Adak's calendar reads
    html = page_text(client, reverse("invoices:detail", args=[invoice.pk]))
    assert "Issued 2026-04-02" in html and "2026-04-02 to 2026-05-02" in html
    listed = page_text(client, reverse("invoices:list"))  # the list reads each invoice's own calendar
    assert "2026-04-02 to 2026-05-02" in listed and "2026-04-01" not in listed
    overview = client.get(reverse("billing:overview")).content.decode()  # the billing page's recent invoices
    recent = overview[overview.index('id="recent-invoice-table"'):].split("</table>")[0]
    assert invoice.number in recent and "2026-04-02" in recent and "2026-04-01" not in recent
    assert invoice.timezone == ZONE and (invoice.issued_at + timedelta(hours=14)).day == 2


def test_inv6_the_back_office_shows_what_a_document_was_issued_with(issued):
    """Staff read the seller and the calendar a document prints, not the settings in force now."""
    root = UserFactory(username="root@prorata.test", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(root)
    invoice = Invoice.objects.filter(account=issued, kind=InvoiceKind.UPGRADE).get()
    note = CreditNote.objects.get(account=issued)
    with override_settings(**SELLER_LATER):
        pages = [client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).content.decode(),
                 client.get(reverse("admin:invoices_creditnote_change", args=[note.pk])).content.decode()]
    for html in pages:
        assert "Seller as issued" in html and "Beispiel Analytics GmbH · Hauptstrasse 1" in html
        assert "Renamed Holding Ltd" not in html and ZONE in html


def test_inv6_the_migration_gives_existing_documents_what_they_printed(catalog):
    """Rows issued before INV-6 get, best effort, what they printed then: the account's time zone,
    the card of each attempt, and the account's name where no billing details were stored."""
    from importlib import import_module

    from django.apps import apps

    from invoices.models import Payment

    migration = import_module("invoices.migrations.0007_issued_documents_frozen")
    account = customer()
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T11:00"))
    invoice = Invoice.objects.get(account=account)
    Invoice.objects.filter(pk=invoice.pk).update(timezone="", bill_to_name="", bill_to_company="", bill_to_address="",
                                                 bill_to_country="", bill_to_vat_id="")
    Payment.objects.filter(invoice=invoice).update(card_brand="", card_last4="")

    migration.documents_freeze(apps, None)

    invoice.refresh_from_db()
    assert (invoice.timezone, invoice.bill_to_name) == (ZONE, "Acme Analytics")
    assert [p.method_label for p in invoice.payments.all()] == ["Visa •••• 4242"]
