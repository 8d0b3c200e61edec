from django.conf import settings
from django.core.management.base import BaseCommand
from django_q.models import Schedule

from invoices.stripe_schedules import ensure_reconcile_schedule
from metrics import tasks as metrics_tasks
from ops import ledger


def ensure_schedules() -> list[str]:
    """Create or update the django-q2 schedules; idempotent (run it on every deploy). They show in
    the admin under "Scheduled tasks"."""
    every = [
        # (name, function, minutes between runs)
        ("billing-run", "subscriptions.tasks.scheduled_run", settings.BILLING_RUN_EVERY_MINUTES),
        ("email-retries", "notifications.tasks.scheduled_email_retries", 10),  # NOT-3: failed sends again
        ("usage-events-prune", "usage.tasks.scheduled_usage_events_prune", 60),  # USE-1: old replay IDs
    ]
    done = []
    for name, func, minutes in every:
        Schedule.objects.update_or_create(
            name=name, defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": minutes, "repeats": -1}
        )
        done.append(f"{name}: {func} every {minutes} min")
    done.append(ensure_reconcile_schedule())  # PAY-2: settle unknown outcomes and missed webhooks daily
    done.append(metrics_tasks.ensure_schedule())  # ACC-5: the revenue figures' stored rows, every 15 min
    done.append(ledger.ensure_schedule())  # OPS-2: the ledger's invariants, nightly
    return done


class Command(BaseCommand):
    help = ("Create or update the scheduled tasks (billing run, e-mail retries, usage-event pruning, "
            "payment reconciliation, the revenue figures' refresh, the nightly ledger check).")

    def handle(self, *args, **options):
        for line in ensure_schedules():
            self.stdout.write(line)
