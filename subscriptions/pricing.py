"""The pure pricing core: period arithmetic, proration and quote lines.

No Django, no ORM, no clock. Every function takes what it needs as arguments,
so a renewal or a plan change can be replayed for any date (D-4). Services
load rows, convert datetimes to dates in the account's billing time zone (D-2),
call these functions and save the result.

Money is `Decimal`, never float (D-3). A computed line is rounded once, to the
cent, half up: intermediate products and quotients are kept exact (as
fractions), so the only rounding is the one the customer sees.

Periods are derived from the anchor, never from the previous end: the end of
period `i` is the anchor moved `i + 1` months, so Jan 31 -> Feb 28 -> Mar 31 holds
(D-1). Months, years and days are counted on the calendar of the account's
billing time zone, at the anchor's local wall-clock time: `calendar_shift` is the
one function that moves an instant on a zone's calendar. Historical periods are
computed, so changing these rules changes the past.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from core.money import ZERO, cents, currency_code, decimal_of, format_money, share
from core.words import counted

# Periods and days are `subscriptions.period_math`'s; named here too, for the callers of the pricing core.
from .period_math import (
    CYCLES,
    MONTHLY,
    YEARLY,
    Period,
    add_months,
    add_working_days,
    add_years,
    calendar_shift,
    day_split,
    local_instant,
    period_bounds,
    period_end,
    period_end_for,
    restore_deadline,
    restore_window_open,
)

__all__ = [
    "CYCLES", "MONTHLY", "YEARLY", "Period", "Quote", "QuoteLine", "add_months", "add_working_days", "add_years",
    "addon_line", "addon_period_amount", "addon_unit", "calendar_shift", "day_split", "late_overage_line",
    "local_instant", "overage_amount", "overage_line", "period_bounds", "period_end", "period_end_for", "prorate",
    "restore_deadline", "restore_window_open", "unused_credit_line", "upgrade_difference_line",
]


QUOTE_KINDS = ("upgrade", "downgrade", "trial_change", "add_on", "new")

# The policy writes its formulas with the real minus and times signs (UPG-2).
MINUS = "\u2212"
TIMES = "\u00d7"

def _price(amount: Decimal | int, what: str = "price") -> Decimal:
    value = decimal_of(amount, what)
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")
    return value



def prorate(amount: Decimal, period: Period, on: date) -> Decimal:
    """Share of `amount` for the days from `on` to the period end; never negative.

    29.00 - 14.00 = 15.00 over 2026-04-01..05-01, on 04-16 -> 15.00 x 15/30 = 7.50

    >>> prorate(Decimal("15.00"), Period(date(2026, 4, 1), date(2026, 5, 1)), date(2026, 4, 16))
    Decimal('7.50')
    """
    _, remaining, total = day_split(period, on)
    return max(share(amount, remaining, total), ZERO)


# --- quote lines ----------------------------------------------------------------


@dataclass(frozen=True)
class QuoteLine:
    """One line of a quote or invoice; `computation` shows the customer how (PAY-3)."""

    description: str
    amount: Decimal
    computation: str = ""
    quantity: int = 1  # how many units the line charges (extra properties: their number)
    unit_price: Decimal | None = None  # one unit for the whole period, before proration; None: the amount


def _difference_line(
    high: Decimal, low: Decimal, period: Period, on: date, currency: str
) -> tuple[Decimal, str, int, int]:
    """`(high - low) x remaining / total` floored at zero, and how it was computed."""
    high, low = _price(high), _price(low)
    _, remaining, total = day_split(period, on)
    exact = share(high - low, remaining, total)
    amount = max(exact, ZERO)
    computation = (
        f"({format_money(high, currency)} {MINUS} {format_money(low, currency)}) "
        f"{TIMES} {remaining}/{total} days = {format_money(exact, currency)}"
    )
    if exact < 0:
        computation += f"; nothing is refunded, so {format_money(ZERO, currency)}"
    return amount, computation, remaining, total


def _span(period: Period, on: date) -> str:
    start = min(max(on, period.start), period.end)
    return f"{start.isoformat()} to {period.end.isoformat()}"


def upgrade_difference_line(
    old_price: Decimal,
    new_price: Decimal,
    period: Period,
    on: date,
    currency: str = "USD",
    *,
    old_name: str = "",
    new_name: str = "",
) -> QuoteLine:
    """Price difference for the rest of the period, charged now (UPG-2, same cycle).

    Basic $14 -> Professional $29, period 2026-04-01..05-01, upgrade on 04-16:
    (29.00 - 14.00) x 15/30 = 7.50.

    >>> line = upgrade_difference_line(
    ...     Decimal("14.00"), Decimal("29.00"),
    ...     Period(date(2026, 4, 1), date(2026, 5, 1)), date(2026, 4, 16),
    ... )
    >>> line.amount, line.computation
    (Decimal('7.50'), '($29.00 − $14.00) × 15/30 days = $7.50')
    """
    amount, computation, remaining, total = _difference_line(
        new_price, old_price, period, on, currency
    )
    names = f" from {old_name} to {new_name}" if old_name and new_name else ""
    description = f"Upgrade{names}, {remaining} of {total} days ({_span(period, on)})"
    return QuoteLine(description, amount, computation)


def unused_credit_line(
    old_price: Decimal, new_price: Decimal, period: Period, on: date, currency: str = "USD"
) -> QuoteLine:
    """Unused value of the old plan when a downgrade applies at once: a credit note (DWN-4).

    $29 -> $14 on 2026-04-16 of 04-01..05-01: (29.00 - 14.00) x 15/30 = 7.50 of credit.

    >>> line = unused_credit_line(
    ...     Decimal("29.00"), Decimal("14.00"),
    ...     Period(date(2026, 4, 1), date(2026, 5, 1)), date(2026, 4, 16),
    ... )
    >>> line.amount, line.computation
    (Decimal('7.50'), '($29.00 − $14.00) × 15/30 days = $7.50')
    """
    amount, computation, remaining, total = _difference_line(
        old_price, new_price, period, on, currency
    )
    description = f"Credit for unused days, {remaining} of {total} days ({_span(period, on)})"
    return QuoteLine(description, amount, computation)


def addon_unit(unit_monthly: Decimal, cycle: str) -> Decimal:
    """One extra property for one period: the monthly price, or 12x it per year (ADD-1).

    >>> addon_unit(Decimal("30.00"), "monthly"), addon_unit(Decimal("30.00"), "yearly")
    (Decimal('30.00'), Decimal('360.00'))
    """
    monthly = _price(unit_monthly, "unit_monthly")
    if cycle == MONTHLY:
        return monthly
    if cycle == YEARLY:
        return monthly * 12
    raise ValueError(f"unknown billing cycle {cycle!r}; expected one of {CYCLES}")


def addon_period_amount(quantity: int, unit_monthly: Decimal | None, cycle: str) -> Decimal:
    """Extra properties for one whole period, as a renewal charges them (ADD-1, ADD-2, REN-2);
    nothing where the plan offers none (`unit_monthly` None).

    Advanced yearly with 2 extra properties at $30/month: 2 x 360.00 = 720.00.

    >>> addon_period_amount(2, Decimal("30.00"), "yearly"), addon_period_amount(2, None, "monthly")
    (Decimal('720.00'), Decimal('0.00'))
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise ValueError(f"quantity must be a whole number of zero or more, got {quantity!r}")
    if not quantity or unit_monthly is None:
        return ZERO
    return cents(addon_unit(unit_monthly, cycle) * quantity)


