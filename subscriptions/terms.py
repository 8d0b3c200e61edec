"""The engine's read-only rules: what a plan costs for a period, whether a change is an upgrade,
what the next period will be and what its charge is, and when a change may touch a period already
invoiced. Nothing here changes state; each fact is computed in one function here and every page,
e-mail, PDF, quote and charge calls it (one owner per fact).

Its neighbours own the rest of what used to live here: `core.clock` the clock, `accounts.audit`
the audited snapshot of a subscription, `subscriptions.periods` the calendar reads and
`subscriptions.refusals` who may ask for what (with the ledger reads each refusal needs). Their
names stay importable from here for the commands that read them as `terms.<name>`.
"""

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from accounts.audit import iso, subscription_snapshot
from accounts.models import Account
from core import zones
from core.clock import clock
from core.money import ZERO, format_money
from core.words import counted
from invoices import services as ledger
from invoices import tax_rates
from invoices.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from plans.models import Cycle, Plan

from . import pricing
from .errors import InvalidChange
from .models import Status, Subscription
from .periods import (
    ahead_period,
    anchor_moved,
    current_period,
    days_later,
    local_date,
    next_zone,
    next_zone_of,
    period_date,
    span,
    trial_end_at,
    trial_first_period,
)
from .refusals import (
    USE_SHOWN_BY,
    charged_at,
    fit_problem,
    forfeited_days,
    paid_change_after,
    paid_status_guard,
    refund_refusal,
    refundable_payments,
    restore_refusal,
    trial_eligible,
    trial_reactivable_until,
    trial_refusal,
    upgrade_invoice,
    upgraded_on,
)

snapshot = subscription_snapshot  # the audited state of a subscription (ACC-3), as the engine names it

# Read as `terms.<name>` by the engine's commands, quotes and lifecycle; owned by the modules above.
__all__ = [
    "USE_SHOWN_BY", "ahead_period", "anchor_moved", "charged_at", "clock", "current_period", "days_later",
    "fit_problem", "forfeited_days", "iso", "local_date", "next_zone", "next_zone_of", "paid_change_after",
    "paid_status_guard",
    "period_date", "refund_refusal", "refundable_payments", "restore_refusal", "snapshot", "span",
    "trial_eligible", "trial_end_at", "trial_first_period", "trial_reactivable_until", "trial_refusal",
    "upgrade_invoice", "upgraded_on",
]

# --- plans and prices (CAT, ADD-1, REN-2) ---------------------------------------------------------


def plan_for(account, code: str) -> Plan:
    """A plan the account may choose: public, or its own custom plan (CAT-3)."""
    plan = Plan.objects.filter(code=code).filter(Q(public=True) | Q(account=account)).first()
    if plan is None:
        raise InvalidChange(f"There is no plan called {code!r}.")
    return plan


CYCLES = frozenset(Cycle.values)  # (Cycle.values builds a new list on every read)


def plan_price(plan: Plan, cycle: str) -> Decimal:
    """The plan's price for one period of `cycle`; refused when the plan is not offered so."""
    if cycle not in CYCLES:
        raise InvalidChange(f"Unknown billing cycle {cycle!r}: choose monthly or yearly.")
    price = plan.price_for(cycle)
    if price is None:
        raise InvalidChange(f"{plan.name} is not offered {cycle}.")
    return price


def addon_price(plan: Plan, cycle: str, quantity: int) -> Decimal:
    """Extra properties for one whole period: 12x the monthly price per year (ADD-1)."""
    return pricing.addon_period_amount(quantity, plan.extra_property_monthly, cycle)


def period_price(plan: Plan, cycle: str, extra_properties: int = 0) -> Decimal:
    """What one period on (plan, cycle) with these extra properties costs before credit: the
    amount a renewal charges and every "renews at" states (REN-2). Advanced yearly with 2 extra
    properties: $278.04 + 2 x 12 x $30.00 = $998.04."""
    return (plan.price_for(cycle) or ZERO) + addon_price(plan, cycle, extra_properties)


# `format_money` of a price, remembered: a run's renewals state a few prices thousands of times
# (issue 17). Keyed by the amount and currency alone, so it is right for any data.
price_text = functools.lru_cache(maxsize=256)(format_money)


def cycle_unit(cycle: str) -> str:
    return "month" if cycle == Cycle.MONTHLY else "year"


def plan_period_line(plan: Plan, cycle: str, start: datetime, end: datetime, computation: str, zone) -> ledger.Line:
    """The plan's line on an invoice for one whole period (a first period, a trial conversion, a
    renewal, a reactivation); `zone` is the calendar the period was computed on."""
    return ledger.Line(f"{plan.name} ({cycle}), {span(start, end, zone)}", plan_price(plan, cycle), computation)


