"""The usage month (USE-1, USE-3): which calendar month a session counts in, its label, and the
sessions it includes. Pure, no ORM or clock: read by the engine (the billing page's usage panel and
the overage) and by metering (usage/), which sits above the engine."""

from datetime import UTC, date, datetime


def month_start(moment: datetime) -> date:
    """The first day of `moment`'s calendar month in UTC (USE-1).

    2026-12-01T00:30+01:00 is 2026-11-30T23:30Z -> 2026-11-01
    """
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def month_included(existing: int | None, plan_limit: int | None) -> int | None:
    """The month's included sessions: the highest quota of the plans active in it (USE-3).
    None is unlimited, so it wins.

    existing 1,000 (Free earlier this month), plan 10,000 (Personal now) -> 10,000
    existing 10,000, plan 1,000 (downgraded) -> 10,000
    """
    if existing is None or plan_limit is None:
        return None
    return max(existing, plan_limit)
