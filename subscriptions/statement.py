"""The account statement: what is in force now and what happens next, read from the ledger the
way the billing run will act on it (PAY-4). The billing page, every e-mail and the quotes state
what this says; nothing else works out a next charge.

    statement = account_statement(account, now)
    statement.period          # the period in force now, even in the minutes before the run rolls it over
    statement.next_charge     # when, for what and how much the next automatic charge is (terms.NextCharge)
    statement.paid_ahead      # a renewal already paid for the next period (the 24 hours before it starts)
    statement.owed            # open invoices and why the last attempt failed (DUN-1)
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import Sum

from core import zones
from core.clock import clock
from core.money import ZERO, format_money
from core.words import counted
from invoices import services as ledger
from invoices.models import CreditNote, Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus

from . import terms
from .models import Status, Subscription

# How a sentence writes its dates: one way within one text (e-mails long, pages and quotes ISO).
LONG = "%B %-d, %Y"
ISO = "%Y-%m-%d"

# --- money owed (DUN-1, SUS-1) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Owed:
    amount: Decimal
    currency: str
    decline_message: str
    invoice: Invoice | None
    invoices: tuple = ()


def money_owed(account) -> Owed | None:
    """The open invoices and the reason the last charge on them failed (DUN-1)."""
    invoices = tuple(Invoice.objects.filter(account=account, status=InvoiceStatus.OPEN).order_by("issued_at", "id"))
    if not invoices:
        return None
    failed = (Payment.objects.filter(account=account, invoice__status=InvoiceStatus.OPEN, status=PaymentStatus.FAILED)
              .select_related("invoice").order_by("-attempted_at", "-id").first())
    return Owed(amount=sum((invoice.amount_due for invoice in invoices), ZERO), currency=invoices[0].currency,
                decline_message=(failed.decline_message if failed else "") or "Your card was declined.",
                invoice=failed.invoice if failed else invoices[0], invoices=invoices)


def credit_balance(account, currency: str) -> Decimal:
    """Credit notes not used up yet; applied automatically to the next invoices (DWN-4)."""
    return (CreditNote.objects.filter(account=account, remaining__gt=0, currency=currency)
            .aggregate(total=Sum("remaining"))["total"] or ZERO)


def unpaid_renewals(sub: Subscription, now: datetime) -> list[Invoice]:
    """CAN-6: the open renewal (or trial conversion) invoices of a past-due subscription whose
    period has already begun: the period in force was never paid, and a cancellation ends it at
    once. Empty when the period in force is paid (in the 24 hours before the next period, REN-1,
    the paid period runs out: CAN-2)."""
    if sub.pk is None or sub.status != Status.PAST_DUE:
        return []
    return list(Invoice.objects.filter(
        subscription=sub, status=InvoiceStatus.OPEN, kind__in=[InvoiceKind.RENEWAL, InvoiceKind.TRIAL_CONVERSION],
        period_start__lte=now).order_by("issued_at", "id"))


# --- the statement ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overage:
    """This month's projected overage (USE-2), invoiced on the 1st of next month (USE-3)."""

    sessions: int
    amount: Decimal
    invoiced_on: date


