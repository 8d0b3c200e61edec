"""EU VAT on invoices, quotes and credit notes (TAX-1..4), exact to the cent, table-driven: a seller
in DE (19 %) and customers in DE, in FR with a valid VAT ID, in FR without one, in AT with an
invalid one (saved before the check existed), in the US; and a seller in the US. Each customer
goes through the policy's examples: a first period, an upgrade (UPG-2), extra properties (ADD-1),
overage (USE-3) and a credit note (DWN-4)."""

import shutil
import subprocess
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import pytest

from accounts.models import Account, UsageMonth
from invoices import batch
from invoices.models import CreditNote, Invoice, SandboxCharge, TaxRate
from invoices.pdf import credit_note_pdf, invoice_pdf
from invoices.tax_rates import EU_RATES, tax_rates_load_file
from invoices.tax_rules import line_tax
from subscriptions import billing, scheduler
from tests.factories import AccountFactory
from tests.subscriptions.conftest import at, current

pytestmark = pytest.mark.django_db
D = Decimal
REVERSE = "Reverse charge: VAT to be accounted for by the recipient, Art. 196 Directive 2006/112/EC."
EXPORT = "Export of services"
SELLER_DE = {"SELLER_NAME": "Beispiel Analytics GmbH", "SELLER_ADDRESS": "Hauptstrasse 1\n10115 Berlin",
             "SELLER_COUNTRY": "DE", "SELLER_TAX_ID": "DE136695976", "SELLER_REGISTRATION": "Amtsgericht Berlin HRB 1",
             "SELLER_SUPPORT_EMAIL": "billing@beispiel.example"}


@dataclass(frozen=True)
class Case:
    id: str
    seller: str
    country: str
    vat_id: str
    treatment: str
    rate: Decimal
    mention: str  # a fragment of the mention printed, "" for none
    vat_id_used: str


CASES = [
    Case("de-domestic", "DE", "DE", "", "domestic", D("19"), "", ""),
    Case("fr-valid-vat-id", "DE", "FR", "FR40303265045", "reverse_charge", D("0"), REVERSE, "FR40303265045"),
    Case("fr-no-vat-id", "DE", "FR", "", "eu_rate", D("20"), "", ""),
    Case("at-invalid-vat-id", "DE", "AT", "ATU13585628", "eu_rate", D("20"), "", ""),
    Case("us-export", "DE", "US", "", "export", D("0"), EXPORT, ""),
    Case("seller-us", "US", "DE", "DE136695976", "none", D("0"), "", ""),
]
# The policy's examples: (net line, tax at 19 %, tax at 20 %); 0 % and no tax add nothing.
FIRST = (D("29.00"), D("5.51"), D("5.80"))  # Advanced monthly, a first period (REN-4)
UPGRADE = (D("7.50"), D("1.43"), D("1.50"))  # (29 − 14) × 15/30 (UPG-2)
EXTRA = (D("40.00"), D("7.60"), D("8.00"))  # 2 × 30 × 20/30 (ADD-1)
OVERAGE = (D("5.00"), D("0.95"), D("1.00"))  # 2,500 × 2.00 / 1,000 (USE-3)


def tax_of(example, case: Case) -> Decimal:
    return {D("19"): example[1], D("20"): example[2]}.get(case.rate, D("0.00"))


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request, settings, catalog):
    case = request.param
    settings.SELLER_COUNTRY = case.seller
    if case.seller == "DE":
        for name, value in SELLER_DE.items():
            setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    return case


def customer(case: Case, name="Kunde") -> Account:
    """An account in the case's country; the VAT ID written as stored (an invalid one predates TAX-4)."""
    acct = AccountFactory(name=name)
    Account.objects.filter(pk=acct.pk).update(company=f"{name} SARL", country=case.country, vat_id=case.vat_id,
                                              address="1 rue Exemple")
    acct.refresh_from_db()
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-01-01"))
    return acct


