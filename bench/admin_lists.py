"""How long the back office's changelists take to open with 1,000,000 invoices on PostgreSQL.

    .venv/bin/python bench/admin_lists.py [--invoices 1000000] [--accounts 100000] [--runs 15] [--keep]

Creates the scratch database `prorata_bench_admin` (dropped first; PostgreSQL at BENCH_PG_URL,
default postgres://postgres@127.0.0.1:5432), creates the tables from the models, fills them with
one INSERT … SELECT generate_series per table, ANALYZEs, then opens each changelist `--runs` times
through Django's test client as a Support user (middleware, permissions, queries and template
rendering included; no network) and prints the median, the 90th percentile and the query count.
Target (issue 6): under 300 ms. Figures: docs/performance.md.
"""

import argparse
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB_NAME = "prorata_bench_admin"
SERVER = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")

LISTS = [
    ("invoices, first page", "/admin/invoices/invoice/"),
    ("invoices, status open", "/admin/invoices/invoice/?status__exact=open"),
    ("invoices, paid renewals", "/admin/invoices/invoice/?kind__exact=renewal&status__exact=paid"),
    ("invoices, issued this year", "/admin/invoices/invoice/?issued_at__gte=2025-01-01+00:00:00%2B00:00"
                                   "&issued_at__lt=2026-01-01+00:00:00%2B00:00"),
    ("invoices, page 100", "/admin/invoices/invoice/?p=100"),
    ("invoices, search number", "/admin/invoices/invoice/?q=2025-012345"),
    ("invoices, search owner e-mail", "/admin/invoices/invoice/?q=owner004242%40bench.test"),
    ("invoices, search account name", "/admin/invoices/invoice/?q=Bench+Customer+004242"),
    ("subscriptions, first page", "/admin/subscriptions/subscription/"),
    ("subscriptions, active yearly Advanced", "/admin/subscriptions/subscription/?status__exact=active"
                                              "&cycle__exact=yearly&plan__id__exact={advanced}"),
    ("subscriptions, search owner e-mail", "/admin/subscriptions/subscription/?q=owner004242%40bench.test"),
    ("accounts, first page", "/admin/accounts/account/"),
]


def create_database(name: str = DB_NAME) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")


def drop_database(name: str = DB_NAME) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")


def setup_django(name: str = DB_NAME) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings.test"
    os.environ["TEST_DATABASE_URL"] = f"{SERVER}/{name}"
    import django

    django.setup()
    from django.conf import settings

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]


def create_tables() -> None:
    from django.apps import apps
    from django.conf import settings
    from django.core.management import call_command

    # The tables as the models define them, without replaying every migration (dj-stripe's are slow).
    settings.MIGRATION_MODULES = {app.label: None for app in apps.get_app_configs()}
    call_command("migrate", run_syncdb=True, verbosity=0)


def _literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, dict | list):
        return "'{}'::jsonb" if isinstance(value, dict) else "'[]'::jsonb"
    return "'" + str(value).replace("'", "''") + "'"


def insert_select(model, rows: int, exprs: dict[str, str]) -> None:
    """INSERT INTO <model> SELECT … FROM generate_series(1, rows) AS g: columns not in `exprs` get
    NULL, the field's default or '' (Django defaults are not database defaults)."""
    from django.db import connection
    from django.db.models import NOT_PROVIDED

    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.name in exprs or field.attname in exprs:
            values.append(exprs.get(field.name, exprs.get(field.attname)))
        elif field.null:
            values.append("NULL")
        elif field.default is not NOT_PROVIDED:
            default = field.default() if callable(field.default) else field.default
            values.append("now()" if hasattr(default, "tzinfo") else _literal(default))
        else:
            values.append("''")
    sql = (f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({', '.join(columns)}) "
           f"SELECT {', '.join(values)} FROM generate_series(1, {rows}) AS g")
    with connection.cursor() as cursor:
        cursor.execute(sql)


