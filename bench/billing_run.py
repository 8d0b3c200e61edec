"""Renewals per second of the billing run (a benchmark, not a test).

    .venv/bin/python bench/billing_run.py                      # SQLite in-process, PostgreSQL 1 and 2 workers
    .venv/bin/python bench/billing_run.py --n 100000 --only postgres --workers 2
    .venv/bin/python bench/billing_run.py --n 10000 --only postgres --floor --rounds 2   # against the floor

Creates N subscriptions due for renewal in a scratch database (tables made directly, no
migrations; each account has an owner, a sandbox card and no credit; on PostgreSQL once, as a
template that every run copies), then times `billing_run` over them: in-process on SQLite, and on
PostgreSQL with 1 and 2 worker processes started at the same time (each claims rows with SKIP
LOCKED). DEBUG is off, as in production. Checks that each subscription was renewed exactly once.

Time is measured from the moment the first worker is ready to claim (Django set up, connected)
to the moment the last one is done, read from each worker's own clock: no start-up to subtract,
which was wrong with two processes starting on loaded cores. Each worker also reports its own CPU
time, its server process's CPU time and its peak memory (`maxrss`), which depend much less on the
machine's load than the wall time: printed per 1,000 renewals.

`--baseline DIR` times another checkout's billing_run (a worktree of main, say) on its own fresh
copy just before this tree's in each round, for an A/B in the same run on a noisy machine.

`--floor` runs, interleaved with Prorata on fresh copies of the same database (floor, Prorata,
floor, Prorata …), `bench/billing_floor.py`: a plain psycopg program that writes the same rows in
the same three transactions per batch. Each pair prints Prorata's share of the floor's rate.

At the period end a second run starts every renewed subscription's next period (the roll-over);
it is timed too (not with --floor).

The run announces the receipts through the events outbox; a worker renders and queues them
afterwards. That delivery is timed separately (`events.drain` in one process) and printed as
receipts per second, so that the run's figure hides no work.

The scratch database is `--db-name` (default prorata_bench_run) and its template `<name>_tpl`:
give your own name when someone else may be running the bench on the same server.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
RENEW_AT = "2026-04-30T00:00:00+00:00"  # 24 hours before the bench's periods end
ROLLOVER_AT = "2026-05-01T00:00:00+00:00"  # the period end: every renewed subscription starts its next period


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
from invoices.tax_rates import EU_RATES, tax_rates_load_file
tax_rates_load_file(EU_RATES)  # for a run with SELLER_COUNTRY=DE (TAX-2: every renewal taxed at 19 %)
if connection.vendor == "postgresql":
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
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


# One billing_run, as `manage.py billing_run --now …` runs it, with the clock started once Django is
# set up and connected (the moment a long-lived worker would claim), and its costs reported.
WORKER = """
import io, json, resource, sys, time
sys.path.insert(0, {root!r})
sys.path.insert(0, {bench!r})
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from billing_floor import process_cpu
import subscriptions.management.commands.billing_run  # noqa: F401  imported, as a worker has it
connection.ensure_connection()
backend = None
if connection.vendor == "postgresql":
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
usage, server = resource.getrusage(resource.RUSAGE_SELF), process_cpu(backend) if backend else 0.0
ready = time.time()
out = io.StringIO()
call_command("billing_run", "--now", {now!r}, stdout=out)
done = time.time()
after = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"ready": ready, "done": done, "report": out.getvalue(), "maxrss_kb": after.ru_maxrss,
                  "cpu": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
                  "server_cpu": (process_cpu(backend) - server) if backend else 0.0}}))
