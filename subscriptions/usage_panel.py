"""Reads of the usage panel and the usage history (USE-2): this month's sessions, what they are
projected to cost, and the months and days behind them. Nothing here changes state; sessions come
from the monthly and daily counters metering writes (usage/), read as rows of accounts."""

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum

from accounts.models import UsageDay, UsageMonth
from accounts.months import month_included, month_label, month_start
from core.clock import clock
from invoices.models import InvoiceKind, InvoiceLine

from . import pricing

# --- usage (USE-2) -----------------------------------------------------------------------------


def projected_sessions(sessions: int, now: datetime) -> int:
    """This month's sessions extrapolated linearly to the month's end (UTC, USE-1).

    3,000 sessions by 2026-11-10T00:00Z (9 of 30 days elapsed) -> 3,000 x 30 / 9 = 10,000
    """
    start = datetime.combine(month_start(now), datetime.min.time(), tzinfo=UTC)
    days = calendar.monthrange(start.year, start.month)[1]
    elapsed = now.astimezone(UTC) - start
    if sessions == 0 or elapsed <= timedelta(0):
        return sessions
    month_length = timedelta(days=days)
    # Less than a day elapsed: extrapolating from a few hours is noise; count one day.
    elapsed = max(elapsed, timedelta(days=1))
    return max(sessions, round(sessions * (month_length / elapsed)))


