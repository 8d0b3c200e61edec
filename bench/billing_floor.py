"""The floor for bench/billing_run.py: a plain psycopg program (no Django, no ORM) that renews the
bench's due subscriptions by writing exactly the rows the billing run writes for a plain renewal,
in the same three transactions per batch, with the same `SKIP LOCKED` claim:

1. claim the batch's subscriptions (`FOR NO KEY UPDATE SKIP LOCKED`, re-checking that they are
   due), take a block of invoice numbers, insert the invoices, their lines, the `invoice.issued`
   audit rows and the `unknown` payments, mark the subscriptions invoiced; commit;
2. insert the sandbox charges (the "bank"); commit;
3. mark the payments succeeded and the invoices paid, insert the receipts into the events outbox;
   commit.

Per renewal: 6 inserts (invoice, line, audit event, payment, sandbox charge, outbox event) and 3
updates (subscription, payment, invoice), plus the counter per batch. Every array is bound
server-side in binary (`%b`), one statement per table per batch. It knows only what the bench's
data needs (monthly plans, no extra properties, no credit, a working card, no tax: the seller is
outside the EU, so each invoice and line is written with the `none` treatment, as Prorata writes
them for these accounts): it is the cost of the writes, not a billing engine.

    .venv/bin/python bench/billing_floor.py --url postgres://…/db --now 2026-04-30T00:00:00+00:00

Prints one JSON line (ready, done, cpu, maxrss, server_cpu, renewed) like the bench's Prorata worker.
"""

import argparse
import json
import os
import resource
import secrets
import time
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
from psycopg.types.json import Jsonb

LEAD = timedelta(hours=24)  # BILLING_RENEWAL_LEAD_HOURS
# The seller each invoice stores as issued (INV-6): the demo's, one value for the batch.
SELLER = {"name": "Prorata Demo Inc.", "address": "1 Market Street\nSan Francisco, CA 94105", "country": "US",
          "tax_id": "", "registration": "", "support_email": "support@prorata.localhost"}

DUE = """
SELECT s.id FROM subscriptions_subscription s
WHERE s.status = 'active' AND NOT s.cancel_at_period_end AND s.current_period_end IS NOT NULL
  AND s.current_period_end <= %(due)s AND s.current_price > 0
  AND (s.renewal_invoiced_for IS NULL OR s.renewal_invoiced_for <> s.current_period_end)
ORDER BY s.id
"""

CLAIM = """
SELECT s.id, s.account_id, s.current_period_end,
       s.anchor_at + make_interval(months => s.period_index + 1),
       s.anchor_at + make_interval(months => s.period_index + 2),
       p.name, p.monthly_price, p.currency, a.name, a.company, a.address, a.country, a.vat_id,
       m.id, m.gateway_id, a.timezone, m.brand, m.last4
FROM subscriptions_subscription s
JOIN plans_plan p ON p.id = s.plan_id
JOIN accounts_account a ON a.id = s.account_id
JOIN invoices_paymentmethod m ON m.account_id = s.account_id AND m.is_default AND m.detached_at IS NULL
WHERE s.id = ANY(%(ids)s) AND s.status = 'active' AND NOT s.cancel_at_period_end
  AND s.current_period_end <= %(due)s AND s.current_price > 0
  AND (s.renewal_invoiced_for IS NULL OR s.renewal_invoiced_for <> s.current_period_end)
ORDER BY s.id
FOR NO KEY UPDATE OF s SKIP LOCKED
"""

