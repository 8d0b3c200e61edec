"""Issue 24: an invoice's total has one owner, `invoices.totals.invoice_totals`; the ledger, the
set-wise billing run, the next charge and the quote all state what it computes."""

import doctest
from decimal import Decimal

import pytest

from accounts.models import Account
from invoices import batch
from invoices import totals as totals_module
from invoices.models import Invoice
from invoices.tax_rates import EU_RATES, tax_rates_load_file
from invoices.tax_rules import DOMESTIC, TaxDecision
from invoices.totals import invoice_totals
from subscriptions import billing, scheduler
from subscriptions.statement import account_statement
from tests.factories import AccountFactory
from tests.subscriptions.conftest import at, current

D = Decimal


def test_inv1_tax2_the_totals_worked_examples_hold():
    """The docstring's worked examples (278.04 + 19 % = 330.87; credit; tax-inclusive prices) run."""
    failed, attempted = doctest.testmod(totals_module)
    assert attempted >= 3 and failed == 0


@pytest.mark.parametrize(("credit", "applied", "total"), [
    (D("0"), D("0"), D("330.87")), (D("50.00"), D("50.00"), D("280.87")), (D("400.00"), D("330.87"), D("0.00"))])
def test_inv1_credit_is_applied_up_to_the_amount_with_tax(credit, applied, total):
    """DWN-4, INV-5: credit pays the invoice with its tax, never more than it."""
    totals = invoice_totals([D("278.04")], TaxDecision(DOMESTIC, D("19"), "DE", ""), credit=credit)
    assert (totals.credit_applied, totals.total, totals.amount_due) == (applied, total, total)


@pytest.mark.django_db
def test_tax2_inv1_quote_ledger_next_charge_and_set_wise_run_state_the_same_total(settings, catalog, monkeypatch):
    """A year of Advanced ($278.04) for a customer in DE (19 %): the quote, the invoice the
    subscription makes (`invoice_create`), the next charge the statement announces
    (`terms.next_charge_of`) and the renewal the set-wise run writes (`invoices_issue_many`) all
    read 278.04 + 52.83 = 330.87."""
    settings.SELLER_COUNTRY = "DE"
    tax_rates_load_file(EU_RATES)
    acct = AccountFactory(name="Kunde")
    Account.objects.filter(pk=acct.pk).update(country="DE", address="Hauptstrasse 2",
                                              trial_used_at=at("2025-01-01"))  # no trial: pays now
    acct.refresh_from_db()
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-01-01"))
    quote = billing.preview_change(current(acct), "advanced", "yearly", now=at("2026-01-02"))
    first = billing.subscribe(acct, "advanced", "yearly", now=at("2026-01-02")).invoices.get()
    charge = account_statement(acct, at("2026-01-03")).next_charge
    set_wise, issue_many = [], batch.invoices_issue_many
    monkeypatch.setattr(batch, "invoices_issue_many", lambda drafts, **kw: set_wise.extend(drafts) or issue_many(
        drafts, **kw))
    scheduler.run(now=charge.at)
    assert len(set_wise) == 1  # renewed by the set-wise path
    renewal = Invoice.objects.get(account=acct, kind="renewal")
    assert quote.amount_due == D("330.87") and quote.lines[-1].amount == D("52.83")
    assert (first.subtotal, first.tax_amount, first.total) == (D("278.04"), D("52.83"), D("330.87"))
    assert (charge.subtotal, charge.tax, charge.total) == (D("278.04"), D("52.83"), D("330.87"))
    assert (renewal.subtotal, renewal.tax_amount, renewal.total) == (D("278.04"), D("52.83"), D("330.87"))
    assert [line.tax_amount for line in renewal.lines.all()] == [D("52.83")]
