"""Tax as the ledger applies it (TAX-1..3): the seller from the settings, the rates in force from
the `TaxRate` table, the customer's country and VAT ID; the rules themselves are the pure
`invoices.tax_rules`. Invoices (one by one and set-wise), quotes and the billing page call
`decision_for` / `decisions_for`, so what a customer is told is what is charged (PAY-4).

The tax-rates file (country -> standard rate from a date) is loaded like the catalog: checked
whole, then written in one transaction, idempotent; a bad file writes nothing.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.db import transaction

from accounts.countries import is_country
from core.datafiles import json_file_read
from core.money import ZERO, format_money
from core.seller import seller

from . import tax_rules
from .models import TaxRate
from .totals import InvoiceTotals, invoice_totals


def rates_on(day: date) -> dict[str, Decimal]:
    """{country: rate in force on `day`}: each country's row with the latest `valid_from` not after it."""
    rates: dict[str, Decimal] = {}
    for country, rate in (TaxRate.objects.filter(valid_from__lte=day)
                          .order_by("country", "valid_from").values_list("country", "rate")):
        rates[country] = rate  # later rows replace earlier ones
    return rates


def tax_day(now: datetime) -> date:
    """The date whose rate applies: the issue date, on the UTC calendar (a rate changes at 00:00 UTC)."""
    return now.astimezone(UTC).date()


def tax_active() -> bool:
    """Whether any customer can owe tax: False for the demo (a seller in the US, TAX_COLLECT=auto),
    which then never reads the rates table."""
    mode = settings.TAX_COLLECT
    return mode != "off" and (tax_rules.is_eu_seller(seller().country) or mode == "domestic")


def decisions_for(customers: dict[int, tuple[str, str]], now: datetime) -> dict[int, tax_rules.TaxDecision]:
    """{key: decision} for many customers given as {key: (country, vat_id)}, with one read of the rates."""
    if not tax_active():
        return {key: tax_rules.NO_TAX for key in customers}
    rates, seller_country, mode = rates_on(tax_day(now)), seller().country, settings.TAX_COLLECT
    decided: dict[tuple[str, str], tax_rules.TaxDecision] = {}  # a batch's customers share a few (country, VAT ID)
    for country, vat_id in customers.values():
        facts = (str(country or ""), vat_id or "")
        if facts not in decided:
            decided[facts] = tax_rules.tax_decision(seller_country=seller_country, customer_country=facts[0],
                                              vat_id=facts[1], rate_of=rates.get, mode=mode)
    return {key: decided[(str(country or ""), vat_id or "")] for key, (country, vat_id) in customers.items()}


def decision_for(account, now: datetime) -> tax_rules.TaxDecision:
    """The treatment of `account`'s invoices made at `now` (TAX-3)."""
    return decisions_for({0: (account.country, account.vat_id)}, now)[0]


def prices_include_tax() -> bool:
    return settings.TAX_PRICES_INCLUDE_TAX


# --- the tax-rates file --------------------------------------------------------------------------------

MAX_FILE_BYTES = 1024 * 1024
RATE_KEYS = {"country", "rate", "from"}


class TaxRatesError(ValueError):
    """A bad tax-rates file; the message says which entry and what to fix."""


@dataclass(frozen=True)
class TaxRatesResult:
    created: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: int


def _entry(raw, index: int) -> tuple[str, date, Decimal]:
    where = f"rates[{index}]"
    if not isinstance(raw, dict):
        raise TaxRatesError(f"{where}: each rate must be an object with country, rate and from.")
    if set(raw) != RATE_KEYS:
        missing, unknown = RATE_KEYS - set(raw), set(raw) - RATE_KEYS
        raise TaxRatesError(f"{where}: " + "; ".join(filter(None, [
            f"missing {', '.join(sorted(missing))}" if missing else "",
            f"unknown field(s) {', '.join(sorted(unknown))}" if unknown else ""])) + ".")
    country = raw["country"]
    if not isinstance(country, str) or not is_country(country) or country != country.upper():
        raise TaxRatesError(f"{where}: country must be an ISO 3166-1 alpha-2 code in capitals, like DE ({country!r}).")
    where = f"{where} ({country})"
    value = raw["rate"]
    if not isinstance(value, str):
        raise TaxRatesError(f"{where}: write the rate as a string of percent, like \"19\" or \"25.5\" ({value!r}).")
    try:
        rate = Decimal(value)
    except InvalidOperation:
        raise TaxRatesError(f"{where}: {value!r} is not a number.") from None
    if not rate.is_finite() or not Decimal("0") <= rate < Decimal("100") or rate.as_tuple().exponent < -2:
        raise TaxRatesError(f"{where}: the rate must be a percent from 0 to 99.99 with at most 2 decimals ({value!r}).")
    try:
        valid_from = date.fromisoformat(raw["from"]) if isinstance(raw["from"], str) else None
    except ValueError:
        valid_from = None
    if valid_from is None:
        raise TaxRatesError(f"{where}: from must be a date like \"2026-01-01\" ({raw['from']!r}).")
    return country, valid_from, rate.quantize(Decimal("0.01"))