def assert_taxed(invoice: Invoice, case: Case, example) -> None:
    net, tax = example[0], tax_of(example, case)
    line = invoice.lines.get()
    assert (line.amount, line.tax_rate, line.tax_amount) == (net, case.rate, tax)
    assert (invoice.subtotal, invoice.tax_amount, invoice.total) == (net, tax, net + tax)
    assert (invoice.tax_treatment, invoice.tax_rate, invoice.tax_vat_id) == (case.treatment, case.rate,
                                                                            case.vat_id_used)
    assert (case.mention in invoice.tax_mention) if case.mention else invoice.tax_mention == ""
    assert invoice.status == "paid" and invoice.amount_paid == net + tax
    payment = invoice.payments.get()
    charged = SandboxCharge.objects.get(idempotency_key=payment.idempotency_key)
    assert charged.amount == net + tax  # the gateway charges the tax-inclusive total


def test_tax3_first_period(case):
    acct = customer(case)
    Account.objects.filter(pk=acct.pk).update(trial_used_at=at("2026-01-01"))  # so the quote is the charge's
    quote = billing.preview_change(current(acct), "advanced", "monthly", now=at("2026-04-01"))
    billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    invoice = Invoice.objects.get(account=acct)
    assert_taxed(invoice, case, FIRST)
    assert quote.amount_due == invoice.total  # PAY-3, PAY-4: quoted = charged


def test_tax3_upg2_upgrade_is_prorated_then_taxed(case):
    acct = customer(case)
    sub = billing.subscribe(acct, "personal", now=at("2026-04-01"))
    quote = billing.preview_change(sub, "advanced", "monthly", now=at("2026-04-16"))
    net, tax = UPGRADE[0], tax_of(UPGRADE, case)
    assert quote.amount_due == net + tax
    if case.treatment == "none":
        assert [line.amount for line in quote.lines] == [net]  # no tax lines at all
    else:
        assert quote.lines[-1].amount == tax and "VAT" in quote.lines[-1].description
        assert f"× $7.50 = ${tax}" in quote.lines[-1].computation  # the formula (PAY-3)
    applied = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"), expected_amount=quote.amount_due)
    assert_taxed(applied.invoice, case, UPGRADE)


def test_tax3_add1_extra_properties_are_taxed_like_the_plan(case):
    acct = customer(case)
    sub = billing.subscribe(acct, "advanced", now=at("2026-06-01"))
    quote = billing.preview_extra_properties(sub, 2, now=at("2026-06-11"))
    applied = billing.set_extra_properties(sub, 2, now=at("2026-06-11"), expected_amount=quote.amount_due)
    assert_taxed(applied.invoice, case, EXTRA)


def test_tax3_use3_overage_is_taxed_like_the_plan(case):
    acct = customer(case)
    billing.subscribe(acct, "personal", "yearly", now=at("2026-01-15"))
    UsageMonth.objects.create(account=acct, month=date(2026, 11, 1), sessions=12_500, sessions_included=10_000)
    scheduler.run(now=at("2026-12-01"))
    assert_taxed(Invoice.objects.get(account=acct, kind="overage"), case, OVERAGE)


