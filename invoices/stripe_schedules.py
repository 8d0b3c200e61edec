"""The daily reconciliation in django-q2 (the lead's `setup_schedules` calls
`ensure_reconcile_schedule()` on every deploy)."""

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

SCHEDULE_NAME = "reconcile-payments"
# Each run looks back further than a day, so a run that failed or was skipped is covered next time.
LOOKBACK_DAYS = 3
RUN_AT_HOUR_UTC = 3  # a quiet hour, away from the renewal charges made through the day


def ensure_reconcile_schedule() -> str:
    """Create or update the daily schedule; idempotent. Returns a line for setup_schedules' output."""
    from django_q.models import Schedule

    now = timezone.now()
    first_run = now.replace(hour=RUN_AT_HOUR_UTC, minute=0, second=0, microsecond=0)
    if first_run <= now:
        first_run += timedelta(days=1)
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "invoices.stripe_schedules.scheduled_reconcile",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
        },
        create_defaults={  # a later deploy keeps the time of day already chosen
            "func": "invoices.stripe_schedules.scheduled_reconcile",
            "schedule_type": Schedule.DAILY,
            "repeats": -1,
            "next_run": first_run,
        },
    )
    return f"{SCHEDULE_NAME}: invoices.stripe_schedules.scheduled_reconcile daily at {RUN_AT_HOUR_UTC:02d}:00 UTC"


def scheduled_reconcile() -> str:
    """The task: `reconcile_payments --since <3 days ago>`; its output is kept as the task's result."""
    from io import StringIO

    out = StringIO()
    since = (timezone.now() - timedelta(days=LOOKBACK_DAYS)).date().isoformat()
    call_command("reconcile_payments", since=since, stdout=out, stderr=out)
    return out.getvalue()
