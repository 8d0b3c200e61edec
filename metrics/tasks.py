"""django-q2 entry points for the revenue figures' stored movements (docs/metrics.md)."""

from datetime import datetime

from core.clock import clock

from .movements import movements_refresh

REFRESH_MINUTES = 15


def refresh(now: datetime | None = None, *, full: bool = False) -> str:
    """Store the MRR movements recorded since the last refresh (up to an hour ago) and the closed
    months' final figures; `full` rebuilds both. The page is exact without it; it keeps it fast."""
    from .closed import closed_months_refresh
    from .models import ClosedMonth

    now = clock(now)
    result = movements_refresh(now, full=full)
    if full:
        ClosedMonth.objects.all().delete()
    stored = closed_months_refresh(now)
    return f"{result} Stored {stored} closed month figure(s)."


def scheduled_refresh() -> str:
    return refresh()


def ensure_schedule() -> str:
    """Create or update the refresh's schedule; idempotent (`setup_schedules` calls it on every
    deploy; `metrics_rebuild --schedule` too)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(name="metrics-refresh", defaults={
        "func": "metrics.tasks.scheduled_refresh", "schedule_type": Schedule.MINUTES, "minutes": REFRESH_MINUTES,
        "repeats": -1})
    return f"metrics-refresh: metrics.tasks.scheduled_refresh every {REFRESH_MINUTES} min"
