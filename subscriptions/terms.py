"""The engine's read-only rules: what a plan costs for a period, what an account may have, whether
a change is an upgrade, what the next period will be, and who may ask for what. Nothing here
changes state; each fact is computed in one function here and every page, e-mail, PDF, quote and
charge calls it (one owner per fact).
"""

import functools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, AccountFlag, FlagKind, SuspensionReason
from core import zones
from core.money import ZERO, format_money
from core.words import counted
from invoices import services as ledger
from invoices import tax_rates
from invoices.models import (
    CreditNoteKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    RefundRequest,
    RefundRequestStatus,
)
from plans.models import Cycle, Plan

from . import pricing
from .errors import InvalidChange, NotEligible
from .models import RestoreRequest, Status, Subscription

# --- time ----------------------------------------------------------------------------------------


def clock(now: datetime | None) -> datetime:
    """The moment an operation runs at: the `now` it was given, else the current time (D-4)."""
    return now or timezone.now()


def local_date(account, moment: datetime) -> date:
    """D-5: the date of `moment` in the billing time zone the owner chose (an invoice's date, the
    day a request was made). A subscription's period dates are `period_date`'s."""
    return zones.local_date(moment, account.zone)


def period_date(sub: Subscription, moment: datetime) -> date:
    """D-1, D-2: the date of `moment` on the calendar of `sub`'s current period, the one its bounds
    were computed on: the period's start and end, the day a change is counted from, the trial's
    end. It is the account's zone, except until the next period after the owner changed zones."""
    return zones.local_date(moment, sub.zone)


def current_period(sub: Subscription) -> pricing.Period:
    """The current period as local dates of its calendar (D-2), for proration."""
    return pricing.Period(period_date(sub, sub.current_period_start), period_date(sub, sub.current_period_end))


def trial_end_at(account, plan: Plan, now: datetime) -> datetime:
    """TRI-3: a trial starting at `now` ends `trial_days` local days later, at the same local time,
    on the account's calendar (a 14-day trial across a DST change is 14 calendar days)."""
    return pricing.calendar_shift(now, account.zone, days=plan.trial_days)


def days_later(sub: Subscription, moment: datetime, days: int) -> datetime:
    """`moment` moved `days` local days on the calendar of `sub`'s current period (UPG-3 restored
    days, REF-4 extensions)."""
    return pricing.calendar_shift(moment, sub.zone, days=days)


def iso(value) -> str | None:
    return value.isoformat() if value else None


def snapshot(sub: Subscription) -> dict:
    """The audited state of a subscription (ACC-3 before/after)."""
    return {
        "plan": sub.plan.code, "cycle": sub.cycle, "status": sub.status, "price": str(sub.current_price),
        "period_start": iso(sub.current_period_start), "period_end": iso(sub.current_period_end),
        "trial_end": iso(sub.trial_end), "timezone": sub.timezone,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "scheduled_plan": sub.scheduled_plan.code if sub.scheduled_plan_id else None,
        "scheduled_cycle": sub.scheduled_cycle or None, "extra_properties": sub.extra_properties,
        "scheduled_extra_properties": sub.scheduled_extra_properties,
    }


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


def span(start: datetime, end: datetime, zone) -> str:
    """A period as the customer reads it: its local dates in the zone it was computed in (D-1)."""
    return f"{zones.local_date(start, zone).isoformat()} to {zones.local_date(end, zone).isoformat()}"  # YYYY-MM-DD


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


# --- limits (DWN-3) and who may change what (UPG-7, SUS-2) ----------------------------------------


def fit_problem(account, plan: Plan, extra_properties: int = 0) -> str | None:
    """Why the account does not fit `plan` with these extra properties, in DWN-3's words, or None."""
    allowed = plan.property_limit(extra_properties)
    if allowed is not None:
        have = account.properties.live().count()
        if have > allowed:
            remove = have - allowed
            return (f"{plan.name} allows {counted(allowed, 'property')}; you have {have}. "
                    f"Delete {counted(remove, 'property')} to downgrade.")
    if plan.limit_integrations is not None:
        have = account.integrations.filter(disconnected_at__isnull=True).count()
        if have > plan.limit_integrations:
            remove = have - plan.limit_integrations
            return (f"{plan.name} allows {plan.limit_integrations} integration"
                    f"{'' if plan.limit_integrations == 1 else 's'}; you have {have}. "
                    f"Disconnect {remove} integration{'' if remove == 1 else 's'} to downgrade.")
    return None


def paid_status_guard(sub: Subscription) -> None:
    """UPG-7 and SUS-2: no plan change while money is owed or the account is suspended."""
    account = sub.account
    if sub.status in (Status.PAST_DUE, Status.SUSPENDED) or (
        account.is_suspended and account.suspension_reason == SuspensionReason.NON_PAYMENT
    ):
        raise NotEligible("Your last payment failed. Update your payment method and pay the open invoice "
                          "before changing plans.")
    if account.is_suspended and account.suspension_reason == SuspensionReason.POLICY_VIOLATION:
        raise NotEligible("Your account is suspended for a policy violation. Contact support.")


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


