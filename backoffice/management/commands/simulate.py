import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from backoffice.simulation import START, simulate
from metrics.report import revenue_report


class Command(BaseCommand):
    help = ("Fast-forward N accounts through D days on a scratch database (billing run every simulated "
            "hour), then check and print the ledger invariants. Deterministic for a given --seed.")

    def add_arguments(self, parser):
        parser.add_argument("--accounts", type=int, default=200)
        parser.add_argument("--days", type=int, default=400)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--here", action="store_true",
                            help="Use the configured database instead of a scratch one (it must be empty)")

    def handle(self, *args, accounts, days, seed, here, **options):
        if accounts < 1 or days < 1:
            raise CommandError("--accounts and --days must be at least 1.")
        if not here:
            return self._in_scratch(accounts, days, seed)

        started = time.perf_counter()
        result = simulate(accounts, days, seed)
        self.stdout.write(str(result))
        self.stdout.write(f"({time.perf_counter() - started:.1f} s)")
        self.stdout.write("\n" + revenue_report(START + timedelta(days=days)))  # the revenue page's figures
        if not result.ok:
            raise CommandError("Ledger invariants violated; see above.")

    def _in_scratch(self, accounts, days, seed):
        """Re-run this command against a fresh SQLite file whose tables are made directly."""
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp}/simulation.sqlite3",
                   "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "config.settings.local"),
                   "EMAIL_URL": "dummymail://", "LOG_LEVEL": "ERROR"}
            env.pop("REDIS_URL", None)
            self.stdout.write(f"Scratch database: {tmp}/simulation.sqlite3")
            code = ("import django; django.setup()\n"
                    "from django.apps import apps\nfrom django.db import connection\n"
                    "with connection.schema_editor() as e:\n"
                    "    [e.create_model(m) for m in apps.get_models() if m._meta.managed and not m._meta.proxy]\n")
            subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=settings.BASE_DIR)
            done = subprocess.run([sys.executable, "manage.py", "simulate", "--here", "--accounts", str(accounts),
                                   "--days", str(days), "--seed", str(seed)], env=env, cwd=settings.BASE_DIR)
            if done.returncode:
                raise CommandError("The simulation failed; see above.")