def usage_summary(account, now: datetime | None = None) -> dict:
    """This month's usage against the quota and the projected overage (USE-2, USE-3), priced as
    the overage invoice will price it (`pricing.overage_amount`).

    sessions_included None means unlimited. Amounts are Decimal in the plan's currency.
    """
    now = clock(now)
    subscription = account.subscription
    plan = subscription.plan if subscription else None
    month = month_start(now)
    row = UsageMonth.objects.filter(account=account, month=month).values_list("sessions", "sessions_included").first()
    plan_limit = plan.limit_sessions if plan else None
    sessions = row[0] if row else 0
    included = month_included(row[1], plan_limit) if row else plan_limit
    hard_capped = plan.hard_capped if plan else True
    price = None if hard_capped or plan is None else plan.overage_per_1000
    projected = projected_sessions(sessions, now)
    if hard_capped and included is not None:
        projected = min(projected, included)  # USE-4: nothing beyond the cap is counted
    overage_sessions = max(0, sessions - included) if included is not None else 0
    projected_overage_sessions = max(0, projected - included) if included is not None else 0
    return {
        "month": month_label(month),
        "month_name": f"{month:%B %Y}",
        "plan": plan.code if plan else None,
        "currency": plan.currency if plan else "USD",
        "sessions_used": sessions,
        "sessions_included": included,
        # USE-3: the month's quota is the highest of the plans active in it, perhaps an earlier one's
        "plan_sessions_limit": plan_limit,
        "percent": (sessions * 100 // included) if included else None,
        "hard_capped": hard_capped,
        "quota_exhausted": bool(hard_capped and included is not None and sessions >= included),
        "properties_used": account.properties.live().count(),
        "properties_limit": subscription.property_limit if subscription else None,
        "integrations_used": account.integrations.filter(disconnected_at__isnull=True).count(),
        "integrations_limit": plan.limit_integrations if plan else None,
        "overage_per_1000": price,
        "overage_sessions": overage_sessions,
        "overage_amount": pricing.overage_amount(sessions, included, price),
        "projected_sessions": projected,
        "projected_overage_sessions": projected_overage_sessions,
        "projected_overage_amount": pricing.overage_amount(projected, included, price),
    }


@dataclass
class UsageBar:
    label: str
    used: int
    limit: int | None  # None: unlimited
    percent: int  # of the bar drawn, 0..100
    level: str  # "" | "warn" (80%+) | "bad" (100%+)

    @property
    def text(self) -> str:
        return f"{self.used:,}" if self.limit is None else f"{self.used:,} of {self.limit:,}"


def usage_bars(usage: dict) -> list[UsageBar]:
    bars = []
    for label, used, limit in (("Sessions this month", usage["sessions_used"], usage["sessions_included"]),
                               ("Properties", usage["properties_used"], usage["properties_limit"]),
                               ("Integrations", usage["integrations_used"], usage["integrations_limit"])):
        share = (used * 100 // limit if limit else 100) if limit is not None else 0
        level = "bad" if limit is not None and share >= 100 else "warn" if share >= 80 else ""
        bars.append(UsageBar(label, used, limit, min(share, 100), level))
    return bars


# --- usage history (USE-2) ---------------------------------------------------------------------

USAGE_MONTHS_SHOWN = 24


@dataclass(frozen=True)
class UsageMonthRow:
    """One calendar month (UTC, USE-1): sessions counted, the quota, and the overage invoiced for it."""

    month: date
    sessions: int
    included: int | None  # None: unlimited
    current: bool
    invoiced: tuple = ()  # (invoice id, number, amount) of the overage lines billing this month (USE-3)

    @property
    def over(self) -> int:
        return max(0, self.sessions - self.included) if self.included is not None else 0


@dataclass(frozen=True)
class UsageDayRow:
    day: date
    sessions: int
    to_date: int  # the month's running total at the end of the day
    within: int  # of it, within the quota
    over: int  # and over it


@dataclass
class UsageHistory:
    month: UsageMonthRow  # the month shown day by day
    months: list[UsageMonthRow]  # newest first
    days: list[UsageDayRow]
    overage_per_1000: Decimal | None
    currency: str


def usage_months_range(account, now: datetime) -> tuple[date, date]:
    """The months a customer may look at: from the account's first month (or its first counted
    usage, if earlier) to the current one (UTC)."""
    first = month_start(account.created_at)
    earliest = UsageMonth.objects.filter(account=account).order_by("month").values_list("month", flat=True).first()
    return min(first, earliest) if earliest else first, month_start(now)


def usage_history(account, month: date | None = None, now: datetime | None = None,
                  usage: dict | None = None) -> UsageHistory:
    """Past months of usage against their quota and what their overage cost (USE-2, USE-3), and
    the days of `month` (default: the current one) with the running total against its quota.
    Months are UTC calendar months (USE-1); the month's total and quota are the billing counters
    (`UsageMonth`, the current month as `usage_summary` reads it), the days are `UsageDay` rows."""
    now = clock(now)
    usage = usage or usage_summary(account, now)
    current = month_start(now)
    month = month or current
    rows = {row.month: row for row in UsageMonth.objects.filter(account=account).order_by("-month")
            [:USAGE_MONTHS_SHOWN]}
    if month not in rows and month != current:
        extra = UsageMonth.objects.filter(account=account, month=month).first()
        if extra is not None:
            rows[month] = extra
    starts = {datetime(m.year, m.month, 1, tzinfo=UTC): m for m in {*rows, current, month}}
    invoiced: dict[date, list] = {}
    for start, invoice_id, number, amount in (
            InvoiceLine.objects.filter(invoice__account=account, invoice__kind=InvoiceKind.OVERAGE,
                                       invoice__number__isnull=False, period_start__in=list(starts))
            .order_by("invoice__issued_at", "invoice_id").values_list("period_start", "invoice_id", "invoice__number",
                                                                       "amount")):
        invoiced.setdefault(starts[start.astimezone(UTC)], []).append((invoice_id, number, amount))

    def row_of(m: date) -> UsageMonthRow:
        if m == current:
            return UsageMonthRow(m, usage["sessions_used"], usage["sessions_included"], True,
                                 tuple(invoiced.get(m, ())))
        stored = rows.get(m)
        return UsageMonthRow(m, stored.sessions if stored else 0, stored.sessions_included if stored else None,
                             False, tuple(invoiced.get(m, ())))

    months = [row_of(m) for m in sorted({*rows, current}, reverse=True)][:USAGE_MONTHS_SHOWN]
    shown = row_of(month)
    last_day = (now.astimezone(UTC).date() if month == current
                else date(month.year, month.month, calendar.monthrange(month.year, month.month)[1]))
    per_day = dict(UsageDay.objects.filter(account=account, day__gte=month, day__lte=last_day)
                   .values_list("day").annotate(total=Sum("sessions")).values_list("day", "total"))
    days, to_date, day = [], 0, month
    while day <= last_day:
        sessions = int(per_day.get(day) or 0)
        to_date += sessions
        within = to_date if shown.included is None else min(to_date, shown.included)
        days.append(UsageDayRow(day, sessions, to_date, within, to_date - within))
        day += timedelta(days=1)
    return UsageHistory(shown, months, days, usage["overage_per_1000"], usage["currency"])