# --- trials (TRI-1, TRI-2) --------------------------------------------------------------------------


def trial_refusal(account) -> tuple[str, Account | None] | None:
    """TRI-2: why the account may not start a trial (and the matching account), or None."""
    if account.trial_used_at:
        return "This account has already had a free trial. You can still subscribe without a trial.", None
    others = Account.objects.exclude(pk=account.pk).filter(trial_used_at__isnull=False)
    if account.identity_email:
        match = others.filter(identity_email=account.identity_email).first()
        if match:
            return ("A free trial was already used with this e-mail address. "
                    "You can still subscribe without a trial.", match)
    method = ledger.default_payment_method(account)
    if method is not None:
        match = others.filter(payment_methods__fingerprint=method.fingerprint).first()
        if match:
            return "A free trial was already used with this card. You can still subscribe without a trial.", match
    return None


def trial_eligible(account) -> bool:
    return trial_refusal(account) is None and ledger.default_payment_method(account) is not None


def trial_reactivable_until(sub: Subscription | None, now: datetime) -> datetime | None:
    """TRI-5: a cancelled trial can be reactivated until its original end date."""
    if (sub is not None and sub.status == Status.CANCELED and sub.trial_start and sub.trial_end
            and not sub.current_price and not sub.ended_at and sub.trial_end > now):
        return sub.trial_end
    return None


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


def next_zone(sub: Subscription) -> str:
    """D-5: the zone the next period of `sub` is computed on: the account's, as the owner chose it,
    unless that period was already invoiced when the owner changed it (`next_timezone`, set by
    `billing.set_billing_zone`): an issued invoice's period never moves."""
    return next_zone_of(sub.next_timezone, sub.account.timezone)


def next_zone_of(next_timezone: str, account_timezone: str) -> str:
    """`next_zone` from the subscription's `next_timezone` and its account's `timezone` columns."""
    return next_timezone or account_timezone


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


def ahead_period(ahead: NextTerms) -> pricing.Period:
    """The invoiced next period as local dates of its own calendar (D-2), for proration."""
    return pricing.Period(zones.local_date(ahead.start, ahead.zone), zones.local_date(ahead.end, ahead.zone))


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
    sub = Subscription.objects.filter(account=account).select_related("plan", "account").order_by("-id").first()
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


def trial_first_period(sub: Subscription) -> tuple[datetime, datetime, str]:
    """TRI-3: the first paid period after the trial starts at the trial's end and is computed on the
    calendar of `next_zone`: its start, its end and that zone's name."""
    timezone_name = next_zone(sub)
    start, end = pricing.period_bounds(sub.trial_end, sub.cycle, 0, zones.zone(timezone_name))
    return start, end, timezone_name


def anchor_moved(sub: Subscription, days: int) -> tuple[datetime, datetime]:
    """The anchor and the current period's end once `days` are added to a paid period (UPG-3
    restored days, REF-4 extensions): the anchor moves `days` local days, so the renewal and every
    later period follow (D-1)."""
    anchor = days_later(sub, sub.anchor_at, days)
    return anchor, pricing.period_bounds(anchor, sub.cycle, sub.period_index, sub.zone)[1]


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


# --- refund requests (REF-2, REF-3) ------------------------------------------------------------------


def refundable_payments(invoice: Invoice) -> list[Payment]:
    return [p for p in Payment.objects.filter(invoice=invoice, status=PaymentStatus.SUCCEEDED).order_by("id")
            if p.amount > p.refunded_amount]


def charged_at(invoice: Invoice) -> datetime | None:
    if invoice.paid_at:
        return invoice.paid_at
    payment = (Payment.objects.filter(invoice=invoice, status=PaymentStatus.SUCCEEDED)
               .order_by("settled_at").first())
    return payment.settled_at if payment else None


# REF-6: paid changes and purchases, which show the product was used.
USE_SHOWN_BY = (InvoiceKind.UPGRADE, InvoiceKind.ADD_ON, InvoiceKind.SUBSCRIPTION, InvoiceKind.REACTIVATION)


def paid_change_after(invoice) -> Invoice | None:
    """REF-6: the first paid plan change or purchase of the account after the trial conversion
    `invoice` was charged, or None."""
    charged = charged_at(invoice)
    if charged is None:
        return None
    return (Invoice.objects.filter(account_id=invoice.account_id, kind__in=USE_SHOWN_BY, status=InvoiceStatus.PAID,
                                   paid_at__gt=charged).order_by("paid_at", "id").first())


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
    current = (Subscription.objects.filter(account_id=invoice.account_id).select_related("account")
               .order_by("-id").first())
    paid_until = None
    if current is not None and current.is_paid and current.status != Status.CANCELED and current.current_period_end:
        paid_until = current.current_period_end
        if next_period_invoiced(current) and Invoice.objects.filter(
                dedupe_key=renewal_key(current, current.current_period_end), status=InvoiceStatus.PAID).exists():
            paid_until = next_terms(current).end  # the next period is paid too (REN-1)
    days_left = max((local_date(current.account, paid_until) - local_date(current.account, now)).days, 0) \
        if paid_until else 0
    return RefundReview(later, paid_until, days_left)


