from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from subscriptions.scheduler import run

# The moments a run may be asked to act at. Outside them the engine's date arithmetic (a year's
# period, retry days, time zones) overflows Python's datetime, and no real run needs them: a --now
# of year 9999 or 0001 is a typo, refused before anything is read or written (issue 16).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)


def moment_parse(text: str) -> datetime:
    """--now as an aware datetime (naive means UTC), or CommandError saying what to give instead."""
    if not text.strip():
        raise CommandError("--now is empty. Give an ISO-8601 moment like 2026-12-01T00:00, or leave --now out "
                           "to run at the current time. Nothing was run.")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(f"--now {text!r} is not an ISO-8601 date or time, e.g. 2026-12-01T00:00. "
                           "Nothing was run.") from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    try:
        in_range = EARLIEST <= moment <= LATEST
    except OverflowError:  # an offset that pushes the moment past year 1 or 9999
        in_range = False
    if not in_range:
        raise CommandError(f"--now {text!r} is outside the moments a billing run can act at "
                           f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d %H:%M:%S} UTC). Nothing was run.")
    return moment


class Command(BaseCommand):
    help = "Run everything due: trials, renewals, scheduled changes, dunning, suspension, overage."

    def add_arguments(self, parser):
        parser.add_argument("--now", help="ISO-8601 moment to run at (default: the current time)")
        parser.add_argument("--dry-run", action="store_true", help="Show what would happen, with amounts")
        parser.add_argument("--fan-out", action="store_true", help="Hand chunks to a running django-q2 cluster")

    def handle(self, *args, now=None, dry_run=False, fan_out=False, **options):
        moment = timezone.now() if now is None else moment_parse(now)
        report = run(moment, dry_run=dry_run, fan_out=True if fan_out else None)
        self.stdout.write(str(report))
        if report.failures:
            raise CommandError(f"{len(report.failures)} item(s) failed; see above.")
