from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from metrics.closed import closed_months_match_ledger
from metrics.movements import LAG, stored_movements_match_replay
from metrics.tasks import refresh


class Command(BaseCommand):
    help = ("Rebuild the stored MRR movements of the revenue page from the audit log (ACC-3, ACC-5): every "
            f"account with --full, else the accounts with audit rows since the last build (up to {LAG} ago); "
            "and store the closed months' final figures.")

    def add_arguments(self, parser):
        parser.add_argument("--full", action="store_true", help="Replay every account's whole history")
        parser.add_argument("--check", action="store_true",
                            help="Compare the stored movements with a fresh replay; fail on any difference")
        parser.add_argument("--now", help="ISO-8601 moment to build at (default: the current time)")
        parser.add_argument("--schedule", action="store_true",
                            help="Create or update the 15-minute refresh schedule (django-q2), then build")

    def handle(self, *args, full=False, check=False, now=None, schedule=False, **options):
        if schedule:
            from metrics.tasks import ensure_schedule

            self.stdout.write(ensure_schedule())
        moment = timezone.now()
        if now:
            try:
                moment = datetime.fromisoformat(now)
            except ValueError:
                raise CommandError(f"--now {now!r} is not an ISO-8601 date or time, e.g. 2026-12-01T00:00") from None
            if timezone.is_naive(moment):
                moment = moment.replace(tzinfo=UTC)
        if check:
            problems = stored_movements_match_replay() + closed_months_match_ledger(moment)
            for problem in problems[:20]:
                self.stdout.write(problem)
            if problems:
                raise CommandError(f"{len(problems)} stored figure(s) differ from the ledger; run --full.")
            self.stdout.write("The stored movements and closed months match the ledger.")
            return
        self.stdout.write(refresh(moment, full=full))