INVOICES = """
WITH numbers AS (
    UPDATE invoices_sequence SET last = last + %(n)s WHERE series = 'INV' AND year = %(year)s RETURNING last
)
INSERT INTO invoices_invoice (account_id, subscription_id, number, kind, status, currency, dedupe_key,
    period_start, period_end, issued_at, bill_to_name, bill_to_company, bill_to_address, bill_to_country,
    bill_to_vat_id, seller, timezone, tax_treatment, tax_rate, tax_country, tax_vat_id, tax_mention,
    prices_include_tax, subtotal, tax_amount, credit_applied, total, amount_paid, notes, pending_change, created_at)
SELECT v.account_id, v.subscription_id, %(year)s || '-' || lpad((numbers.last - %(n)s + v.i)::text, 6, '0'),
    'renewal', 'open', v.currency, v.dedupe_key, v.period_start, v.period_end, %(now)s, v.name, v.company,
    v.address, v.country, v.vat_id, %(seller)b::jsonb, v.timezone, 'none', 0, '', '', '', false, v.total, 0, 0,
    v.total, 0, '', '{}', %(now)s
FROM numbers, unnest(%(account_id)b::bigint[], %(subscription_id)b::bigint[], %(currency)b::text[],
    %(dedupe_key)b::text[], %(period_start)b::timestamptz[], %(period_end)b::timestamptz[], %(name)b::text[],
    %(company)b::text[], %(address)b::text[], %(country)b::text[], %(vat_id)b::text[], %(total)b::numeric[],
    %(timezone)b::text[])
    WITH ORDINALITY AS v(account_id, subscription_id, currency, dedupe_key, period_start, period_end, name,
                         company, address, country, vat_id, total, timezone, i)
RETURNING id, subscription_id, number
"""


def run(conn, now: datetime, batch: int) -> int:
    renewed = 0
    due = now + LEAD
    ids = [row[0] for row in conn.execute(DUE, {"due": due})]
    conn.commit()
    conn.execute("INSERT INTO invoices_sequence (series, year, last) VALUES ('INV', %s, 0) "
                 "ON CONFLICT DO NOTHING", [now.year])
    conn.commit()
    for offset in range(0, len(ids), batch):
        renewed += renew_batch(conn, ids[offset:offset + batch], now, due)
    return renewed