def addon_period_line(plan: Plan, cycle: str, quantity: int, start: datetime, end: datetime, zone) -> ledger.Line:
    """The extra properties' line for one whole period (ADD-2, REN-2)."""
    unit = pricing.addon_unit(plan.extra_property_monthly, cycle)
    return ledger.Line(f"{counted(quantity, 'extra property')}, {span(start, end, zone)}",
                       addon_price(plan, cycle, quantity), f"{quantity} × {format_money(unit, plan.currency)}",
                       quantity=Decimal(quantity), unit_price=unit)


# --- upgrade or downgrade (UPG-1, DWN-1) ----------------------------------------------------------


def is_upgrade(sub: Subscription, plan: Plan, cycle: str) -> bool | None:
    """True: upgrade (UPG-1); False: downgrade (DWN-1); None: the same plan and cycle."""
    if plan.pk == sub.plan_id and cycle == sub.cycle:
        return None
    if plan.is_free:
        return False
    if sub.cycle == Cycle.YEARLY and cycle == Cycle.MONTHLY:
        return False  # yearly -> monthly is a downgrade whatever the plan (DWN-1)
    if plan.rank != sub.plan.rank:
        return plan.rank > sub.plan.rank
    if cycle != sub.cycle:
        return cycle == Cycle.YEARLY
    return plan_price(plan, cycle) > sub.current_price


# --- the next period (REN-2, DWN-2, ADD-2, ADD-3) ---------------------------------------------------


@dataclass(frozen=True)
class NextTerms:
    """What the next period of a subscription will be, as the renewal charges it."""

    plan: Plan
    cycle: str
    extra_properties: int
    anchor: datetime
    index: int
    start: datetime
    end: datetime
    timezone: str  # the calendar the period is computed on (D-1)
    computation: str = ""  # how the plan's line says its price was reached ("" : the cycle's price)
    account: Account | None = field(default=None, compare=False, repr=False)  # whose tax applies (TAX-3)

    @property
    def zone(self):
        return zones.zone(self.timezone)

    @property
    def amount(self) -> Decimal:
        """The renewal's total before credit (REN-2)."""
        return period_price(self.plan, self.cycle, self.extra_properties)

    @property
    def property_limit(self) -> int | None:
        return self.plan.property_limit(self.extra_properties)

    def lines(self) -> list[ledger.Line]:
        """The renewal invoice's lines: the plan for the period, and the extra properties (ADD-2)."""
        price = price_text(plan_price(self.plan, self.cycle), self.plan.currency)
        zone = self.zone
        lines = [plan_period_line(self.plan, self.cycle, self.start, self.end,
                                  self.computation or f"{self.cycle} price {price}", zone)]
        if self.extra_properties:
            lines.append(addon_period_line(self.plan, self.cycle, self.extra_properties, self.start, self.end, zone))
        return lines


def next_terms(sub: Subscription) -> NextTerms:
    """The next period's plan, cycle, extra properties and bounds: the scheduled plan or cycle if
    a change is due (DWN-2), the scheduled number of extra properties (ADD-2), none on a plan
    without the add-on (ADD-3).

    It starts where the current period ends (REN-1) and ends at the anchor moved one more period,
    on the calendar of `next_zone` (D-1): when the owner chose another zone, the anchor's instant
    is read as a local time of the new zone from this period on. A new cycle re-anchors at the
    current period's end."""
    return next_terms_of(sub.plan, sub.scheduled_plan, sub.cycle, sub.scheduled_cycle, sub.extra_properties,
                         sub.scheduled_extra_properties, sub.anchor_at, sub.period_index, sub.current_period_end,
                         next_zone(sub), account=sub.account)


def next_terms_of(plan: Plan, scheduled_plan: Plan | None, cycle: str, scheduled_cycle: str, extra_properties: int,
                  scheduled_extra_properties: int | None, anchor_at: datetime | None, period_index: int,
                  current_period_end: datetime, timezone_name: str, account: Account | None = None) -> NextTerms:
    """`next_terms` from a subscription's columns (and `next_zone`'s answer), for the billing run,
    which claims a batch's subscriptions as rows, not model instances (issue 17)."""
    next_plan = scheduled_plan or plan
    next_cycle = scheduled_cycle or cycle
    extra = extra_properties if scheduled_extra_properties is None else scheduled_extra_properties
    if next_plan.extra_property_monthly is None:
        extra = 0
    if next_cycle != cycle or anchor_at is None:
        anchor, index = current_period_end, 0
    else:
        anchor, index = anchor_at, period_index + 1
    end = pricing.period_end(anchor, next_cycle, index, zones.zone(timezone_name))
    return NextTerms(next_plan, next_cycle, extra, anchor, index, current_period_end, end, timezone_name,
                     account=account)


