from django.core.management.base import BaseCommand, CommandError
from django.utils.dateparse import parse_datetime

from notifications.services import email_retry_due


class Command(BaseCommand):
    help = "Send logged e-mails whose retry is due, and queued ones the task broker never ran (NOT-3)."

    def add_arguments(self, parser):
        parser.add_argument("--now", help="ISO-8601 datetime to act as the current time (replays and tests).")

    def handle(self, *args, **options):
        now = parse_datetime(options["now"]) if options["now"] else None
        if options["now"] and now is None:
            raise CommandError(f"--now: not an ISO-8601 datetime: {options['now']!r}")
        counts = email_retry_due(now=now)
        self.stdout.write(f"sent {counts['sent']}, failed {counts['failed']}, skipped {counts['skipped']}")