def test_tax2_dwn4_credit_note_reverses_the_invoices_tax_in_proportion(case, settings):
    settings.BILLING_DOWNGRADE_TIMING = "immediate"
    acct = customer(case)
    sub = billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    quote = billing.preview_change(sub, "personal", "monthly", now=at("2026-04-16"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-16"))
    note = CreditNote.objects.get(account=acct)
    net, tax = UPGRADE[0], tax_of(UPGRADE, case)  # 7.50 × 5.51 / 29.00 = 1.425 -> 1.43; × 5.80 / 29.00 = 1.50
    assert (note.net_amount, note.tax_amount, note.amount, note.remaining) == (net, tax, net + tax, net + tax)
    assert (note.tax_treatment, note.tax_rate) == (case.treatment, case.rate)
    if tax:
        assert f"= ${tax}, so ${net + tax} of credit in all" in " ".join(quote.notes)
    # The credit (tax included) pays the next invoice with tax: upgrading back costs 8.93 - 8.93 = 0.
    again = billing.change_plan(current(acct), "advanced", "monthly", now=at("2026-04-16"))
    assert again.invoice.credit_applied == net + tax and again.invoice.total == 0


def test_tax2_renewals_of_the_set_wise_run_are_taxed_like_one_by_one(case, monkeypatch):
    """The billing run's set-wise path (`invoices_issue_many`) computes the same tax per line as
    `invoice_create`, and writes the frozen treatment and the bill-to country and VAT ID."""
    a = customer(case, "Eins")
    billing.subscribe(a, "advanced", now=at("2026-04-01"))
    billing.set_extra_properties(current(a), 2, now=at("2026-04-01"))
    set_wise = []
    issue_many = batch.invoices_issue_many
    monkeypatch.setattr(batch, "invoices_issue_many", lambda drafts, **kw: set_wise.extend(drafts) or issue_many(
        drafts, **kw))
    scheduler.run(now=at("2026-04-30T00:00"))
    assert len(set_wise) == 1  # renewed set-wise, not one by one
    renewal = Invoice.objects.get(account=a, kind="renewal")
    rate = case.rate
    taxes = [line_tax(D("29.00"), rate), line_tax(D("60.00"), rate)]
    assert [(line.amount, line.tax_amount) for line in renewal.lines.all()] == list(zip(
        [D("29.00"), D("60.00")], taxes, strict=True))
    assert (renewal.subtotal, renewal.tax_amount, renewal.total) == (D("89.00"), sum(taxes), D("89.00") + sum(taxes))
    assert (renewal.tax_treatment, renewal.tax_vat_id, renewal.bill_to_country) == (case.treatment, case.vat_id_used,
                                                                                    case.country)
    assert renewal.payments.get().amount == renewal.total and renewal.status == "paid"


def test_tax2_a_rate_change_applies_to_invoices_issued_from_its_date(settings, catalog):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    TaxRate.objects.create(country="DE", rate=D("21"), valid_from=date(2026, 4, 16))
    acct = customer(CASES[0])
    sub = billing.subscribe(acct, "personal", now=at("2026-04-01"))
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    first, upgrade = Invoice.objects.filter(account=acct).order_by("id")
    assert (first.tax_rate, first.tax_amount) == (D("19.00"), D("2.66"))  # 14.00 × 19 % = 2.66
    assert (upgrade.tax_rate, upgrade.tax_amount) == (D("21.00"), D("1.58"))  # 7.50 × 21 % = 1.575 -> 1.58
    first.refresh_from_db()
    assert first.tax_rate == D("19.00")  # issued invoices keep their rate (INV-2)


def test_tax2_the_treatment_is_frozen_on_issued_invoices(settings, catalog):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    acct = customer(CASES[1])  # FR, valid VAT ID: reverse charge
    billing.subscribe(acct, "personal", now=at("2026-04-01"))
    Account.objects.filter(pk=acct.pk).update(vat_id="", country="FR")
    invoice = Invoice.objects.get(account=acct)
    assert (invoice.tax_treatment, invoice.tax_vat_id, invoice.total) == ("reverse_charge", "FR40303265045",
                                                                         D("14.00"))


def test_tax2_prices_may_include_tax(settings, catalog):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    settings.TAX_PRICES_INCLUDE_TAX = True
    tax_rates_load_file(EU_RATES)
    acct = customer(CASES[0])
    Account.objects.filter(pk=acct.pk).update(trial_used_at=at("2026-01-01"))
    quote = billing.preview_change(current(acct), "advanced", "monthly", now=at("2026-04-01"))
    billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    invoice = Invoice.objects.get(account=acct)
    # $29.00 holds 29 × 19/119 = 4.634 -> 4.63 of VAT: net 24.37, charged 29.00.
    assert (invoice.subtotal, invoice.tax_amount, invoice.net_amount, invoice.total) == (
        D("29.00"), D("4.63"), D("24.37"), D("29.00"))
    assert quote.amount_due == D("29.00") and "Prices include VAT 19 %" in quote.at_period_end


def test_tax3_a_missing_rate_stops_the_invoice_with_a_clear_error(settings, catalog):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    acct = customer(CASES[0])  # no rates loaded
    with pytest.raises(LookupError, match="No VAT rate for DE is loaded"):
        billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    assert not Invoice.objects.filter(account=acct).exists() and not SandboxCharge.objects.exists()


# --- the documents (TAX-1, TAX-3) ------------------------------------------------------------------

needs_pdftotext = pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler's pdftotext")


def pdf_text(data: bytes, tmp_path) -> str:
    path = tmp_path / "document.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True, capture_output=True,
                          text=True).stdout


@needs_pdftotext
def test_tax1_tax3_pdf_carries_the_seller_the_customers_vat_id_and_the_reverse_charge_mention(
        settings, catalog, tmp_path):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    settings.BILLING_DOWNGRADE_TIMING = "immediate"
    tax_rates_load_file(EU_RATES)
    acct = customer(CASES[1])
    sub = billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    text = " ".join(pdf_text(invoice_pdf(Invoice.objects.get(account=acct)), tmp_path).split())
    for fact in ("Beispiel Analytics GmbH", "Hauptstrasse 1", "10115 Berlin", "Germany", "VAT ID DE136695976",
                 "Amtsgericht Berlin HRB 1", "billing@beispiel.example",  # the seller (TAX-1)
                 "Kunde SARL", "France", "VAT ID FR40303265045",  # the customer, its country by ISO name
                 "VAT 0 % on $29.00", "Reverse charge: VAT to be accounted for by the recipient, Art. 196 "
                 "Directive 2006/112/EC"):
        assert fact in text, fact
    assert "Kunde /" not in text and "Kunde Kunde" not in text  # Bill to: the company, not the account name too
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-16"))
    note_text = " ".join(pdf_text(credit_note_pdf(CreditNote.objects.get(account=acct)), tmp_path).split())
    assert "Beispiel Analytics GmbH" in note_text and "VAT ID FR40303265045" in note_text
    assert "Art. 196 Directive 2006/112/EC" in note_text


@needs_pdftotext
def test_tax2_pdf_shows_tax_by_rate_and_the_total_with_tax(settings, catalog, tmp_path):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    acct = customer(CASES[0])
    billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    text = " ".join(pdf_text(invoice_pdf(Invoice.objects.get(account=acct)), tmp_path).split())
    for fact in ("Subtotal (net) $29.00", "VAT 19 % on $29.00 $5.51", "Total $34.51", "19 %"):
        assert fact in text, fact


def test_tax1_a_seller_outside_the_eu_prints_no_tax_lines(catalog, client):
    acct = customer(CASES[-1])
    billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    invoice = Invoice.objects.get(account=acct)
    assert (invoice.tax_treatment, invoice.tax_amount, invoice.total) == ("none", D("0.00"), D("29.00"))
    assert not invoice.shows_tax and invoice.lines.get().tax_amount == 0


def test_tax2_pay4_the_next_charge_shown_is_the_taxed_renewal_the_run_charges(settings, catalog):
    from subscriptions.statement import account_statement

    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    acct = customer(CASES[0])
    billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    charge = account_statement(acct, now=at("2026-04-10")).next_charge
    assert (charge.subtotal, charge.tax, charge.tax_label, charge.total) == (D("29.00"), D("5.51"), "VAT 19 %",
                                                                             D("34.51"))
    scheduler.run(now=at("2026-04-30T00:00"))
    assert Invoice.objects.get(account=acct, kind="renewal").total == charge.total


def test_tax2_a_trial_quote_says_later_amounts_are_before_vat(settings, catalog):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    acct = customer(CASES[0])
    quote = billing.preview_change(current(acct), "advanced", "monthly", now=at("2026-04-01"))
    assert quote.amount_due == 0 and [line.amount for line in quote.lines] == [D("0.00")]
    assert quote.at_period_end.endswith("Amounts after today are before VAT 19 %, which each invoice adds.")