def next_period_invoiced(sub: Subscription) -> bool:
    """Whether the renewal invoice of the period after the current one exists (and is not void):
    its bounds are then fixed (PAY-4, REN-3)."""
    if sub.current_period_end is None:
        return False
    return Invoice.objects.filter(dedupe_key=renewal_key(sub, sub.current_period_end)).exclude(
        status=InvoiceStatus.VOID).exists()


def invoiced_ahead(sub: Subscription) -> NextTerms | None:
    """REN-1: the next period when its renewal is already invoiced (the 24 hours before it starts):
    that period is bought at these terms. A change made now adds to it (an upgrade, more extra
    properties: charged for it too), ends after it (a cancellation), or waits until it has started
    (anything that would make it cost less or change its cycle: `invoiced_ahead_refusal`).
    None otherwise, and for an unsaved copy (a quote's "after")."""
    if sub.pk is None or sub.status not in (Status.ACTIVE, Status.PAST_DUE) or not next_period_invoiced(sub):
        return None
    return next_terms(sub)


def paid_until(sub: Subscription) -> datetime | None:
    """The end of the service already bought: the invoiced next period's end (REN-1), else the
    current period's. A cancellation takes effect then (CAN-2)."""
    ahead = invoiced_ahead(sub)
    return ahead.end if ahead is not None else sub.current_period_end


def cancellation_due(sub: Subscription) -> bool:
    """CAN-2: the subscription ends at the end of its current period: it is cancelled and no next
    period was bought before the cancellation (else it ends after that one)."""
    return sub.cancel_at_period_end and invoiced_ahead(sub) is None


def invoiced_ahead_refusal(sub: Subscription, ahead: NextTerms) -> str:
    """Why a change that would lower what the invoiced next period costs, or change its cycle,
    must wait until that period has started."""
    return (f"Your next period ({span(ahead.start, ahead.end, ahead.zone)}) was already charged: renewals are "
            "charged 24 hours before a period starts. This change would alter what that period costs, so it "
            f"can be made once the period has started, on {ahead.start.astimezone(sub.zone):%Y-%m-%d at %H:%M} "
            f"({sub.zone.key} time). "
            "Upgrades and more extra properties can be bought now.")


def zone_effective_at(sub: Subscription | None) -> datetime | None:
    """D-5: from when `sub`'s periods follow the zone the owner chose: the start of its first period
    not yet invoiced (the trial's end for a trial). None when no period will follow (Free, ended,
    cancelling)."""
    if sub is None or not sub.is_paid or sub.ended_at or sub.current_period_end is None:
        return None
    if sub.status == Status.TRIALING:
        return sub.trial_end
    if sub.status == Status.CANCELED or sub.cancel_at_period_end:
        return None
    return next_terms(sub).end if sub.next_timezone else sub.current_period_end


def zone_notes(account) -> list[str]:
    """D-5 in the owner's words, for the billing details page: which zone the current period is
    counted on and from when the chosen zone applies, when the two differ."""
    sub = Subscription.objects.select_related("plan", "account").current_of(account)
    account = sub.account if sub is not None else account  # as stored now
    effective_at = zone_effective_at(sub)
    if sub is None or effective_at is None:
        return [f"Dates are shown in {account.timezone}."]
    if sub.timezone == account.timezone and not sub.next_timezone:
        return [f"Your periods follow the calendar of {account.timezone}."]
    notes = [f"Your current period follows the calendar of {sub.timezone} and still ends on "
             f"{period_date(sub, sub.current_period_end):%Y-%m-%d} ({sub.timezone})."]
    if sub.next_timezone and sub.next_timezone != account.timezone:
        notes.append(f"The next period was already invoiced; it follows {sub.next_timezone}.")
    notes.append(f"From {zones.local_date(effective_at, account.zone):%Y-%m-%d}, your periods follow "
                 f"{account.timezone}.")
    return notes


def following_terms(upcoming: NextTerms) -> NextTerms:
    """The period after `upcoming`, once it has started: same plan, cycle and extra properties (the
    roll-over applies scheduled changes), the next period of the same anchor on the same calendar
    (D-1)."""
    end = pricing.period_end(upcoming.anchor, upcoming.cycle, upcoming.index + 1, upcoming.zone)
    return NextTerms(upcoming.plan, upcoming.cycle, upcoming.extra_properties, upcoming.anchor, upcoming.index + 1,
                     upcoming.end, end, upcoming.timezone, account=upcoming.account)


def trial_terms(sub: Subscription) -> NextTerms:
    """TRI-3: the first paid period of a trial, which starts at the trial end (trial_first_period)."""
    start, end, timezone_name = trial_first_period(sub)
    return NextTerms(sub.plan, sub.cycle, 0, start, 0, start, end, timezone_name,
                     computation=f"first {cycle_unit(sub.cycle)} after the free trial", account=sub.account)