def tax_rates_parse(data) -> list[tuple[str, date, Decimal]]:
    if not isinstance(data, dict) or "rates" not in data or set(data) - {"rates", "note"} \
            or not isinstance(data["rates"], list):
        raise TaxRatesError('The tax-rates file must be an object with "rates" (a list) and an optional "note".')
    entries = [_entry(raw, i) for i, raw in enumerate(data["rates"])]
    seen = set()
    for country, valid_from, _rate in entries:
        if (country, valid_from) in seen:
            raise TaxRatesError(f"{country} has two rates from {valid_from}: keep one.")
        seen.add((country, valid_from))
    return entries


def tax_rates_load(data) -> TaxRatesResult:
    """Make the table hold exactly the file's rates, in one transaction (a bad file writes nothing).
    Issued invoices keep the rates they used; a rate dated in the future applies from its date."""
    entries = tax_rates_parse(data)
    created, updated, unchanged = [], [], 0
    with transaction.atomic():
        existing = {(r.country, r.valid_from): r for r in TaxRate.objects.select_for_update()}
        for country, valid_from, rate in entries:
            row = existing.pop((country, valid_from), None)
            label = f"{country} {tax_rules.percent(rate)} from {valid_from}"
            if row is None:
                TaxRate.objects.create(country=country, valid_from=valid_from, rate=rate)
                created.append(label)
            elif row.rate != rate:
                TaxRate.objects.filter(pk=row.pk).update(rate=rate)
                updated.append(label)
            else:
                unchanged += 1
        removed = [str(row) for row in existing.values()]
        TaxRate.objects.filter(pk__in=[row.pk for row in existing.values()]).delete()
    return TaxRatesResult(created, updated, removed, unchanged)


def tax_rates_load_file(path: str | Path) -> TaxRatesResult:
    data = json_file_read(path, what="a tax-rates file", max_bytes=MAX_FILE_BYTES, error=TaxRatesError)
    return tax_rates_load(data)


EU_RATES = Path(__file__).resolve().parent / "tax_rates" / "eu.json"


# --- quotes (PAY-3) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuoteTax:
    """The tax a quote adds to the lines charged now: lines (description, amount, computation) to
    show under them, the tax, what is charged with it, and a sentence for "at period end"."""

    lines: tuple[tuple[str, Decimal, str], ...]
    tax: Decimal
    gross: Decimal
    period_end: str
    label: str  # "VAT 19 %", "VAT 0 % (reverse charge)", "included VAT 19 %"


def totals_for(decision: tax_rules.TaxDecision | None, amounts, *, credit: Decimal = ZERO) -> InvoiceTotals:
    """`totals.invoice_totals` with the seller's setting for tax-inclusive prices: what an invoice
    of lines of `amounts` made with `decision` (None: no tax) stores, with `credit` available,
    and what a quote or the next charge states."""
    return invoice_totals(amounts, decision or tax_rules.NO_TAX, prices_include_tax=prices_include_tax(),
                          credit=credit)


def quote_tax(totals: InvoiceTotals, currency: str) -> QuoteTax | None:
    """What `invoice_create` will add to the lines of `totals`, for the quote (PAY-3, PAY-4: the
    same decision and the same per-line rounding). None: no tax lines (TAX-3). A 0 % line carries
    the legal mention as its computation (reverse charge, export)."""
    decision = totals.decision
    if not decision.charges_tax:
        return None
    description, computation = totals.tax_line(currency)
    if totals.inclusive:  # the prices hold the tax: the amount due does not change; say how much of it is tax
        return QuoteTax((), totals.tax, totals.gross, f"Prices include {decision.label}: today {computation}.",
                        description)
    if decision.mention:
        computation = f"{computation}. {decision.mention}"
    later = f"Amounts after today are before {decision.label}, which each invoice adds." if decision.rate else ""
    return QuoteTax(((description, totals.tax, computation),), totals.tax, totals.gross, later, description)


def credit_tax_note(invoice, net: Decimal) -> str:
    """The sentence a DWN-4 quote adds about the credit note's tax: the tax of `invoice`, the one
    the credit note names, reversed in proportion (`credit_note_issue` computes the same)."""
    if invoice is None or not invoice.tax_amount:
        return ""
    net, tax_amount = tax_rules.credit_split(invoice_net=invoice.net_amount, invoice_tax=invoice.tax_amount, net=net)
    money = lambda amount: format_money(amount, invoice.currency)  # noqa: E731
    return (f"The credit note also gives back the VAT of invoice {invoice.number} in proportion: {money(net)} "
            f"× {money(invoice.tax_amount)} / {money(invoice.net_amount)} = {money(tax_amount)}, so "
            f"{money(net + tax_amount)} of credit in all.")
