"""Reads for the billing page's usage panel (USE-2)."""

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from .models import UsageMonth
from .usage import month_included, month_label, month_start, overage_amount


def projected_sessions(sessions: int, now: datetime) -> int:
    """This month's sessions extrapolated linearly to the month's end (UTC).

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
    """This month's usage against the quota and the projected overage (USE-2, USE-3).

    sessions_included None means unlimited. Amounts are Decimal in the plan's currency.
    """
    now = now or timezone.now()
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

    properties_limit = plan.limit_properties if plan else None
    if properties_limit is not None and subscription:
        properties_limit += subscription.extra_properties
    overage_sessions = max(0, sessions - included) if included is not None else 0
    projected_overage_sessions = max(0, projected - included) if included is not None else 0
    return {
        "month": month_label(month),
        "plan": plan.code if plan else None,
        "currency": plan.currency if plan else "USD",
        "sessions_used": sessions,
        "sessions_included": included,
        "percent": (sessions * 100 // included) if included else None,
        "hard_capped": hard_capped,
        "quota_exhausted": bool(hard_capped and included is not None and sessions >= included),
        "properties_used": account.properties.live().count(),
        "properties_limit": properties_limit,
        "integrations_used": account.integrations.filter(disconnected_at__isnull=True).count(),
        "integrations_limit": plan.limit_integrations if plan else None,
        "overage_per_1000": price,
        "overage_sessions": overage_sessions,
        "overage_amount": overage_amount(sessions, included, price),
        "projected_sessions": projected,
        "projected_overage_sessions": projected_overage_sessions,
        "projected_overage_amount": overage_amount(projected, included, price) if price else Decimal("0.00"),
    }