"""


class Timing:
    """A run of one or more workers: wall seconds from the first ready to the last done, and the
    workers' CPU, their server processes' CPU and the largest peak memory."""

    def __init__(self, results: list[dict]):
        self.seconds = max(r["done"] for r in results) - min(r["ready"] for r in results)
        self.cpu = sum(r["cpu"] for r in results)
        self.server_cpu = sum(r.get("server_cpu", 0.0) for r in results)
        self.maxrss_mb = max(r["maxrss_kb"] for r in results) / 1024
        self.results = results

    def describe(self, n: int, what: str = "renewals") -> str:
        per = 1000 / n
        return (f"{n / self.seconds:8.0f} {what}/s ({self.seconds:.1f} s; per 1,000: worker CPU "
                f"{self.cpu * per:.2f} s, server CPU {self.server_cpu * per:.2f} s; peak {self.maxrss_mb:.0f} MB)")


def time_run(database_url: str, workers: int, now: str = RENEW_AT, root: Path = ROOT) -> Timing:
    """`workers` billing_run processes of the tree at `root` (another checkout: `--baseline`)."""
    code = WORKER.format(root=str(root), bench=str(ROOT / "bench"), now=now)
    return _workers([[sys.executable, "-c", code]] * workers, database_url, root)


def time_floor(database_url: str, workers: int, now: str = RENEW_AT) -> Timing:
    cmd = [sys.executable, str(ROOT / "bench" / "billing_floor.py"), "--url", database_url, "--now", now]
    return _workers([cmd] * workers, database_url)


def _workers(cmds: list[list[str]], database_url: str, root: Path = ROOT) -> Timing:
    procs = [subprocess.Popen(cmd, cwd=root, env=_env(database_url), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd in cmds]
    outs = [p.communicate() for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise SystemExit(f"worker failed:\n{out}\n{err}")
    return Timing([json.loads(out.strip().splitlines()[-1]) for out, _err in outs])


def check(database_url: str, n: int) -> None:
    in_django(database_url, f"""
from invoices.models import Invoice, SandboxCharge
renewals = Invoice.objects.filter(kind="renewal")
assert renewals.count() == {n}, renewals.count()
assert renewals.values("subscription_id").distinct().count() == {n}
assert SandboxCharge.objects.count() == {n}, SandboxCharge.objects.count()
assert renewals.filter(status="paid").count() == {n}
numbers = sorted(int(number.split("-")[1]) for number in renewals.values_list("number", flat=True))
assert numbers == list(range(1, {n} + 1)), "numbers not gapless"
""")


def check_rolled(database_url: str, n: int) -> None:
    in_django(database_url, f"""
from datetime import datetime, UTC
from subscriptions.models import Subscription
rolled = Subscription.objects.filter(current_period_start=datetime(2026, 5, 1, tzinfo=UTC),
                                     current_period_end=datetime(2026, 6, 1, tzinfo=UTC), period_index=1)
