"""Tax rules as data and for staff (TAX-1, TAX-2): the tax-rates file and its loader, the admin's
tax columns, the accountant's CSV export, the deploy check of the seller's details."""

import csv
import io
import json
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from invoices.checks import seller_problems
from invoices.models import CreditNote, Invoice, TaxRate
from invoices.tax_rates import EU_RATES, TaxRatesError, rates_on, tax_rates_load, tax_rates_load_file
from subscriptions import billing
from tests.admin.conftest import client_for, staff_member
from tests.invoices.test_tax import CASES, SELLER_DE, customer
from tests.subscriptions.conftest import at

pytestmark = pytest.mark.django_db
D = Decimal


def test_tax2_the_eu_file_loads_every_member_state_and_a_rate_applies_from_its_date():
    result = tax_rates_load_file(EU_RATES)
    assert len(result.created) == TaxRate.objects.count() and not result.updated and not result.removed
    assert len({r.country for r in TaxRate.objects.all()}) == 27
    assert rates_on(date(2020, 6, 30))["DE"] == D("19.00")
    assert rates_on(date(2020, 7, 1))["DE"] == D("16.00")  # the 2020 reduction, from its date
    assert rates_on(date(2026, 4, 1))["DE"] == D("19.00") and rates_on(date(2026, 4, 1))["FI"] == D("25.50")


def test_tax2_loading_again_is_idempotent_and_the_file_is_the_truth():
    tax_rates_load_file(EU_RATES)
    again = tax_rates_load_file(EU_RATES)
    assert (again.created, again.updated, again.removed) == ([], [], []) and again.unchanged == TaxRate.objects.count()
    data = json.loads(EU_RATES.read_text())
    data["rates"] = [r for r in data["rates"] if r["country"] != "AT"] + [
        {"country": "DE", "rate": "21", "from": "2027-01-01"}]
    changed = tax_rates_load(data)
    assert changed.created == ["DE 21 % from 2027-01-01"] and changed.removed == ["AT 20 % from 2016-01-01"]
    assert "AT" not in rates_on(date(2026, 4, 1)) and rates_on(date(2027, 1, 1))["DE"] == D("21.00")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["rates"].append({"country": "de", "rate": "19", "from": "2030-01-01"}), "ISO 3166-1 alpha-2 code"),
    (lambda d: d["rates"].append({"country": "XX", "rate": "19", "from": "2030-01-01"}), "ISO 3166-1 alpha-2 code"),
    (lambda d: d["rates"].append({"country": "DE", "rate": 19.0, "from": "2030-01-01"}), "write the rate as a string"),
    (lambda d: d["rates"].append({"country": "DE", "rate": "119", "from": "2030-01-01"}), "from 0 to 99.99"),
    (lambda d: d["rates"].append({"country": "DE", "rate": "19.005", "from": "2030-01-01"}), "at most 2 decimals"),
    (lambda d: d["rates"].append({"country": "DE", "rate": "19", "from": "1 Jan 2030"}), "a date like"),
    (lambda d: d["rates"].append({"country": "DE", "rate": "19", "from": "2016-01-01"}), "two rates from 2016-01-01"),
    (lambda d: d["rates"].append({"country": "DE", "rate": "19"}), "missing from"),
    (lambda d: d.update(extra=1), "optional \"note\""),
])
def test_tax2_a_bad_file_is_refused_whole_and_writes_nothing(mutate, message):
    tax_rates_load_file(EU_RATES)
    before = list(TaxRate.objects.values_list("country", "rate", "valid_from").order_by("id"))
    data = json.loads(EU_RATES.read_text())
    data["rates"][0]["rate"] = "21"  # a good change in the same file: not written either
    mutate(data)
    with pytest.raises(TaxRatesError, match=message):
        tax_rates_load(data)
    assert list(TaxRate.objects.values_list("country", "rate", "valid_from").order_by("id")) == before


def test_tax2_load_tax_rates_command(tmp_path, capsys):
    call_command("load_tax_rates")
    assert "created" in capsys.readouterr().out
    bad = tmp_path / "rates.json"
    bad.write_text('{"rates": [{"country": "DE", "rate": "19", "from": "2016-01-01"},')
    with pytest.raises(CommandError, match="nothing was changed.*not valid JSON"):
        call_command("load_tax_rates", str(bad))


