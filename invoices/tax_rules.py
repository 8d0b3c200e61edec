"""Tax rules as code (TAX-2, TAX-3): who pays which rate, and the tax of each line. Pure: no ORM,
no settings, no clock; `invoices.tax_rates` loads the seller, the customer and the rates in force and
calls these, so invoices, quotes and the billing page compute tax one way (PAY-4).

Prices exclude tax unless the seller configures tax-inclusive prices. Tax is computed per line,
after proration, at the rate of the treatment, rounded half up to the cent (D-3); an invoice shows
its subtotal, its tax by rate and its total. Rates are percentages (`Decimal("19")` is 19 %).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from accounts.vat import EU_MEMBER_STATES, vat_id_valid
from core.money import ZERO, format_money, round_cents

# The customer's tax treatment, frozen on each issued invoice (TAX-2, INV-2).
NONE = "none"  # no tax at all: a seller outside the EU, or tax collection switched off
DOMESTIC = "domestic"  # a customer in the seller's country: the seller's rate
EU_RATE = "eu_rate"  # another EU country, no valid VAT ID: that country's rate
REVERSE_CHARGE = "reverse_charge"  # another EU country with a valid VAT ID: 0 %, the recipient accounts for it
EXPORT = "export"  # outside the EU: no VAT
TREATMENTS = {
    NONE: "No tax",
    DOMESTIC: "VAT at the seller's rate",
    EU_RATE: "VAT at the customer's country rate",
    REVERSE_CHARGE: "Reverse charge (0 %)",
    EXPORT: "Export, outside the EU (0 %)",
}
# What the invoice says (TAX-3). The reverse-charge wording is the policy's.
MENTIONS = {
    REVERSE_CHARGE: "Reverse charge: VAT to be accounted for by the recipient, Art. 196 Directive 2006/112/EC.",
    EXPORT: "Export of services: the customer is established outside the EU, no VAT charged "
            "(place of supply outside the EU, Art. 44 and 59 Directive 2006/112/EC).",
}

# TAX_COLLECT: "auto" applies the EU rules to a seller in the EU and no tax to one outside it;
# "domestic" lets a seller outside the EU charge its own country's rate (from the tax-rates file)
# to customers in its country; "off" charges no tax at all.
MODES = ("auto", "domestic", "off")


class TaxRateMissing(LookupError):
    """No rate in force for a country the rules need: the invoice is not made (tax is never guessed)."""


@dataclass(frozen=True)
class TaxDecision:
    """The treatment of one invoice: what the rules decided, with the facts they used."""

    treatment: str
    rate: Decimal  # percent; 0 for reverse charge, export and none
    country: str  # the customer's country the rules read ("" when unknown)
    vat_id: str  # the valid VAT ID used, compact; "" when none was valid
    mention: str = ""  # printed on the invoice

    @property
    def charges_tax(self) -> bool:
        """Whether the invoice shows tax lines at all (a seller outside the EU shows none)."""
        return self.treatment != NONE

    @property
    def label(self) -> str:
        return f"VAT {percent(self.rate)}"


NO_TAX = TaxDecision(NONE, Decimal("0"), "", "")


def is_eu_seller(country: str) -> bool:
    return (country or "").upper() in EU_MEMBER_STATES


def percent(rate: Decimal) -> str:
    """`Decimal("19.00")` -> "19 %", `Decimal("25.5")` -> "25.5 %".

    >>> percent(Decimal("19.00")), percent(Decimal("25.50")), percent(Decimal("0"))
    ('19 %', '25.5 %', '0 %')
    """
    text = format(rate.normalize(), "f")
    return f"{text} %"


def tax_decision(*, seller_country: str, customer_country: str, vat_id: str,
                 rate_of: Callable[[str], Decimal | None], mode: str = "auto") -> TaxDecision:
    """TAX-3: the treatment of a customer of a seller, with the rate in force (`rate_of(country)`,
    None when the tax-rates file has none for it).

    Seller in DE (19 %): a customer in DE pays 19 %; in FR with a valid VAT ID 0 % (reverse
    charge); in FR without one 20 %, FR's rate; in AT with an invalid VAT ID 20 %, AT's rate; in
    the US 0 % (export). A seller in the US: no tax at all. A customer with no country is taxed
    as one in the seller's country (the place of supply cannot be shown to be elsewhere).

    >>> rates = {"DE": Decimal("19"), "FR": Decimal("20"), "AT": Decimal("20")}.get
    >>> decide = lambda c, v: tax_decision(seller_country="DE", customer_country=c, vat_id=v, rate_of=rates)
    >>> [(d.treatment, d.rate) for d in (decide(c, v) for c, v in [
    ...     ("DE", ""), ("FR", "FR40303265045"), ("FR", ""), ("AT", "ATU13585628"), ("US", "")])]
    [('domestic', Decimal('19')), ('reverse_charge', Decimal('0')), ('eu_rate', Decimal('20')), \
('eu_rate', Decimal('20')), ('export', Decimal('0'))]
    >>> tax_decision(seller_country="US", customer_country="DE", vat_id="", rate_of=rates).treatment
    'none'
    """
    if mode not in MODES:
        raise ValueError(f"TAX_COLLECT must be one of {', '.join(MODES)}, not {mode!r}")
    seller = (seller_country or "").upper()
    country = (customer_country or "").upper()
    if mode == "off" or not seller:
        return NO_TAX
    if seller not in EU_MEMBER_STATES:
        if mode == "domestic" and country in ("", seller):
            return TaxDecision(DOMESTIC, _rate(rate_of, seller), country, "")
        return TaxDecision(NONE, Decimal("0"), country, "")
    valid_id = vat_id_valid(country, vat_id) if country else ""
    if country in ("", seller):
        return TaxDecision(DOMESTIC, _rate(rate_of, seller), country, valid_id)
    if country in EU_MEMBER_STATES:
        if valid_id:
            return TaxDecision(REVERSE_CHARGE, Decimal("0"), country, valid_id, MENTIONS[REVERSE_CHARGE])
        return TaxDecision(EU_RATE, _rate(rate_of, country), country, "")
    return TaxDecision(EXPORT, Decimal("0"), country, valid_id, MENTIONS[EXPORT])


def _rate(rate_of, country: str) -> Decimal:
    rate = rate_of(country)
    if rate is None:
        raise TaxRateMissing(f"No VAT rate for {country} is loaded: load the tax-rates file "
                             "(manage.py load_tax_rates) before invoicing customers there.")
    return rate


def line_tax(amount: Decimal, rate: Decimal, *, inclusive: bool = False) -> Decimal:
    """The tax of one line at `rate` percent, rounded half up to the cent (TAX-2). With
    tax-inclusive prices the tax is the part of `amount` that is tax.

    $7.50 at 19 % = 1.425 -> 1.43; $40.00 at 20 % = 8.00; 29.00 incl. 19 % holds 29 x 19/119 = 4.63.

    >>> line_tax(Decimal("7.50"), Decimal("19")), line_tax(Decimal("40.00"), Decimal("20"))
    (Decimal('1.43'), Decimal('8.00'))
    >>> line_tax(Decimal("29.00"), Decimal("19"), inclusive=True)
    Decimal('4.63')
    """
    exact = Fraction(amount) * Fraction(rate) / (100 + Fraction(rate) if inclusive else 100)
    return round_cents(exact)


def credit_split(*, invoice_net: Decimal, invoice_tax: Decimal, net: Decimal | None = None,
                 gross: Decimal | None = None) -> tuple[Decimal, Decimal]:
    """(net, tax) of a credit note on an invoice, its tax reversed in proportion (TAX-2): given
    its net (an unused value, DWN-4) the tax is net x invoice tax / invoice net; given its gross
    (money refunded, REF-2/4) the tax is gross x invoice tax / invoice gross. Half up.

    DWN-4 on an invoice of $29.00 + $5.51 VAT: $7.50 unused -> 7.50 x 5.51/29.00 = 1.425 -> 1.43.
    A full refund of that invoice ($34.51) reverses all of its tax.

    >>> credit_split(invoice_net=Decimal("29.00"), invoice_tax=Decimal("5.51"), net=Decimal("7.50"))
    (Decimal('7.50'), Decimal('1.43'))
    >>> credit_split(invoice_net=Decimal("29.00"), invoice_tax=Decimal("5.51"), gross=Decimal("34.51"))
    (Decimal('29.00'), Decimal('5.51'))
    """
    if (net is None) == (gross is None):
        raise ValueError("give the credit note's net or its gross, not both")
    if not invoice_tax or invoice_net <= 0:
        amount = net if net is not None else gross
        return amount, ZERO
    if net is not None:
        return net, round_cents(Fraction(net) * Fraction(invoice_tax) / Fraction(invoice_net))
    tax = round_cents(Fraction(gross) * Fraction(invoice_tax) / Fraction(invoice_net + invoice_tax))
    return gross - tax, tax


def tax_line_text(decision: TaxDecision, base: Decimal, tax: Decimal, currency: str,
                  *, inclusive: bool = False) -> tuple[str, str]:
    """(description, computation) of a tax line on a quote, so the customer sees the formula (PAY-3).

    >>> tax_line_text(TaxDecision(DOMESTIC, Decimal("19"), "DE", ""), Decimal("7.50"), Decimal("1.43"), "EUR")
    ('VAT 19 %', '19 % × €7.50 = €1.43')
    """
    if decision.treatment in (REVERSE_CHARGE, EXPORT):
        kind = TREATMENTS[decision.treatment].split(" (")[0]  # "Export, outside the EU": the EU keeps its capitals
        return (f"VAT 0 % ({kind[:1].lower()}{kind[1:]})",
                f"0 % × {format_money(base, currency)} = {format_money(ZERO, currency)}")
    if inclusive:
        return (f"included {decision.label}",
                f"{format_money(base, currency)} × {percent(decision.rate)} / (100 % + {percent(decision.rate)}) "
                f"= {format_money(tax, currency)}")
    return decision.label, f"{percent(decision.rate)} × {format_money(base, currency)} = {format_money(tax, currency)}"
