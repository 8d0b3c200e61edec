"""The month's quota (USE-3, USE-4, USE-6): how many more sessions count, which alert thresholds a
batch crosses, the plan each account is on for metering, and the month's included sessions raised
when a plan starts."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from accounts.models import UsageMonth
from accounts.months import month_included, month_start
from core.clock import clock
from subscriptions.models import Status, Subscription

ALERT_THRESHOLDS = (80, 100)  # USE-6, percent of the month's included sessions


def hard_cap_room(sessions: int, included: int | None, hard_capped: bool) -> int | None:
    """How many more sessions count this month; None for no cap (USE-4).

    Free: 1,000 included, 990 counted -> 10 more count; the 11th is not counted.
    """
    if not hard_capped or included is None:
        return None
    return max(0, included - sessions)


def alert_thresholds_crossed(before: int, after: int, included: int | None) -> list[int]:
    """Thresholds (80, 100 %) reached by going from `before` to `after` sessions (USE-6).

    10,000 included: 7,999 -> 8,000 crosses 80; 7,000 -> 10,000 crosses 80 and 100.
    No alerts when nothing is included (unlimited or a zero quota: a percentage means nothing).
    """
    if not included:
        return []
    return [t for t in ALERT_THRESHOLDS if before * 100 < t * included <= after * 100]


@dataclass(frozen=True)
class PlanQuota:
    code: str
    limit_sessions: int | None
    hard_capped: bool


def current_plans(account_ids: set[int]) -> dict[int, PlanQuota | None]:
    """account id -> the plan of its current subscription (`is_current`), in one query; None when that
    subscription has ended."""
    plans: dict[int, PlanQuota | None] = {}
    rows = (
        Subscription.objects.current().filter(account_id__in=account_ids)
        .values_list("account_id", "status", "plan__code", "plan__limit_sessions", "plan__overage_per_1000")
    )
    for account_id, status, code, limit, overage in rows:
        if account_id not in plans:
            plans[account_id] = None if status == Status.CANCELED else PlanQuota(code, limit, overage is None)
    return plans


@transaction.atomic
def usage_month_note_plan(account_id: int, *, now: datetime | None = None) -> None:
    """Raise this month's included sessions to the current plan's quota (USE-3: the highest of
    the plans active in the month). Called when a subscription starts or changes plan."""
    now = clock(now)
    plan = current_plans({account_id}).get(account_id)
    if plan is None:
        return
    month = month_start(now)
    UsageMonth.objects.bulk_create(
        [UsageMonth(account_id=account_id, month=month, sessions=0, sessions_included=plan.limit_sessions)],
        ignore_conflicts=True,
    )
    row = UsageMonth.objects.select_for_update().get(account_id=account_id, month=month)
    included = month_included(row.sessions_included, plan.limit_sessions)
    if included != row.sessions_included:
        UsageMonth.objects.filter(pk=row.pk).update(sessions_included=included)