def reactivation_terms(sub: Subscription, now: datetime) -> NextTerms:
    """DUN-3: after a suspension for non-payment, a new card pays a full new period from that day,
    on the same plan, cycle and extra properties; a new series, on the calendar the owner chose."""
    start, end = pricing.period_bounds(now, sub.cycle, 0, sub.account.zone)
    extra = sub.extra_properties if sub.plan.extra_property_monthly is not None else 0
    return NextTerms(sub.plan, sub.cycle, extra, start, 0, start, end, sub.account.timezone,
                     computation="a full new period from the payment date (reactivation)", account=sub.account)


@dataclass(frozen=True)
class NextCharge:
    """The next automatic charge as the billing run will make it (PAY-4): when, for what, and how
    much after credit. Pages, e-mails and quotes state this and nothing else."""

    at: datetime
    kind: str  # "renewal" | "trial_conversion" | "retry"
    lines: tuple
    subtotal: Decimal
    credit: Decimal
    currency: str
    upcoming: NextTerms | None = None  # the period it pays for (None for a retry of open invoices)
    tax: Decimal = ZERO  # the tax its invoice adds (TAX-2), 0 when prices include it or none applies
    tax_label: str = ""  # "VAT 19 %" when its invoice shows tax

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax - self.credit

    @property
    def plan(self) -> Plan | None:
        return self.upcoming.plan if self.upcoming else None


def next_charge_of(upcoming: NextTerms, *, credit: Decimal, kind: str = "renewal",
                   at: datetime | None = None, decision=None) -> NextCharge:
    """The charge that pays for `upcoming`: a renewal 24 hours before the period starts (REN-1), a
    trial conversion at the trial end (TRI-3); available credit first (DWN-4, REN-2). `decision`:
    the account's tax decision on the charge's day, when the caller took it (for many at once)."""
    lines = tuple(upcoming.lines())
    at = at or upcoming.start - renewal_lead()
    if decision is None and upcoming.account is not None:  # TAX-2: the rate in force on the charge's day
        decision = tax_rates.decision_for(upcoming.account, at)
    currency = upcoming.plan.currency
    # What invoice_create will store: the same totals, credit first (DWN-4); no account: no tax.
    totals = tax_rates.totals_for(decision, [line.amount for line in lines], credit=credit)
    added = tax_rates.quote_tax(totals, currency)
    return NextCharge(at, kind, lines, totals.subtotal, totals.credit_applied, currency, upcoming,
                      totals.tax_added, added.label if added else "")


def renewal_key(sub: Subscription, start: datetime) -> str:
    """REN-3: the renewal invoice of a period exists once (Invoice.dedupe_key). The start is
    written as a UTC instant whatever zone it was computed in, so one period has one key."""
    return renewal_key_of(sub.pk, start)


def renewal_key_of(subscription_id: int, start: datetime) -> str:
    """`renewal_key` from the subscription's id."""
    return f"renewal:{subscription_id}:{start.astimezone(UTC).isoformat()}"


def renewal_lead() -> timedelta:
    """REN-1: renewals are charged this long before the period ends."""
    return timedelta(hours=settings.BILLING_RENEWAL_LEAD_HOURS)


# --- what staff see before deciding a trial refund (REF-6) -------------------------------------------


@dataclass(frozen=True)
class RefundReview:
    """What staff see before deciding a trial refund (REF-6): every payment since the conversion,
    and the paid time the account still has."""

    later_payments: list
    paid_until: datetime | None
    days_left: int


def refund_review(request, now=None) -> RefundReview:
    now = clock(now)
    invoice = request.invoice
    charged = charged_at(invoice)
    later = list(Payment.objects.filter(account_id=invoice.account_id, status=PaymentStatus.SUCCEEDED,
                                        settled_at__gt=charged).exclude(invoice=invoice)
                 .select_related("invoice").order_by("settled_at", "id")) if charged else []
    current = Subscription.objects.select_related("account").current_of(invoice.account_id)
    paid_until = None
    if current is not None and current.is_paid and current.status != Status.CANCELED and current.current_period_end:
        paid_until = current.current_period_end
        if next_period_invoiced(current) and Invoice.objects.filter(
                dedupe_key=renewal_key(current, current.current_period_end), status=InvoiceStatus.PAID).exists():
            paid_until = next_terms(current).end  # the next period is paid too (REN-1)
    days_left = max((local_date(current.account, paid_until) - local_date(current.account, now)).days, 0) \
        if paid_until else 0
    return RefundReview(later, paid_until, days_left)
