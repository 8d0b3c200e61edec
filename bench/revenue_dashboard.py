"""How long the revenue and health page (ACC-5, issue 18) takes to render at 100,000 accounts and
1,000,000 invoices on PostgreSQL, with the MRR movements stored and without.

    .venv/bin/python bench/revenue_dashboard.py [--accounts 100000] [--invoices 1000000] [--runs 7] [--keep]

Creates the scratch database `prorata_bench_revenue` (dropped first; PostgreSQL at BENCH_PG_URL,
default postgres://postgres@127.0.0.1:5432), creates the tables from the models and fills them with
one INSERT … SELECT generate_series per table, relative to the current time: 13 months of
history; one subscription snapshot per account and month in the audit log (period roll-overs,
with upgrades, yearly plans, extra properties, cancellations, past-due months and suspensions
mixed in), an `invoice.issued` row per invoice, `payment.failed` rows for 3 % of the invoices,
trials for a seventh of the accounts, overage invoices, refunds and credit notes. The last 30
minutes hold 500 more changes, which the page replays on the fly.

Then, through Django's test client as a Support user (middleware, permission, queries, tables,
charts and template included):
  1. the page with nothing stored: every audit row replayed (what a page without precomputation costs);
  2. `metrics_rebuild --full` (every account's movements and the closed months' figures stored), timed;
  3. the page with the movements stored (the target: under 1 s), median of --runs;
  4. an incremental refresh, and three of the admin lists the page links to.
Figures: docs/performance.md.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

# Same folder: the scratch database and the bulk INSERT … SELECT of the changelists' bench.
from admin_lists import create_database, create_tables, drop_database, insert_select, setup_django  # noqa: E402

DB_NAME = "prorata_bench_revenue"
START = "(date_trunc('month', now()) - interval '13 months')"


def snapshot_sql(account: str, month: str) -> str:
    """The subscription snapshot of `account` in `month` (0..12), as a jsonb expression."""
    plan = (f"CASE WHEN {account} % 10 = 0 AND {month} >= {account} % 13 THEN 'advanced' "
            f"ELSE (ARRAY['free', 'personal', 'advanced'])[1 + {account} % 3] END")
    status = (f"CASE WHEN {account} % 17 = 0 AND {month} >= {account} % 11 THEN 'canceled' "
              f"WHEN ({account} + {month}) % 211 = 0 THEN 'suspended' "
              f"WHEN ({account} + {month}) % 50 = 0 THEN 'past_due' ELSE 'active' END")
    cycle = f"CASE WHEN {account} % 7 = 1 THEN 'yearly' ELSE 'monthly' END"
    extra = f"CASE WHEN {account} % 9 = 0 AND {month} >= 6 THEN 2 ELSE 0 END"
    return (f"jsonb_build_object('plan', {plan}, 'cycle', {cycle}, 'status', {status}, "
            f"'extra_properties', {extra}, 'cancel_at_period_end', false)")


def fill(accounts: int, invoices: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection

    from accounts.models import Account, AuditEvent, Membership
    from invoices.models import CreditNote, Invoice, Payment, Refund
    from plans.services import DEMO_CATALOG, catalog_load_file
    from subscriptions.models import Subscription

    catalog_load_file(DEMO_CATALOG)
    started = time.perf_counter()
    email = "'owner' || lpad(g::text, 6, '0') || '@bench.test'"
    insert_select(get_user_model(), accounts, {
        "password": "'!'", "username": email, "email": email, "is_active": "true", "date_joined": "now()",
    })
    insert_select(Account, accounts, {
        "name": "'Bench Customer ' || lpad(g::text, 6, '0')", "identity_email": email,
        "created_at": f"{START} - interval '1 month'",
        "trial_used_at": f"CASE WHEN g % 7 = 0 THEN {START} + (g % 380) * interval '1 day' END",
    })
    insert_select(Membership, accounts, {"user": "g", "account": "g", "role": "'owner'", "created_at": "now()"})
    month = "12"
    plan_id = f"(SELECT id FROM plans_plan WHERE code = ({snapshot_sql('g', month)})->>'plan')"
    trial_start = f"{START} + (g % 380) * interval '1 day'"
    insert_select(Subscription, accounts, {
        "account": "g", "plan": plan_id,
        "cycle": f"({snapshot_sql('g', month)})->>'cycle'", "status": f"({snapshot_sql('g', month)})->>'status'",
        "anchor_at": f"{START} + (g % 28) * interval '1 day'",
        "current_period_start": "date_trunc('month', now()) + (g % 28) * interval '1 day' - interval '1 month'",
        "current_period_end": "date_trunc('month', now()) + (g % 28) * interval '1 day'",
        "current_price": f"COALESCE((SELECT CASE WHEN ({snapshot_sql('g', month)})->>'cycle' = 'yearly' "
                         f"THEN yearly_price ELSE monthly_price END FROM plans_plan WHERE id = {plan_id}), 0)",
        "extra_properties": f"(({snapshot_sql('g', month)})->>'extra_properties')::int",
        "trial_start": f"CASE WHEN g % 7 = 0 THEN {trial_start} END",
        "trial_end": f"CASE WHEN g % 7 = 0 THEN {trial_start} + interval '14 days' END",
        "created_at": f"{START}", "updated_at": "now()",
    })
    # One subscription snapshot per account and month (the roll-overs), in time order.
    state_events = accounts * 13
    account, month_of = f"(1 + (g - 1) % {accounts})", f"((g - 1) / {accounts})"
    insert_select(AuditEvent, state_events, {
        "account": account, "actor_label": "'system'", "action": "'period.started'",
        "object_type": "'Subscription'", "object_id": f"{account}::text", "before": "'{}'::jsonb",
        "after": snapshot_sql(account, month_of), "reason": "''",
        "created_at": f"{START} + {month_of} * interval '1 month' + ({account} % 28) * interval '1 day' "
                      "+ interval '9 hours'",
    })
    number = "(2020 + (g - 1) / 900000)::text || '-' || lpad((((g - 1) % 900000) + 1)::text, 6, '0')"
    moment = f"{START} + g * (interval '395 days' / {invoices})"
    kind = (f"CASE WHEN g <= {accounts} AND g % 7 = 0 THEN 'trial_conversion' WHEN g % 33 = 0 THEN 'overage' "
            "ELSE 'renewal' END")
    # A failed collection (g % 33 = 1, 3 %) is in dunning for its last 8 days, then paid (70 %) or
    # voided; other invoices are paid, a few voided.
    status = (f"(CASE WHEN g % 33 = 1 AND {moment} > now() - interval '8 days' THEN 'open' "
              "WHEN g % 33 = 1 AND g % 10 < 3 THEN 'void' WHEN g % 97 = 0 THEN 'void' ELSE 'paid' END)")
    insert_select(Invoice, invoices, {
        "account": f"CASE WHEN g <= {accounts} THEN g ELSE 1 + (g % {accounts}) END",
        "subscription": f"CASE WHEN g <= {accounts} THEN g ELSE 1 + (g % {accounts}) END", "number": number,
        "kind": kind, "status": status, "currency": "'USD'", "subtotal": "14.00", "credit_applied": "0",
        "total": "14.00", "amount_paid": f"CASE WHEN {status} = 'paid' THEN 14.00 ELSE 0 END",
        "issued_at": moment, "paid_at": f"CASE WHEN {status} = 'paid' THEN {moment} + interval '3 days' END",
        "created_at": moment, "pending_change": "'{}'::jsonb", "bill_to_name": "'Bench'",
    })
    insert_select(AuditEvent, invoices, {
        "account": f"1 + (g % {accounts})", "actor_label": "'system'", "action": "'invoice.issued'",
        "object_type": "'Invoice'", "object_id": "g::text", "before": "'{}'::jsonb",
        "after": "jsonb_build_object('number', 'x', 'kind', 'renewal', 'total', '14.00')", "reason": "''",
        "created_at": moment,
    })
    failures = invoices // 33  # 3 %: one failed collection each, a few retried
    insert_select(AuditEvent, failures, {
        "account": f"1 + ((g * 33) % {accounts})", "actor_label": "'system'", "action": "'payment.failed'",
        "object_type": "'Invoice'", "object_id": "(g * 33 - 32)::text", "before": "'{}'::jsonb",
        "after": snapshot_sql(f"(1 + (g * 33) % {accounts})", "12"), "reason": "''",
        "created_at": f"{START} + (g * 33 - 32) * (interval '395 days' / {invoices}) + interval '1 hour'",
    })
    refunds = 2000
    insert_select(Payment, refunds, {
        "invoice": f"1 + (g * 7 % {invoices})", "account": f"1 + (g * 7 % {accounts})", "amount": "14.00",
        "currency": "'USD'",
        "idempotency_key": "'bench-' || g", "gateway": "'sandbox'", "status": "'succeeded'",
        "refunded_amount": "14.00", "attempted_at": f"{START} + g * interval '3 hours'",
    })
    insert_select(CreditNote, 5000, {
        "account": f"1 + (g * 7 % {accounts})", "invoice": f"1 + (g * 7 % {invoices})",
        "number": "'CN-2026-' || lpad(g::text, 6, '0')",
        "kind": "CASE WHEN g <= 2000 THEN 'refund' ELSE 'downgrade' END", "currency": "'USD'", "amount": "14.00",
        "remaining": "CASE WHEN g <= 2000 THEN 0 ELSE 7.00 END", "reason": "'bench'",
        "issued_at": f"{START} + g * interval '70 minutes'",
    })
    insert_select(Refund, refunds, {
        "payment": "g", "amount": "14.00", "idempotency_key": "'bench-refund-' || g", "credit_note": "g",
        "reason": "'bench'", "created_at": f"{START} + g * interval '3 hours'",
    })
    # The last half hour: 500 accounts upgraded to Advanced (replayed on the fly by the page).
    insert_select(AuditEvent, 500, {
        "account": f"1 + (g * 97 % {accounts})", "actor_label": "'system'", "action": "'subscription.upgraded'",
        "object_type": "'Subscription'", "object_id": "g::text", "before": "'{}'::jsonb",
        "after": "jsonb_build_object('plan', 'advanced', 'cycle', 'monthly', 'status', 'active', "
                 "'extra_properties', 0)", "reason": "''",
        "created_at": "now() - interval '30 minutes' + g * interval '3 seconds'",
    })
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        cursor.execute("SELECT count(*) FROM accounts_auditevent")
        audit_rows = cursor.fetchone()[0]
    return {"fill_seconds": time.perf_counter() - started, "audit_rows": audit_rows}


def timed(client, url: str, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, sql = [], []
    for _ in range(runs):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
        sql.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
    return {"median_ms": statistics.median(times), "max_ms": max(times), "sql_ms": statistics.median(sql),
            "queries": len(queries), "runs": runs}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--invoices", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the scratch database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    parser.add_argument("--page-only", action="store_true",
                        help="with --reuse: only the page with the movements stored (step 3)")
    args = parser.parse_args()

    if not args.reuse:
        create_database(DB_NAME)
    setup_django(DB_NAME)
    try:
        from django.test import Client
        from django.utils import timezone

        from accounts.groups import SUPPORT, ensure_staff_groups
        from metrics import figures, summary
        from metrics.models import ClosedMonth, MetricsBuild, MrrMovement
        from metrics.tasks import refresh
        from tests.factories import UserFactory

        if not args.reuse:
            create_tables()
            info = fill(args.accounts, args.invoices)
            print(f"filled {args.accounts:,} accounts and {args.invoices:,} invoices, {info['audit_rows']:,} audit "
                  f"rows in {info['fill_seconds']:.0f} s (load {load()})", flush=True)
        support = UserFactory(username="support@bench.test", is_staff=True)
        support.groups.add(ensure_staff_groups()[SUPPORT])
        client = Client()
        client.force_login(support)

        if args.page_only:
            timed(client, "/admin/revenue/", 2)  # warm up
            stored = timed(client, "/admin/revenue/", args.runs)
            print(f"3. page, movements stored: median {stored['median_ms']:.0f} ms (max {stored['max_ms']:.0f}), "
                  f"SQL {stored['sql_ms']:.0f} ms in {stored['queries']} queries, {args.runs} runs (load {load()})")
            return
        MrrMovement.objects.all().delete()
        MetricsBuild.objects.all().delete()
        ClosedMonth.objects.all().delete()
        print(f"1. page, nothing stored (every audit row replayed) (load {load()}):", flush=True)
        live = timed(client, "/admin/revenue/", 1)
        print(f"   {live['median_ms']:,.0f} ms, SQL {live['sql_ms']:,.0f} ms in {live['queries']} queries", flush=True)

        started = time.perf_counter()
        result = refresh(timezone.now(), full=True)
        print(f"2. metrics_rebuild --full: {time.perf_counter() - started:.1f} s: {result} (load {load()})", flush=True)
        board = summary.dashboard(timezone.now())
        print(f"   MRR today {board.mrr.today.mrr}, {board.mrr.today.paying_accounts:,} paying accounts, "
              f"{board.tail_accounts} accounts replayed on the fly", flush=True)

        timed(client, "/admin/revenue/", 2)  # warm up
        stored = timed(client, "/admin/revenue/", args.runs)
        print(f"3. page, movements stored: median {stored['median_ms']:.0f} ms (max {stored['max_ms']:.0f}), "
              f"SQL {stored['sql_ms']:.0f} ms in {stored['queries']} queries, {args.runs} runs (load {load()})",
              flush=True)

        started = time.perf_counter()
        result = refresh(timezone.now())
        print(f"4. refresh after the build: {(time.perf_counter() - started) * 1000:.0f} ms: {result}", flush=True)
        month = figures.months_window(timezone.now())[-4].key
        for label, url in (("accounts that churned", f"/admin/accounts/account/?figure=churn:{month}"),
                           ("accounts paying at the month's end", f"/admin/accounts/account/?figure=mrr:{month}"),
                           ("payments that first failed", f"/admin/invoices/invoice/?figure=failed:{month}")):
            figures_list = timed(client, url, 3)
            print(f"   list of {label} in {month}: median {figures_list['median_ms']:.0f} ms, "
                  f"SQL {figures_list['sql_ms']:.0f} ms", flush=True)
        print(f"\nTarget under 1 s with the movements stored: {'met' if stored['median_ms'] < 1000 else 'NOT met'} "
              f"({stored['median_ms']:.0f} ms median).")
    finally:
        if not args.keep:
            drop_database(DB_NAME)


if __name__ == "__main__":
    main()
