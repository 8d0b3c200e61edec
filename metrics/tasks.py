"""django-q2 entry points for the revenue figures' stored movements (docs/metrics.md)."""

from .movements import movements_refresh

REFRESH_MINUTES = 15


def scheduled_refresh() -> str:
    """Store the MRR movements recorded since the last refresh (up to an hour ago). The page is
    exact without it; the refresh keeps it fast."""
    return str(movements_refresh())


def ensure_schedule() -> str:
    """Create or update the refresh's schedule; idempotent (`setup_schedules` calls it)."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(name="metrics-refresh", defaults={
        "func": "metrics.tasks.scheduled_refresh", "schedule_type": Schedule.MINUTES, "minutes": REFRESH_MINUTES,
        "repeats": -1})
    return f"metrics-refresh: metrics.tasks.scheduled_refresh every {REFRESH_MINUTES} min"
