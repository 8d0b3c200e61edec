"""The pure core of the revenue figures (ACC-5): what one subscription state is worth per month,
and what a change of that amount is called. No ORM, no clock; docs/metrics.md defines the terms.

`recurring_monthly_amount` is the one place that prices a state for the figures. It takes the
price of the current period's plan as the engine recorded it (`Subscription.current_price`, or
`price` in an audit snapshot, which the engine writes since the snapshot carries it) and falls back
to the catalog only for audit rows older than that (see `price_of`).
"""

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

# The rounding (D-3, half up at a line) and money format every app shares.
from core.money import cents

ZERO = Decimal("0.00")
MONTHLY, YEARLY = "monthly", "yearly"
# Statuses whose subscription counts in MRR: paid up, or a renewal being collected (DUN-1..3:
# service continues while retries run). A trial, a suspension for non-payment and an ended
# subscription count nothing.
COUNTED_STATUSES = frozenset({"active", "past_due"})


@dataclass(frozen=True)
class RecurringTerms:
    """What a subscription state is billed per period."""

    status: str
    cycle: str
    price: Decimal  # the plan's price per cycle for the current period (REN-2, CAT-4)
    extra_properties: int = 0
    extra_property_monthly: Decimal | None = None  # the plan's add-on price per month (ADD-1)


def recurring_monthly_amount(terms: RecurringTerms) -> Decimal:
    """Monthly recurring revenue of one subscription state, rounded to the cent (half up) once.

    Monthly: the price plus the extra properties. Yearly: a twelfth of the yearly price plus the
    extra properties at their monthly price (ADD-1: 12x the monthly price per year, so a twelfth
    of it a month). Credit (DWN-4) is not subtracted: it lowers what an invoice collects, not the
    price. Nothing counts unless the status is active or past due.

    Advanced monthly with 2 extra properties: 29.00 + 2 x 30.00 = 89.00.
    Advanced yearly with 1 extra property: 278.04 / 12 + 30.00 = 23.17 + 30.00 = 53.17.
    Personal yearly, 134.40 / 12 = 11.20. A price of 100.00 a year: 100.00 / 12 = 8.33.

    >>> recurring_monthly_amount(RecurringTerms("active", "monthly", Decimal("29.00"), 2, Decimal("30.00")))
    Decimal('89.00')
    >>> recurring_monthly_amount(RecurringTerms("past_due", "yearly", Decimal("278.04"), 1, Decimal("30.00")))
    Decimal('53.17')
    >>> recurring_monthly_amount(RecurringTerms("trialing", "monthly", Decimal("14.00")))
    Decimal('0.00')
    """
    if terms.status not in COUNTED_STATUSES:
        return ZERO
    if terms.cycle == MONTHLY:
        base = terms.price
    elif terms.cycle == YEARLY:
        base = terms.price / 12
    else:
        raise ValueError(f"unknown billing cycle {terms.cycle!r}")
    extras = ZERO
    if terms.extra_properties and terms.extra_property_monthly is not None:
        extras = terms.extra_property_monthly * terms.extra_properties
    return cents(base + extras)


def price_of(snapshot: dict, plan) -> Decimal:
    """The plan price of the period a state was in: the snapshot's own `price` when it has one,
    else the catalog's price for the cycle (exact as long as that price has not changed since,
    CAT-4; docs/metrics.md, "Limits")."""
    if snapshot.get("price") not in (None, ""):
        return Decimal(str(snapshot["price"]))
    if plan is None:
        return ZERO
    price = plan.price_for(snapshot.get("cycle") or MONTHLY)
    return price if price is not None else ZERO


class Kind(StrEnum):
    """How an account's MRR moved. The signed amounts of a month's movements add up to the
    change of MRR over that month (opening + movements = closing)."""

    NEW = "new"  # from nothing, the first time the account pays
    EXPANSION = "expansion"  # up, while paying
    CONTRACTION = "contraction"  # down, still paying
    CHURN = "churn"  # to nothing
    REACTIVATION = "reactivation"  # from nothing, after having paid before
    TRANSFER = "transfer"  # same amount, another plan or cycle: moves MRR between plans only


KIND_LABELS = {
    Kind.NEW: "New",
    Kind.EXPANSION: "Expansion",
    Kind.REACTIVATION: "Reactivation",
    Kind.CONTRACTION: "Contraction",
    Kind.CHURN: "Churn",
    Kind.TRANSFER: "Plan change at the same amount",
}
MOVEMENT_KINDS = (Kind.NEW, Kind.EXPANSION, Kind.REACTIVATION, Kind.CONTRACTION, Kind.CHURN)


@dataclass(frozen=True)
class Bucket:
    """Where an account's MRR is counted: its plan and cycle, and the amount. Nothing paid is
    counted nowhere (plan and cycle empty), so a trial changing plans moves nothing."""

    plan: str = ""
    cycle: str = ""
    amount: Decimal = ZERO

    @classmethod
    def of(cls, plan: str, cycle: str, amount: Decimal) -> "Bucket":
        return cls(plan, cycle, amount) if amount > 0 else cls()


def classify(before: Bucket, after: Bucket, *, paid_before: bool) -> Kind | None:
    """What a change from `before` to `after` is; None when nothing moved.

    >>> classify(Bucket(), Bucket("personal", "monthly", Decimal("14.00")), paid_before=False)
    <Kind.NEW: 'new'>
    >>> classify(Bucket(), Bucket("personal", "monthly", Decimal("14.00")), paid_before=True)
    <Kind.REACTIVATION: 'reactivation'>
    >>> classify(Bucket("advanced", "monthly", Decimal("29.00")), Bucket("advanced", "yearly", Decimal("23.17")),
    ...          paid_before=True)
    <Kind.CONTRACTION: 'contraction'>
    """
    if before == after:
        return None
    if before.amount == 0:
        return Kind.REACTIVATION if paid_before else Kind.NEW
    if after.amount == 0:
        return Kind.CHURN
    if after.amount > before.amount:
        return Kind.EXPANSION
    if after.amount < before.amount:
        return Kind.CONTRACTION
    return Kind.TRANSFER
