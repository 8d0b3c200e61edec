"""Renewals per second of the billing run (a benchmark, not a test).

    .venv/bin/python bench/billing_run.py                      # SQLite in-process, PostgreSQL 1 and 2 workers
    .venv/bin/python bench/billing_run.py --n 100000 --only postgres --workers 2

Creates N subscriptions due for renewal in a scratch database (tables made directly, no
migrations; each account has an owner, a sandbox card and no credit), then times `billing_run`
over them: in-process on SQLite, and on PostgreSQL with 1 and 2 worker processes started at the
same time (each claims rows with SKIP LOCKED). DEBUG is off, as in production. Prints renewals per
second (process start-up subtracted) and checks that each subscription was renewed exactly once.

At the period end a second run starts every renewed subscription's next period (the roll-over);
it is timed too.

The run announces the receipts through the events outbox; a worker renders and queues them
afterwards. That delivery is timed separately (`events.drain` in one process) and printed as
receipts per second, so that the run's figure hides no work.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def prepare(database_url: str, n: int) -> str:
    """A fresh scratch database holding `n` due subscriptions; returns its URL."""
    in_django(database_url, f"""
from django.db import connection
with connection.schema_editor() as editor:
    from django.apps import apps
    for model in apps.get_models():
        if model._meta.managed and not model._meta.proxy:
            editor.create_model(model)
from tests.bulk import make_due_subscriptions
make_due_subscriptions({n})
""")
    return database_url


def in_django(database_url: str, body: str) -> str:
    """Run `body` in a fresh Python process set up for Django on that database; returns its output."""
    code = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport django\ndjango.setup()\n{body}"
    return subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=_env(database_url),
                          stdout=subprocess.PIPE, text=True).stdout  # errors go to the terminal


def _env(database_url: str) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": database_url,
           "LOG_LEVEL": "WARNING", "BILLING_RUN_CHUNK_SIZE": "1000000", "DEBUG": "false"}
    env.pop("REDIS_URL", None)
    return env


def time_run(database_url: str, workers: int, now: str = "2026-04-30T00:00:00+00:00") -> float:
    cmd = [sys.executable, "manage.py", "billing_run", "--now", now]
    start = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=_env(database_url), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(workers)]
    outs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - start
    for p, out in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"billing_run failed:\n{out}")
    return elapsed


def startup(database_url: str) -> float:
    """A run with nothing due: the process start-up to subtract from the timings."""
    return min(time_run(database_url, 1, now="2026-04-02T00:00:00+00:00") for _ in range(2))


def check(database_url: str, n: int) -> None:
    in_django(database_url, f"""
from invoices.models import Invoice, SandboxCharge
renewals = Invoice.objects.filter(kind="renewal")
assert renewals.count() == {n}, renewals.count()
assert renewals.values("subscription_id").distinct().count() == {n}
assert SandboxCharge.objects.count() == {n}, SandboxCharge.objects.count()
assert renewals.filter(status="paid").count() == {n}
""")


def check_rolled(database_url: str, n: int) -> None:
    in_django(database_url, f"""
from datetime import datetime, UTC
from subscriptions.models import Subscription
rolled = Subscription.objects.filter(current_period_start=datetime(2026, 5, 1, tzinfo=UTC),
                                     current_period_end=datetime(2026, 6, 1, tzinfo=UTC), period_index=1)
assert rolled.count() == {n}, rolled.count()
""")


ROLLOVER_AT = "2026-05-01T00:00:00+00:00"  # the period end: every renewed subscription starts its next period


def time_drain(database_url: str, n: int) -> float:
    """Deliver the run's receipts from the outbox in one process, as one worker would (render the
    e-mail, log it, queue its send); returns the seconds."""
    out = in_django(database_url, f"""
import time
from notifications.models import EmailLog
from core import events
start = time.perf_counter()
delivered = events.drain(max_seconds=None)
elapsed = time.perf_counter() - start
assert delivered == {n}, delivered
assert EmailLog.objects.filter(kind="payment.succeeded").count() == {n}
print(elapsed)
""")
    return float(out.strip().splitlines()[-1])


def pg_database(name: str) -> str:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="due subscriptions (default 2000)")
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="run one database only")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="PostgreSQL worker counts")
    parser.add_argument("--no-receipts", dest="receipts", action="store_false",
                        help="skip timing the delivery of the receipts")
    args = parser.parse_args()
    print(f"billing_run benchmark: {args.n} due subscriptions, sandbox gateway, {os.cpu_count()} cores")
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            url = prepare(f"sqlite:///{tmp}/bench.sqlite3", args.n)
            base = startup(url)
            elapsed = time_run(url, 1) - base
            check(url, args.n)
            print(f"  SQLite, in-process:      {args.n / elapsed:8.0f} renewals/s  ({elapsed:.1f} s)")
            rolled = time_run(url, 1, now=ROLLOVER_AT) - base
            check_rolled(url, args.n)
            print(f"    then at the period end: {args.n / rolled:7.0f} roll-overs/s ({rolled:.1f} s)")
            if args.receipts:
                drain = time_drain(url, args.n)
                print(f"    receipts, 1 worker:    {args.n / drain:8.0f} e-mails/s   ({drain:.1f} s)")
    if args.only in (None, "postgres"):
        for workers in args.workers:
            url = prepare(pg_database("prorata_bench_run"), args.n)
            base = startup(url)
            elapsed = time_run(url, workers) - base
            check(url, args.n)
            print(f"  PostgreSQL, {workers} worker(s):  {args.n / elapsed:8.0f} renewals/s  ({elapsed:.1f} s)")
            rolled = time_run(url, workers, now=ROLLOVER_AT) - base
            check_rolled(url, args.n)
            print(f"    then at the period end: {args.n / rolled:7.0f} roll-overs/s ({rolled:.1f} s)")
            if args.receipts and workers == args.workers[0]:
                drain = time_drain(url, args.n)
                print(f"    receipts, 1 worker:    {args.n / drain:8.0f} e-mails/s   ({drain:.1f} s)")


if __name__ == "__main__":
    main()
