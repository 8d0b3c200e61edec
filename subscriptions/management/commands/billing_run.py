from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from subscriptions.scheduler import run


class Command(BaseCommand):
    help = "Run everything due: trials, renewals, scheduled changes, dunning, suspension, overage."

    def add_arguments(self, parser):
        parser.add_argument("--now", help="ISO-8601 moment to run at (default: the current time)")
        parser.add_argument("--dry-run", action="store_true", help="Show what would happen, with amounts")
        parser.add_argument("--fan-out", action="store_true", help="Hand chunks to a running django-q2 cluster")

    def handle(self, *args, now=None, dry_run=False, fan_out=False, **options):
        moment = timezone.now()
        if now:
            try:
                moment = datetime.fromisoformat(now)
            except ValueError:
                raise CommandError(f"--now {now!r} is not an ISO-8601 date or time, e.g. 2026-12-01T00:00") from None
            if timezone.is_naive(moment):
                moment = moment.replace(tzinfo=UTC)
        report = run(moment, dry_run=dry_run, fan_out=True if fan_out else None)
        self.stdout.write(str(report))
        if report.failures:
            raise CommandError(f"{len(report.failures)} item(s) failed; see above.")