@pytest.fixture
def seller_de(settings, catalog):
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    settings.BILLING_DOWNGRADE_TIMING = "immediate"
    tax_rates_load_file(EU_RATES)


def test_tax2_admin_shows_each_invoices_treatment_and_vat_id_used(seller_de):
    acct = customer(CASES[1])  # FR with a valid VAT ID: reverse charge
    billing.subscribe(acct, "advanced", now=at("2026-04-01"))
    invoice = Invoice.objects.get(account=acct)
    admin = client_for(staff_member("root@prorata.test", is_superuser=True))
    listing = admin.get(reverse("admin:invoices_invoice_changelist")).content.decode()
    assert "Reverse charge (0 %)" in listing and "FR40303265045" in listing
    page = admin.get(reverse("admin:invoices_invoice_change", args=[invoice.pk])).content.decode()
    for fact in ("Reverse charge (0 %)", "FR40303265045", "Art. 196 Directive 2006/112/EC", "VAT ID used"):
        assert fact in page, fact


def test_tax2_the_accountants_export_lists_a_months_documents_with_net_tax_by_rate_and_country(seller_de):
    de, fr = customer(CASES[0], "Berlin"), customer(CASES[1], "Paris")
    sub = billing.subscribe(de, "advanced", now=at("2026-04-01"))
    billing.subscribe(fr, "personal", now=at("2026-04-02"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-16"))  # DWN-4: a credit note
    billing.subscribe(customer(CASES[2], "Lyon"), "personal", now=at("2026-05-01"))  # another month
    admin = client_for(staff_member("root@prorata.test", is_superuser=True))
    assert "Export for the accountant" in admin.get(reverse("admin:invoices_invoice_changelist")).content.decode()
    response = admin.get(reverse("admin:invoices_invoice_tax_export"), {"month": "2026-04"})
    assert response["Content-Type"].startswith("text/csv")
    assert 'filename="invoices-tax-2026-04.csv"' in response["Content-Disposition"]
    documents, totals = response.content.decode().split("\r\n\r\n")
    rows = list(csv.DictReader(io.StringIO(documents)))
    note = CreditNote.objects.get()
    assert [(r["document"], r["country"], r["tax_treatment"], r["net"], r["tax_rate"], r["tax"], r["gross"])
            for r in rows] == [
        ("invoice", "DE", "domestic", "29.00", "19.00", "5.51", "34.51"),
        ("invoice", "FR", "reverse_charge", "14.00", "0.00", "0.00", "14.00"),
        ("credit_note", "DE", "domestic", "-7.50", "19.00", "-1.43", "-8.93"),
    ]
    assert rows[1]["vat_id"] == "FR40303265045" and rows[1]["country_name"] == "France"
    assert rows[2]["number"] == note.number and rows[2]["corrects"] == note.invoice.number
    summary = list(csv.reader(io.StringIO(totals)))
    assert ["2026-04", "USD", "DE", "Germany", "domestic", "19.00", "21.50", "4.08", "25.58"] in summary
    assert ["2026-04", "USD", "FR", "France", "reverse_charge", "0.00", "14.00", "0.00", "14.00"] in summary


def test_tax2_the_export_asks_for_a_month_and_needs_staff(seller_de, client):
    admin = client_for(staff_member("root@prorata.test", is_superuser=True))
    form = admin.get(reverse("admin:invoices_invoice_tax_export"), {"month": "April"}).content.decode()
    assert "Enter a valid date" in form and 'type="month"' in form
    assert client.get(reverse("admin:invoices_invoice_tax_export")).status_code == 302  # to the login


def test_tax1_deploy_check_warns_when_the_sellers_details_are_missing(settings):
    codes = {p.id for p in seller_problems()}
    assert codes == {"invoices.W010", "invoices.W012"}  # the demo's name and address, no tax ID
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    assert seller_problems() == []
    settings.SELLER_TAX_ID = "DE136695975"
    assert [p.id for p in seller_problems()] == ["invoices.W013"]  # an EU VAT ID that fails its check