@dataclass
class Statement:
    account: object
    subscription: Subscription | None
    now: datetime
    currency: str
    period: tuple | None = None  # (start, end) of the paid period (or trial) in force now
    plan: object = None  # the plan in force now
    cycle: str = ""
    next_charge: terms.NextCharge | None = None
    paid_ahead: Invoice | None = None  # the next period's renewal, already paid
    owed: Owed | None = None
    credit: Decimal = ZERO
    ends_at: datetime | None = None  # a paid subscription that ends (CAN-2) or moves to Free (DWN-1)
    on_new_card: terms.NextCharge | None = None  # suspended for non-payment: what a new card pays (DUN-3)
    notes: list[str] = field(default_factory=list)
    overage: Overage | None = None

    @property
    def charge_day(self) -> date | None:
        """The customer's calendar date of the next charge."""
        return terms.local_date(self.account, self.next_charge.at) if self.next_charge else None

    def day(self, moment: datetime | None) -> date | None:
        return terms.local_date(self.account, moment) if moment else None

    @property
    def next_charge_sentence(self) -> str:
        """The next charge in words, for e-mails: date, amount, what for (dates as "December 16, 2026")."""
        return self.next_charge_words()

    def next_charge_words(self, dates: str = LONG) -> str:
        """The next charge in words, every date written one way (`dates`: LONG for e-mails, ISO for
        the billing page and quotes, whose other dates are ISO)."""
        charge = self.next_charge
        if charge is None:
            if self.ends_at is not None:
                if self.subscription is not None and self.subscription.status == Status.TRIALING:
                    return (f"Nothing is charged: your free trial ends on {self.day(self.ends_at):{dates}} and "
                            "your account then moves to Free.")
                return f"Nothing more is charged; your paid service ends on {self.day(self.ends_at):{dates}}."
            if self.on_new_card is not None:
                new = self.on_new_card
                return (f"Update your payment method: we then charge {format_money(new.total, new.currency)} for "
                        f"a new {terms.cycle_unit(new.upcoming.cycle)} of {new.upcoming.plan.name} from that day, "
                        "and tracking resumes at once.")
            if self.owed is not None:
                return (f"{format_money(self.owed.amount, self.owed.currency)} is unpaid; it is charged when you "
                        "update your payment method.")
            return "No further charge is scheduled."
        money = format_money(charge.total, charge.currency)
        on = f"{self.charge_day:{dates}}"
        if charge.kind == "retry":
            return f"We try the unpaid {money} again on {on}, or at once when you update your payment method."
        upcoming = charge.upcoming
        what = f"{upcoming.plan.name} ({upcoming.cycle})"
        if upcoming.extra_properties:
            what += f" with {counted(upcoming.extra_properties, 'extra property')}"
        start, end = (zones.local_date(moment, upcoming.zone) for moment in (upcoming.start, upcoming.end))
        span = f"{start:{dates}} to {end:{dates}}"  # on the period's own calendar (D-1)
        credit = f", after {format_money(charge.credit, charge.currency)} of credit" if charge.credit else ""
        return f"Next charge: {money} on {on}{credit}, for {what} from {span}."


def account_statement(account, now: datetime | None = None, *, subscription: Subscription | None = None,
                      usage: dict | None = None, credit_added: Decimal = ZERO) -> Statement:
    """What is in force for `account` at `now` and what happens next, as the billing run will do it.
    `subscription`: a subscription as it would be after a change (a quote), instead of the stored
    one (its `pk` None: no invoice is looked up for it); `credit_added`, credit the change would issue
    (DWN-4). `usage`: this month's usage summary (selectors.usage_summary), for the projected overage."""
    now = clock(now)
    sub = subscription or Subscription.objects.select_related("plan", "scheduled_plan").current_of(account)
    currency = sub.plan.currency if sub else "USD"
    statement = Statement(account=account, subscription=sub, now=now, currency=currency)
    if subscription is None:
        statement.owed = money_owed(account)
    statement.credit = credit_balance(account, currency) + credit_added
    if sub is None:
        return statement
    statement.plan, statement.cycle = sub.plan, sub.cycle
    if sub.status == Status.TRIALING:
        statement.period = (sub.trial_start, sub.trial_end)
        if sub.scheduled_plan_id and sub.scheduled_plan.is_free:
            statement.ends_at = sub.trial_end
        else:
            first = terms.trial_terms(sub)
            statement.next_charge = terms.next_charge_of(first, credit=statement.credit, kind="trial_conversion",
                                                         at=sub.trial_end)
    elif sub.status == Status.PAST_DUE:
        statement.period = (sub.current_period_start, sub.current_period_end)
        owed = statement.owed
        if owed is not None and sub.next_retry_at is not None:
            lines = tuple(ledger.Line(f"Invoice {invoice.number} ({invoice.get_kind_display().lower()})",
                                      invoice.amount_due) for invoice in owed.invoices)
            statement.next_charge = terms.NextCharge(sub.next_retry_at, "retry", lines, owed.amount, ZERO, currency)
        _roll_forward(statement, sub, now)
    elif sub.status == Status.ACTIVE and sub.is_paid and sub.current_period_end is not None:
        statement.period = (sub.current_period_start, sub.current_period_end)
        _renewal(statement, sub, now)
    elif sub.status == Status.SUSPENDED and statement.owed is not None:
        # DUN-3: a new card voids the open renewal and pays a full new period from that day.
        statement.on_new_card = terms.next_charge_of(terms.reactivation_terms(sub, now), credit=statement.credit,
                                                     kind="reactivation", at=now)
    if usage is not None:
        statement.overage = _overage(account, usage, now)
    return statement


