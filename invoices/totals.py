"""An invoice's totals, computed in one place (issue 24): from its lines' amounts, the tax decision
and the credit the account holds (and, later, discounts) to the subtotal, the tax of each line as
the ledger stores it, the credit applied, the total and the amount due. Pure: no ORM, no settings,
no clock. The ledger (`invoice_create`, the set-wise `invoices_issue_many`), the next charge
(`terms.next_charge_of`) and the quotes (`quotes.with_tax`, `quotes.with_credit`) all call it, so
what a customer is told is what is charged (PAY-4).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from core.money import ZERO

from .tax_rules import NO_TAX, TaxDecision, line_tax, tax_line_text


@dataclass(frozen=True)
class InvoiceTotals:
    """What an invoice of these lines stores and prints (TAX-2, INV-5, DWN-4)."""

    decision: TaxDecision
    inclusive: bool  # the amounts hold their tax (tax-inclusive prices)
    line_taxes: tuple[Decimal, ...]  # each line's tax, half up (TAX-2), as `InvoiceLine.tax_amount`
    subtotal: Decimal  # the lines' amounts as priced
    tax: Decimal  # the sum of the lines' taxes (part of `subtotal` when inclusive)
    credit_applied: Decimal = ZERO  # the account's credit used, never more than the gross

    @property
    def net(self) -> Decimal:
        """The amount before tax."""
        return self.subtotal - self.tax if self.inclusive else self.subtotal

    @property
    def gross(self) -> Decimal:
        """The amount with tax, before credit."""
        return self.subtotal if self.inclusive else self.subtotal + self.tax

    @property
    def tax_added(self) -> Decimal:
        """The tax on top of the lines' amounts: 0 when prices include it."""
        return self.gross - self.subtotal

    @property
    def total(self) -> Decimal:
        """What the invoice is for after credit: `Invoice.total`."""
        return self.gross - self.credit_applied

    @property
    def amount_due(self) -> Decimal:
        """What the gateway charges when it is issued (nothing is paid yet): the total."""
        return self.total

    def tax_line(self, currency: str) -> tuple[str, str]:
        """(description, computation) of the tax line a quote shows under its lines (PAY-3)."""
        return tax_line_text(self.decision, self.subtotal, self.tax, currency, inclusive=self.inclusive)

    def with_credit(self, credit: Decimal) -> InvoiceTotals:
        """These totals with `credit` of the account's credit available: the invoice uses it up to
        its gross (credit notes hold tax-inclusive amounts, INV-5, DWN-4)."""
        return dataclasses.replace(self, credit_applied=max(ZERO, min(credit, self.gross)))


def invoice_totals(amounts: Iterable[Decimal], decision: TaxDecision = NO_TAX, *, prices_include_tax: bool = False,
                   credit: Decimal = ZERO) -> InvoiceTotals:
    """The totals of an invoice of lines of `amounts` for a customer with `decision` (TAX-3), the
    account holding `credit` (tax-inclusive). Tax per line, after proration, half up (TAX-2, D-3);
    `prices_include_tax` (the seller's setting) makes the amounts hold their tax, unless the
    decision charges none.

    A year of Advanced, $278.04, for a customer in DE (19 %): tax 278.04 x 19 % = 52.8276 -> 52.83,
    total 278.04 + 52.83 = 330.87; with $50.00 of credit, $280.87 is due.

    >>> from decimal import Decimal as D
    >>> from invoices.tax_rules import DOMESTIC
    >>> t = invoice_totals([D("278.04")], TaxDecision(DOMESTIC, D("19"), "DE", ""), credit=D("50.00"))
    >>> t.subtotal, t.line_taxes, t.tax, t.gross, t.credit_applied, t.total, t.amount_due
    (Decimal('278.04'), (Decimal('52.83'),), Decimal('52.83'), Decimal('330.87'), Decimal('50.00'), \
Decimal('280.87'), Decimal('280.87'))

    Advanced ($29.00) plus 2 extra properties prorated ($40.00) at 19 %: 5.51 + 7.60 = 13.11 of
    tax, 82.11 in all; $100.00 of credit pays it whole (INV-5). With tax-inclusive prices $29.00
    holds 29 x 19/119 = 4.63 of tax and the total stays $29.00.

    >>> t = invoice_totals([D("29.00"), D("40.00")], TaxDecision(DOMESTIC, D("19"), "DE", ""), credit=D("100"))
    >>> t.line_taxes, t.tax, t.gross, t.credit_applied, t.total
    ((Decimal('5.51'), Decimal('7.60')), Decimal('13.11'), Decimal('82.11'), Decimal('82.11'), Decimal('0.00'))
    >>> t = invoice_totals([D("29.00")], TaxDecision(DOMESTIC, D("19"), "DE", ""), prices_include_tax=True)
    >>> t.tax, t.net, t.total, t.tax_added
    (Decimal('4.63'), Decimal('24.37'), Decimal('29.00'), Decimal('0.00'))
    """
    amounts = tuple(amounts)
    inclusive = decision.charges_tax and prices_include_tax
    if decision.rate:
        line_taxes = tuple(line_tax(amount, decision.rate, inclusive=inclusive) for amount in amounts)
    else:  # 0 % (no tax, reverse charge, export): nothing to compute, for the billing run's sake
        line_taxes = (ZERO,) * len(amounts)
    totals = InvoiceTotals(decision, inclusive, line_taxes, sum(amounts, ZERO), sum(line_taxes, ZERO))
    return totals.with_credit(credit) if credit else totals