def addon_line(
    quantity: int,
    unit_monthly: Decimal,
    cycle: str,
    period: Period,
    on: date,
    currency: str = "USD",
) -> QuoteLine:
    """Extra properties bought mid-period, prorated like UPG-2 (ADD-1).

    On a yearly cycle one unit costs 12 x the monthly price per year.
    Advanced monthly 2026-06-01..07-01, 2 bought on 06-11: 2 x 30.00 x 20/30 = 40.00.

    >>> line = addon_line(
    ...     2, Decimal("30.00"), "monthly",
    ...     Period(date(2026, 6, 1), date(2026, 7, 1)), date(2026, 6, 11),
    ... )
    >>> line.amount, line.computation
    (Decimal('40.00'), '2 × $30.00 × 20/30 days = $40.00')
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"quantity must be an int, not {type(quantity).__name__}")
    if quantity < 0:
        raise ValueError(f"quantity must not be negative, got {quantity}")
    unit = addon_unit(unit_monthly, cycle)
    per = "month" if cycle == MONTHLY else "year"
    _, remaining, total = day_split(period, on)
    amount = share(quantity * unit, remaining, total)  # one rounding for the whole line
    computation = (
        f"{quantity} {TIMES} {format_money(unit, currency)} {TIMES} {remaining}/{total} days"
        f" = {format_money(amount, currency)}"
    )
    description = (
        f"{counted(quantity, 'extra property')} at "
        f"{format_money(unit, currency)}/{per}, {remaining} of {total} days "
        f"({_span(period, on)})"
    )
    return QuoteLine(description, amount, computation, quantity=quantity, unit_price=unit)


def overage_amount(sessions: int, included: int | None, per_1000: Decimal | None) -> Decimal:
    """Overage for a month, pro rata per session, rounded half up to the cent (USE-3): what the
    overage invoice charges and what the billing page projects.

    Personal, 12,500 sessions, 10,000 included, $2.00 per 1,000: 2,500 x 2.00 / 1,000 = 5.00.
    A hard cap (no price, USE-4) or an unlimited quota: nothing.

    >>> overage_amount(12_500, 10_000, Decimal("2.00")), overage_amount(12_500, None, Decimal("2.00"))
    (Decimal('5.00'), Decimal('0.00'))
    """
    if per_1000 is None or included is None or sessions <= included:
        return ZERO
    return share(_price(per_1000, "per_1000"), sessions - included, 1000)


def overage_line(
    sessions: int, included: int, per_1000: Decimal | None, currency: str = "USD"
) -> QuoteLine:
    """Sessions over the monthly quota, pro rata per session (USE-3).

    Personal, 12,500 sessions, 10,000 included, $2.00 per 1,000: 2,500 x 2.00 / 1,000 = 5.00.
    A hard-capped plan (`per_1000` None) has no overage (USE-4).

    >>> line = overage_line(12_500, 10_000, Decimal("2.00"))
    >>> line.amount, line.computation
    (Decimal('5.00'), '2,500 sessions × $2.00 / 1,000 = $5.00')
    """
    for name, value in (("sessions", sessions), ("included", included)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}")
    over = max(sessions - included, 0)
    if per_1000 is None:
        return QuoteLine(
            "Sessions over the quota",
            ZERO,
            f"hard cap: {sessions:,} of {included:,} sessions counted, no overage",
        )
    price = _price(per_1000, "per_1000")
    if over == 0:
        return QuoteLine(
            "Sessions over the quota",
            ZERO,
            f"{sessions:,} of {included:,} included sessions used, no overage",
        )
    amount = overage_amount(sessions, included, price)
    computation = (
        f"{over:,} session{'' if over == 1 else 's'} {TIMES} {format_money(price, currency)}"
        f" / 1,000"
        f" = {format_money(amount, currency)}"
    )
    description = f"{over:,} sessions over the {included:,} included"
    return QuoteLine(description, amount, computation)


def late_overage_line(
    sessions: int, billed: int, included: int, per_1000: Decimal, currency: str = "USD"
) -> QuoteLine:
    """Sessions of a month reported after its overage was invoiced (USE-3; events may arrive up
    to 35 days late): the month's whole overage less what was invoiced for it, so that the
    invoices of a month always add up to the overage of its final count, cent for cent.

    Personal, 10,000 included, 12,500 invoiced ($5.00), 12,800 counted since: $5.60 - $5.00.

    >>> line = late_overage_line(12_800, 12_500, 10_000, Decimal("2.00"))
    >>> line.amount, line.description
    (Decimal('0.60'), '300 sessions reported after the invoice')
    >>> line.computation
    '2,800 sessions × $2.00 / 1,000 = $5.60, less $5.00 invoiced for 12,500 sessions = $0.60'
    """
    if isinstance(billed, bool) or not isinstance(billed, int):
        raise TypeError(f"billed must be an int, not {type(billed).__name__}")
    billed = max(billed, included)
    if sessions < billed:
        raise ValueError(f"sessions ({sessions:,}) must not be below the sessions invoiced ({billed:,})")
    whole = overage_line(sessions, included, per_1000, currency)
    before = overage_line(billed, included, per_1000, currency).amount
    late = sessions - billed
    amount = whole.amount - before
    description = f"{late:,} session{'' if late == 1 else 's'} reported after the invoice"
    if before == 0:
        return QuoteLine(description, amount, whole.computation)
    computation = (f"{whole.computation}, less {format_money(before, currency)} invoiced for {billed:,} sessions"
                   f" = {format_money(amount, currency)}")
    return QuoteLine(description, amount, computation)


# --- quotes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """What the customer confirms before a change (PAY-3): due now, at period end, and how."""

    kind: str  # "upgrade" | "downgrade" | "trial_change" | "add_on" | "new"
    amount_due: Decimal  # charged now
    effective_at: datetime | date | None
    lines: tuple[QuoteLine, ...] = ()
    currency: str = "USD"
    at_period_end: str = ""  # sentence: what happens at period end
    notes: tuple[str, ...] = ()  # e.g. the forfeited-days notice (UPG-3)
    forfeited_days: int = 0
    invoice: object | None = None  # set with dataclasses.replace once applied
    next_charge: object | None = None  # the next automatic charge once applied (PAY-4), from the statement
    next_charge_text: str = ""
    # The amounts charged now as the invoice will total them (`invoices.totals.InvoiceTotals`), set by
    # `quotes.with_tax`; `quotes.with_credit` applies the credit to them.
    totals: object | None = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in QUOTE_KINDS:
            raise ValueError(f"unknown quote kind {self.kind!r}; expected one of {QUOTE_KINDS}")
        object.__setattr__(self, "amount_due", _price(self.amount_due, "amount_due"))
        if self.forfeited_days < 0:
            raise ValueError(f"forfeited_days must not be negative, got {self.forfeited_days}")
        object.__setattr__(self, "currency", currency_code(self.currency))
        object.__setattr__(self, "lines", tuple(self.lines))
        object.__setattr__(self, "notes", tuple(self.notes))

    def with_invoice(self, invoice: object) -> Quote:
        """This quote, applied: the same figures, pointing at the invoice that charged them."""
        return dataclasses.replace(self, invoice=invoice)