def refund_refusal(invoice, now=None) -> str | None:
    """Why the owner may not ask for a refund of `invoice` now (REF-2, REF-3), or None."""
    now = clock(now)
    account = invoice.account
    if invoice.kind != InvoiceKind.TRIAL_CONVERSION:
        return "Only the charge made when your free trial ended can be refunded; other payments are final."
    if invoice.status != InvoiceStatus.PAID or not Payment.objects.filter(
        invoice=invoice, status=PaymentStatus.SUCCEEDED
    ).exists():
        return "This invoice was not paid by card, so there is nothing to refund."
    refunded = invoice.credit_notes.filter(kind=CreditNoteKind.REFUND).exists() or Payment.objects.filter(
        invoice=invoice, refunded_amount__gt=0
    ).exists()
    if refunded:
        return "This charge was already refunded."
    earlier = (RefundRequest.objects.filter(invoice=invoice).exclude(status=RefundRequestStatus.REFUSED)
               .order_by("requested_at", "id").first())
    if earlier is not None:
        return (f"A refund of this charge was already requested on {local_date(account, earlier.requested_at)} "
                f"({earlier.get_status_display().lower()}).")
    used = paid_change_after(invoice)
    if used is not None:
        return (f"You changed your subscription after the trial ({used.get_kind_display().lower()}, invoice "
                f"{used.number} of {local_date(account, used.paid_at):%Y-%m-%d}), which shows the product was used, "
                "so the trial charge can no longer be refunded.")
    if AccountFlag.objects.filter(account=account, kind=FlagKind.TRIAL_ABUSE, resolved_at__isnull=True).exists():
        return ("This account is flagged for review of its free trial, so the refund cannot be requested here. "
                "Please contact support.")
    charged_on = local_date(account, charged_at(invoice))
    last_day = charged_on + timedelta(days=settings.BILLING_REFUND_WINDOW_DAYS)
    if local_date(account, now) > last_day:
        return (f"A refund can be requested within {settings.BILLING_REFUND_WINDOW_DAYS} days of the charge. "
                f"This charge was made on {charged_on:%Y-%m-%d}, so the last day to ask was {last_day:%Y-%m-%d}.")
    return None


# --- restoring forfeited days (UPG-3) ----------------------------------------------------------------


def upgrade_invoice(sub: Subscription) -> Invoice | None:
    """The paid monthly -> yearly upgrade invoice of `sub`, newest first."""
    for invoice in (Invoice.objects.filter(subscription=sub, kind=InvoiceKind.UPGRADE, status=InvoiceStatus.PAID)
                    .order_by("-issued_at", "-id")[:20]):
        change = invoice.pending_change or {}
        if change.get("action") == "upgrade" and (change.get("from_cycle"), change.get("cycle")) == (
            Cycle.MONTHLY, Cycle.YEARLY
        ):
            return invoice
    return None


def upgraded_on(sub: Subscription, invoice: Invoice) -> date:
    """The day of the monthly -> yearly upgrade on the yearly period's calendar (UPG-3)."""
    start = (invoice.pending_change or {}).get("new_start")
    moment = datetime.fromisoformat(start) if start else (invoice.paid_at or invoice.issued_at)
    return period_date(sub, moment)


def restore_refusal(subscription, now=None) -> str | None:
    """Why the owner may not ask now for the days a monthly -> yearly upgrade forfeited, or None."""
    now = clock(now)
    sub = Subscription.objects.select_related("account", "plan").get(pk=subscription.pk)
    invoice = upgrade_invoice(sub)
    if invoice is None:
        return "Days can be restored only after an upgrade from a monthly to a yearly plan."
    newest = Subscription.objects.filter(account_id=sub.account_id).order_by("-id").values_list("pk", flat=True)
    if newest.first() != sub.pk or sub.status == Status.CANCELED or sub.cycle != Cycle.YEARLY:
        return "The yearly subscription this upgrade started is no longer current, so no days can be added to it."
    days = int((invoice.pending_change or {}).get("forfeited_days") or 0)
    if days <= 0:
        return "No days of your monthly period were forfeited by this upgrade."
    existing = RestoreRequest.objects.filter(invoice=invoice).first()
    if existing is not None:
        return (f"You already asked for these {existing.days} days on "
                f"{local_date(sub.account, existing.requested_at):%Y-%m-%d} ({existing.get_status_display().lower()}).")
    working_days = settings.BILLING_RESTORE_WORKING_DAYS
    upgraded = upgraded_on(sub, invoice)
    today = period_date(sub, now)
    if not pricing.restore_window_open(upgraded, today, working_days):
        deadline = pricing.restore_deadline(upgraded, working_days)
        return (f"Forfeited days can be restored only within {working_days} working days of the upgrade. You "
                f"upgraded on {upgraded:%A %Y-%m-%d}, so the last day to ask was {deadline:%A %Y-%m-%d}.")
    return None