assert rolled.count() == {n}, rolled.count()
""")


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


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)


def pg_url(name: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{name}"


def pg_template(name: str, n: int) -> str:
    """The template database `<name>_tpl` with `n` due subscriptions, made once per bench run."""
    template = f"{name}_tpl"
    pg_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{template}"')
    prepare(pg_url(template), n)
    return template


def pg_copy(template: str, name: str) -> str:
    """A fresh copy of the template: every run starts from the same rows."""
    pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return pg_url(name)


def loadavg() -> str:
    return open("/proc/loadavg").read().split(" ", 3)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="due subscriptions (default 2000)")
    parser.add_argument("--only", choices=["sqlite", "postgres"], help="run one database only")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="PostgreSQL worker counts")
    parser.add_argument("--rounds", type=int, default=1, help="repeat each PostgreSQL measurement (default 1)")
    parser.add_argument("--floor", action="store_true",
                        help="interleave the plain-psycopg floor with each PostgreSQL run and print the ratios")
    parser.add_argument("--db-name", default="prorata_bench_run",
                        help="PostgreSQL scratch database (and <name>_tpl); default prorata_bench_run")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another checkout (e.g. a worktree of main): its billing_run is timed right after "
                             "this tree's in each PostgreSQL round, on a fresh copy (A/B in the same run)")
    parser.add_argument("--no-receipts", dest="receipts", action="store_false",
                        help="skip timing the delivery of the receipts")
    args = parser.parse_args()
    print(f"billing_run benchmark: {args.n} due subscriptions, sandbox gateway, {os.cpu_count()} cores, "
          f"load average {loadavg()}", flush=True)
    if args.only in (None, "sqlite") and not args.floor:
        with tempfile.TemporaryDirectory() as tmp:
            url = prepare(f"sqlite:///{tmp}/bench.sqlite3", args.n)
            timing = time_run(url, 1)
            check(url, args.n)
            print(f"  SQLite, in-process:     {timing.describe(args.n)}", flush=True)
            rolled = time_run(url, 1, now=ROLLOVER_AT)
            check_rolled(url, args.n)
            print(f"    then at the period end: {rolled.describe(args.n, 'roll-overs')}", flush=True)
            if args.receipts:
                drain = time_drain(url, args.n)
                print(f"    receipts, 1 worker:    {args.n / drain:8.0f} e-mails/s   ({drain:.1f} s)")
    if args.only == "sqlite":
        return
    template = pg_template(args.db_name, args.n)
    try:
        for workers in args.workers:
            ratios, rates, floors, baselines = [], [], [], []
            for round_ in range(1, args.rounds + 1):
                if args.floor:  # A: the floor, then B: Prorata, on fresh copies of the same rows
                    url = pg_copy(template, args.db_name)
                    load = loadavg()
                    floor = time_floor(url, workers)
                    check(url, args.n)
                    floors.append(args.n / floor.seconds)
                    print(f"  PostgreSQL, {workers} worker(s), round {round_}, load {load}:\n"
                          f"    floor:   {floor.describe(args.n)}", flush=True)
                if args.baseline:  # the other checkout, on its own fresh copy, just before this tree
                    url = pg_copy(template, args.db_name)
                    load = loadavg()
                    base = time_run(url, workers, root=args.baseline.resolve())
                    check(url, args.n)
                    baselines.append(args.n / base.seconds)
                    head = "" if args.floor else f"  PostgreSQL, {workers} worker(s), round {round_}, load {load}:\n"
                    print(f"{head}    baseline: {base.describe(args.n)}", flush=True)
                url = pg_copy(template, args.db_name)
                load = loadavg()
                timing = time_run(url, workers)
                check(url, args.n)
                rates.append(args.n / timing.seconds)
                versus = f"; this tree / baseline {rates[-1] / baselines[-1]:.2f}" if args.baseline else ""
                if args.floor:
                    ratios.append(rates[-1] / floors[-1])
                    print(f"    Prorata: {timing.describe(args.n)}\n    ratio {ratios[-1]:.2f} (load {loadavg()})"
                          f"{versus}", flush=True)
                    continue
                print(f"  PostgreSQL, {workers} worker(s), load {load}: {timing.describe(args.n)}{versus}", flush=True)
                rolled = time_run(url, workers, now=ROLLOVER_AT)
                check_rolled(url, args.n)
                print(f"    then at the period end: {rolled.describe(args.n, 'roll-overs')}", flush=True)
                if args.receipts and workers == args.workers[0] and round_ == 1:
                    drain = time_drain(url, args.n)
                    print(f"    receipts, 1 worker:    {args.n / drain:8.0f} e-mails/s   ({drain:.1f} s)")
            if args.rounds > 1 or args.floor:
                line = f"  {workers} worker(s): median {statistics.median(rates):.0f} renewals/s"
                if args.baseline:
                    line += f", baseline {statistics.median(baselines):.0f}"
                if args.floor:
                    line += (f", floor {statistics.median(floors):.0f}; ratios "
                             f"{', '.join(f'{r:.2f}' for r in ratios)} (median {statistics.median(ratios):.2f})")
                print(line, flush=True)
    finally:
        pg_admin(f'DROP DATABASE IF EXISTS "{args.db_name}" WITH (FORCE)')
        pg_admin(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')


if __name__ == "__main__":
    main()