def fill(accounts: int, invoices: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts.models import Account, Membership
    from invoices.models import Invoice
    from plans.models import Plan
    from plans.services import DEMO_CATALOG, catalog_load_file
    from subscriptions.models import Subscription

    catalog_load_file(DEMO_CATALOG)
    plans = {p.code: p.pk for p in Plan.objects.all()}
    started = time.perf_counter()
    email = "'owner' || lpad(g::text, 6, '0') || '@bench.test'"
    insert_select(get_user_model(), accounts, {
        "password": "'!'", "username": email, "email": email, "is_active": "true", "date_joined": "now()",
    })
    insert_select(Account, accounts, {
        "name": "'Bench Customer ' || lpad(g::text, 6, '0')", "identity_email": email,
        "created_at": "timestamptz '2023-01-01' + g * interval '5 minutes'",
    })
    # Row g of each table belongs to account g (fresh sequences start at 1).
    insert_select(Membership, accounts, {"user": "g", "account": "g", "role": "'owner'", "created_at": "now()"})
    insert_select(Subscription, accounts, {
        "account": "g",
        "plan": f"CASE g % 3 WHEN 0 THEN {plans['free']} WHEN 1 THEN {plans['personal']} ELSE {plans['advanced']} END",
        "cycle": "CASE WHEN g % 7 = 0 THEN 'yearly' ELSE 'monthly' END",
        "status": "CASE WHEN g % 50 = 0 THEN 'past_due' WHEN g % 97 = 0 THEN 'canceled' ELSE 'active' END",
        "anchor_at": "timestamptz '2025-01-01' + (g % 28) * interval '1 day'",
        "current_period_start": "timestamptz '2025-12-01' + (g % 28) * interval '1 day'",
        "current_period_end": "timestamptz '2026-01-01' + (g % 28) * interval '1 day'",
        "current_price": "CASE g % 3 WHEN 0 THEN 0 WHEN 1 THEN 14.00 ELSE 29.00 END",
        "created_at": "timestamptz '2023-01-01' + g * interval '5 minutes'", "updated_at": "now()",
    })
    per_year = 600_000
    number = (f"(2024 + (g - 1) / {per_year})::text || '-' || lpad((((g - 1) % {per_year}) + 1)::text, 6, '0')")
    moment = "timestamptz '2024-01-01' + g * interval '1 minute'"
    insert_select(Invoice, invoices, {
        "account": f"1 + (g % {accounts})", "subscription": f"1 + (g % {accounts})", "number": number,
        "kind": "CASE WHEN g % 10 = 0 THEN 'upgrade' WHEN g % 25 = 0 THEN 'overage' ELSE 'renewal' END",
        "status": "CASE WHEN g % 100 = 0 THEN 'open' WHEN g % 333 = 0 THEN 'void' ELSE 'paid' END",
        "currency": "'USD'", "subtotal": "14.00", "credit_applied": "0", "total": "14.00",
        "amount_paid": "CASE WHEN g % 100 = 0 OR g % 333 = 0 THEN 0 ELSE 14.00 END",
        "issued_at": moment, "paid_at": f"CASE WHEN g % 100 = 0 OR g % 333 = 0 THEN NULL ELSE {moment} END",
        "created_at": moment, "pending_change": "'{}'::jsonb", "bill_to_name": "'Bench'",
    })
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {"plans": plans, "fill_seconds": time.perf_counter() - started}


def measure(runs: int, plans: dict, verbose: bool = False) -> list[dict]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from accounts.groups import SUPPORT, ensure_staff_groups
    from tests.factories import UserFactory

    support = UserFactory(username="support@bench.test", is_staff=True)  # get_or_create: reuse keeps it
    support.groups.add(ensure_staff_groups()[SUPPORT])
    client = Client()
    client.force_login(support)
    results = []
    for label, url in LISTS:
        url = url.format(advanced=plans["advanced"])
        for _ in range(2):  # warm up: template cache, permission cache, PostgreSQL buffers
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)
        times, sql, cpu = [], [], []
        for _ in range(runs):
            with CaptureQueriesContext(connection) as queries:
                started, cpu_started = time.perf_counter(), time.process_time()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                cpu.append((time.process_time() - cpu_started) * 1000)
            sql.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
            slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
        table = response.content.decode().split('id="result_list"', 1)[-1].split("</table>", 1)[0]
        rows = table.count("<tr") - 1  # the header row
        times.sort()
        results.append({"list": label, "url": url, "median_ms": statistics.median(times),
                        "p90_ms": times[max(0, int(len(times) * 0.9) - 1)], "sql_ms": statistics.median(sql),
                        "cpu_ms": statistics.median(cpu),
                        "queries": len(queries), "rows": rows})
        if verbose:
            print(f"    slowest query {float(slowest['time']) * 1000:.0f} ms: {slowest['sql'][:300]}")
        print(f"{label:40} median {results[-1]['median_ms']:7.1f} ms  p90 {results[-1]['p90_ms']:7.1f} ms  "
              f"SQL {results[-1]['sql_ms']:6.1f} ms in {len(queries):2d} queries  "
              f"Python CPU {results[-1]['cpu_ms']:6.1f} ms  {rows} rows", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    parser.add_argument("--verbose", action="store_true", help="print each list's slowest query")
    args = parser.parse_args()

    if not args.reuse:
        create_database()
    setup_django()
    try:
        if args.reuse:
            from plans.models import Plan

            info = {"plans": {p.code: p.pk for p in Plan.objects.all()}}
        else:
            create_tables()
            info = fill(args.accounts, args.invoices)
            print(f"filled {args.accounts:,} accounts, subscriptions and owners and {args.invoices:,} invoices "
                  f"in {info['fill_seconds']:.1f} s", flush=True)
        results = measure(args.runs, info["plans"], args.verbose)
        slow = [r for r in results if r["median_ms"] >= 300]
        print(f"\n{len(results) - len(slow)} of {len(results)} lists open in under 300 ms (median of {args.runs}).")
        for r in slow:
            print(f"  over budget: {r['list']} ({r['median_ms']:.0f} ms)")
    finally:
        if not args.keep:
            drop_database()


if __name__ == "__main__":
    main()
