from django.conf import settings
from django.core.management.base import BaseCommand
from django_q.models import Schedule

SCHEDULES = [
    # (name, function, minutes between runs)
    ("billing-run", "subscriptions.tasks.scheduled_run", None),
]


def ensure_schedules() -> list[str]:
    """Create or update the django-q2 schedules; idempotent (run it on every deploy)."""
    done = []
    for name, func, minutes in SCHEDULES:
        minutes = minutes or settings.BILLING_RUN_EVERY_MINUTES
        Schedule.objects.update_or_create(
            name=name,
            defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1},
        )
        done.append(f"{name}: {func} every {minutes} min")
    return done


class Command(BaseCommand):
    help = "Create or update the scheduled tasks (billing run, e-mail retries, reconciliation)."

    def handle(self, *args, **options):
        for line in ensure_schedules():
            self.stdout.write(line)