def renew_batch(conn, ids, now, due) -> int:
    with conn.transaction():
        claimed = conn.execute(CLAIM, {"ids": ids, "due": due}).fetchall()
        if not claimed:
            return 0
        rows = []
        for (sub_id, account_id, _end, start, end, plan, price, currency, name, company, address, country, vat_id,
             method_id, method_gateway_id, zone, brand, last4) in claimed:
            rows.append((account_id, sub_id, currency, f"renewal:{sub_id}:{start.isoformat()}", start, end,
                         name, company, address, country, vat_id, price, plan, method_id, method_gateway_id, zone,
                         brand, last4))
        columns = list(zip(*rows, strict=True))
        params = dict(zip(("account_id", "subscription_id", "currency", "dedupe_key", "period_start",
                           "period_end", "name", "company", "address", "country", "vat_id", "total"),
                          map(list, columns[:12]), strict=True))
        invoices = conn.execute(INVOICES, {**params, "timezone": [row[15] for row in rows], "seller": Jsonb(SELLER),
                                           "n": len(rows), "year": now.year, "now": now}).fetchall()
        invoice_of = {sub_id: (invoice_id, number) for invoice_id, sub_id, number in invoices}
        invoice_ids = [invoice_of[row[1]][0] for row in rows]
        conn.execute(
            "INSERT INTO invoices_invoiceline (invoice_id, description, computation, period_start, period_end, "
            "quantity, unit_price, amount, tax_rate, tax_amount) SELECT *, 0, 0 FROM unnest(%b::bigint[], %b::text[], "
            "%b::text[], %b::timestamptz[], %b::timestamptz[], %b::numeric[], %b::numeric[], %b::numeric[])",
            [invoice_ids, [f"{row[12]} (monthly), {row[4]:%Y-%m-%d} to {row[5]:%Y-%m-%d}" for row in rows],
             [f"monthly price ${row[11]}" for row in rows], [row[4] for row in rows], [row[5] for row in rows],
             [Decimal(1)] * len(rows), [row[11] for row in rows], [row[11] for row in rows]])
        conn.execute(
            "INSERT INTO accounts_auditevent (account_id, actor_label, action, object_type, object_id, before, "
            "after, reason, created_at) SELECT a, 'system', 'invoice.issued', 'Invoice', o, '{}', af, '', %b "
            "FROM unnest(%b::bigint[], %b::text[], %b::jsonb[]) AS v(a, o, af)",
            [now, [row[0] for row in rows], [str(i) for i in invoice_ids],
             [Jsonb({"number": invoice_of[row[1]][1], "kind": "renewal", "total": str(row[11])}) for row in rows]])
        payments = conn.execute(
            "INSERT INTO invoices_payment (invoice_id, account_id, payment_method_id, card_brand, card_last4, amount, "
            "currency, idempotency_key, gateway, gateway_reference, status, decline_code, decline_message, "
            "refunded_amount, attempted_at) SELECT i, a, m, cb, cl, amt, c, 'prorata-inv' || i || '-a1', 'sandbox', "
            "'', 'unknown', '', '', 0, %b FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::text[], "
            "%b::text[], %b::numeric[], %b::text[]) AS v(i, a, m, cb, cl, amt, c) RETURNING id, invoice_id, "
            "idempotency_key",
            [now, invoice_ids, [row[0] for row in rows], [row[13] for row in rows], [row[16] for row in rows],
             [row[17] for row in rows], [row[11] for row in rows], [row[2] for row in rows]]).fetchall()
        conn.execute("UPDATE subscriptions_subscription SET renewal_invoiced_for = current_period_end "
                     "WHERE id = ANY(%b::bigint[])", [[row[1] for row in rows]])
    payment_of = {invoice_id: (payment_id, key) for payment_id, invoice_id, key in payments}
    references = ["ch_sbx_" + secrets.token_hex(10) for _ in rows]
    with conn.transaction():  # the sandbox "bank" records its charges
        conn.execute(
            "INSERT INTO invoices_sandboxcharge (reference, idempotency_key, card_id, amount, currency, succeeded, "
            "decline_code, refunded_amount, created_at) SELECT r, k, c.id, amt, cur, true, '', 0, %b "
            "FROM unnest(%b::text[], %b::text[], %b::text[], %b::numeric[], %b::text[]) AS v(r, k, g, amt, cur) "
            "LEFT JOIN invoices_sandboxcard c ON c.gateway_id = v.g",
            [now, references, [payment_of[i][1] for i in invoice_ids], [row[14] for row in rows],
             [row[11] for row in rows], [row[2] for row in rows]])
    with conn.transaction():
        settled = conn.execute(
            "UPDATE invoices_payment p SET status = 'succeeded', gateway_reference = v.r, settled_at = %b "
            "FROM unnest(%b::bigint[], %b::text[]) AS v(id, r) WHERE p.id = v.id AND p.status = 'unknown' "
            "RETURNING p.id, p.invoice_id, p.account_id, p.amount",
            [now, [payment_of[i][0] for i in invoice_ids], references]).fetchall()
        conn.execute("UPDATE invoices_invoice SET amount_paid = total, status = 'paid', paid_at = %b "
                     "WHERE id = ANY(%b::bigint[])", [now, [row[1] for row in settled]])
        # NOT-4: each receipt carries the facts its e-mail states (of Prorata's size: a next-charge sentence,
        # the zone, the account's name, the card, the support address).
        facts = {"next_charge_sentence": "Next charge: $29.00 on May 30, 2026, for Advanced (monthly) from May 31, "
                                         "2026 to June 30, 2026.", "zone": "UTC", "account_name": "Bulk account",
                 "support_email": "support@prorata.localhost", "card": "Visa ending in 4242"}
        conn.execute(
            "INSERT INTO subscriptions_pendingevent (kind, account_id, data, facts, occurred_at) "
            "SELECT 'payment.succeeded', a, d, f, %b FROM unnest(%b::bigint[], %b::jsonb[], %b::jsonb[]) AS v(a, d, f)",
            [now, [row[2] for row in settled],
             [Jsonb({"invoice_id": i, "payment_id": p, "amount": str(amount)}) for p, i, _a, amount in settled],
             [Jsonb(facts) for _row in settled]])
    return len(settled)


def process_cpu(pid: int) -> float:
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--now", required=True)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    now = datetime.fromisoformat(args.now)
    with psycopg.connect(args.url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # as Django's connection: month arithmetic on UTC dates
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.commit()
        usage, server = resource.getrusage(resource.RUSAGE_SELF), process_cpu(backend)
        ready = time.time()  # measured from here: the first claim follows at once
        renewed = run(conn, now, args.batch)
        done = time.time()
        after, server_after = resource.getrusage(resource.RUSAGE_SELF), process_cpu(backend)
    print(json.dumps({"ready": ready, "done": done, "renewed": renewed, "maxrss_kb": after.ru_maxrss,
                      "cpu": after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
                      "server_cpu": server_after - server}))


if __name__ == "__main__":
    main()