def _renewal(statement: Statement, sub: Subscription, now: datetime) -> None:
    """The next renewal of an active paid subscription, or why there is none."""
    if sub.cancel_at_period_end:
        statement.ends_at = terms.paid_until(sub)  # after the next period when it is already paid (REN-1)
        return
    upcoming = terms.next_terms(sub)
    if upcoming.plan.is_free:
        statement.ends_at = sub.current_period_end
        return
    if sub.pk is not None:
        issued = (Invoice.objects.filter(dedupe_key=terms.renewal_key(sub, upcoming.start))
                  .exclude(status=InvoiceStatus.VOID).first())
        if issued is not None and issued.status == InvoiceStatus.PAID:
            # REN-1: paid 24 hours ahead. The next charge is the one after the period it paid for.
            statement.paid_ahead = issued
            if now >= upcoming.start:  # the run has not rolled it over yet; the new period is in force
                statement.period = (upcoming.start, upcoming.end)
            upcoming = terms.following_terms(upcoming)
        elif issued is not None:
            return  # open: past due (the retry is the next charge), handled by the caller's status
    if upcoming.plan != sub.plan or upcoming.cycle != sub.cycle:
        statement.notes.append(f"From {statement.day(upcoming.start):%Y-%m-%d} you move to {upcoming.plan.name} "
                               f"({upcoming.cycle}), as you scheduled.")
    elif sub.status == Status.ACTIVE and terms.plan_price(upcoming.plan, upcoming.cycle) != sub.current_price:
        # CAT-4: a catalog price change applies from the next renewal.
        statement.notes.append(
            f"New price from {statement.day(upcoming.start):%Y-%m-%d}: "
            f"{format_money(terms.plan_price(upcoming.plan, upcoming.cycle), upcoming.plan.currency)} per "
            f"{terms.cycle_unit(upcoming.cycle)} (you paid {format_money(sub.current_price, upcoming.plan.currency)} "
            "for the current period).")
    statement.next_charge = terms.next_charge_of(upcoming, credit=statement.credit)


def _roll_forward(statement: Statement, sub: Subscription, now: datetime) -> None:
    """A past-due subscription's period ends while its renewal is open: once the end has passed,
    the period that renewal is for is the one in force (the run rolls it over)."""
    if sub.current_period_end is None or now < sub.current_period_end:
        return
    upcoming = terms.next_terms(sub)
    if Invoice.objects.filter(dedupe_key=terms.renewal_key(sub, upcoming.start)).exclude(
            status=InvoiceStatus.VOID).exists():
        statement.period = (upcoming.start, upcoming.end)


def _overage(account, usage: dict, now: datetime) -> Overage | None:
    if not usage.get("overage_per_1000") or not usage.get("projected_overage_amount"):
        return None
    utc = now.astimezone(UTC)
    year, month = divmod(utc.year * 12 + utc.month, 12)  # the next month (USE-1 months are UTC)
    invoiced_at = datetime(year, month + 1, 1, tzinfo=UTC)  # the overage run's 1st, 00:00 UTC (USE-3)
    return Overage(usage["projected_overage_sessions"], usage["projected_overage_amount"],
                   terms.local_date(account, invoiced_at))
