from django.core.management.base import BaseCommand, CommandError

from api.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for the usage and entitlements API. The key is printed once and never stored."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who uses the key, e.g. tracking-prod.")

    def handle(self, *args, name, **options):
        try:
            key, raw = api_key_create(name=name)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stderr.write(f"Created API key {key.name!r} ({key.prefix}…). Store it now: it is not shown again.")
        self.stdout.write(raw)
