"""The billing run's set-wise ledger (issue 17): a batch of invoices issued and collected in a fixed
number of statements, with the guarantees of the one-by-one functions of `invoices.services`
(INV-1 gapless numbers, INV-4 bill-to, INV-6 the seller and the card as charged, PAY-2 an
`unknown` attempt committed before the gateway is called, REN-3 one invoice per dedupe key).

No model instance per row: each statement joins the whole batch as a relation (`core.sql.rows_from`:
binary arrays on PostgreSQL, VALUES on SQLite), and what the next step needs travels as small
frozen rows (`Attempt`). Each draft's amounts are `invoices.totals`', as `invoice_create`'s.
"""

import json
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

from django.db import connection

from accounts.models import Account, AuditEvent
from core import sql
from core.money import cents
from core.seller import seller_record

from . import tax_rates
from .gateways import ChargeRequest, ChargeResult, GatewayUnavailable, get_gateway
from .models import CreditNote, Invoice, InvoiceLine, InvoiceStatus, Payment, PaymentMethod, PaymentStatus
from .services import Line, line_fields, next_numbers, payment_lookup, payment_send
from .totals import InvoiceTotals


@dataclass(frozen=True)
class Draft:
    """An invoice to issue with `invoices_issue_many`, and the card of its first attempt."""

    account_id: int
    subscription_id: int | None
    kind: str
    lines: list[Line]
    currency: str
    period_start: object
    period_end: object
    dedupe_key: str
    payment_method_id: int
    payment_method_gateway_id: str
    customer_id: str  # the account's customer at the gateway; "" when the gateway has to create it
    customer: tuple[str, str] | None = None  # the account's (country, VAT ID) if the caller read them


@dataclass(frozen=True)
class Attempt:
    """A first charge attempt recorded by `invoices_issue_many`: what steps 2 and 3 need."""

    payment_id: int
    invoice_id: int
    account_id: int
    amount: Decimal
    currency: str
    idempotency_key: str
    payment_method_gateway_id: str
    customer_id: str
    gateway: str

    def payment(self) -> Payment:
        """The Payment row, for the one-by-one functions (a decline, a lost answer)."""
        return Payment.objects.select_related("account", "payment_method").get(pk=self.payment_id)


def accounts_with_credit(account_ids) -> set[int]:
    """Accounts holding unused credit: their invoices go through `invoice_create` (DWN-4)."""
    return set(CreditNote.objects.filter(account_id__any=account_ids, remaining__gt=0)
               .values_list("account_id", flat=True))


@dataclass(frozen=True)
class IssueFacts:
    """What `invoices_issue_many` needs to know about one draft-to-be, read for a whole batch by
    `issue_facts` in one statement: whether its `dedupe_key` is taken (REN-3), whether its account
    holds credit (DWN-4: not for the set-wise path), the account's default card (none: DUN-1), its
    customer at the gateway, and its country and VAT ID (TAX-3, INV-4)."""

    invoiced: bool
    has_credit: bool
    payment_method_id: int | None
    payment_method_gateway_id: str
    customer_id: str
    country: str
    vat_id: str


def issue_facts(rows: list[tuple[int, str]]) -> list[IssueFacts]:
    """`IssueFacts` for each (account id, dedupe key) of `rows`, in order: one statement for the
    batch instead of one read per fact (issue 17). Read in the caller's transaction, which issues
    the invoices (as `accounts_with_credit` and `default_payment_method` would be)."""
    if not rows:
        return []
    source, params = sql.rows_from({"n": "int", "account_id": "id", "dedupe_key": "text"},
                                   [(n, *row) for n, row in enumerate(rows)])
    found = sql.run(  # an account has at most one default card (PaymentMethod's one_default_payment_method)
        f"SELECT v.n, EXISTS (SELECT 1 FROM {Invoice._meta.db_table} i WHERE i.dedupe_key = v.dedupe_key), "
        f"EXISTS (SELECT 1 FROM {CreditNote._meta.db_table} c WHERE c.account_id = v.account_id "
        f"AND c.remaining > 0), m.id, m.gateway_id, a.gateway_customer_id, a.country, a.vat_id FROM {source} "
        + sql.probe_join(Account._meta.db_table, "a", "a.id = v.account_id", ["gateway_customer_id", "country",
                                                                               "vat_id"]) + " "
        + sql.probe_join(PaymentMethod._meta.db_table, "m", "m.account_id = v.account_id AND m.is_default "
                         "AND m.detached_at IS NULL", ["id", "gateway_id"], left=True), params)
    facts = {row[0]: IssueFacts(bool(row[1]), bool(row[2]), row[3], row[4] or "", *row[5:]) for row in found}
    return [facts[n] for n in range(len(rows))]


def invoices_issue_many(drafts: list[Draft], *, now, audit_actor: str) -> list[Attempt]:
    """`invoice_create` + `invoice_issue` + `payment_begin` for many invoices of accounts without
    credit (the caller checks `issue_facts` in the same transaction), in a fixed number of
    statements: each invoice with its lines, the billing details of its account as they are now
    (INV-4), an `invoice.issued` audit row by `audit_actor` (ACC-3), and its first attempt,
    `unknown`, on the draft's card (PAY-2). Returns the attempts, in the drafts' order.

    Numbers are taken by the transaction's last statement (INV-1): the counter's row lock is held
    from there to the commit, not through the batch's other writes, so two workers do not take
    turns for a whole batch. They stay gapless: taken and used in one transaction. On PostgreSQL
    the invoices' ids are reserved first, their lines and payments written (the foreign keys are
    checked at commit), then one statement bumps the counter, inserts the numbered invoices and
    their audit rows. A duplicate `dedupe_key` raises IntegrityError for the whole set (REN-3)."""
    if not drafts:
        return []
    year = now.astimezone(UTC).year
    if connection.vendor == "postgresql":  # the lines and payments refer to invoices inserted last
        sql.run("SET CONSTRAINTS ALL DEFERRED", [])
    ids = _invoice_ids_reserve(len(drafts))
    customers, totals = _drafts_totals(drafts, now)
    _lines_insert(ids, drafts, totals)
    gateway = get_gateway().name
    keys = [f"prorata-inv{invoice_id}-a1" for invoice_id in ids]
    payment_of = _payments_insert(ids, drafts, totals, keys, gateway, now)
    _invoices_number_and_insert(ids, drafts, totals, [customers[d.account_id] for d in drafts], year, now,
                                audit_actor)
    return [Attempt(payment_of[invoice_id], invoice_id, draft.account_id, t.amount_due, draft.currency, key,
                    draft.payment_method_gateway_id, draft.customer_id, gateway)
            for invoice_id, draft, t, key in zip(ids, drafts, totals, keys, strict=True)]


def _drafts_totals(drafts: list[Draft], now) -> tuple[dict, list[InvoiceTotals]]:
    """TAX-2/3: each draft's totals in Python (`tax_rates.totals_for`, as `invoice_create`), from its
    account's country and VAT ID read once for the batch (the same read is written as the
    invoice's bill-to country and VAT ID), one read of the rates. Returns ({account: (country,
    VAT ID)}, the totals in the drafts' order)."""
    customers = {d.account_id: d.customer for d in drafts if d.customer is not None}
    if len(customers) < len({d.account_id for d in drafts}):  # not read by the caller (`issue_facts`)
        customers = {row[0]: row[1:] for row in Account.objects.filter(pk__any={d.account_id for d in drafts})
                     .values_list("id", "country", "vat_id")}
    decisions = tax_rates.decisions_for(customers, now)
    computed: dict[tuple, InvoiceTotals] = {}  # the batch's drafts share a few (prices, decision): each once
    totals = []
    for draft in drafts:
        decision = decisions[draft.account_id]
        key = (decision, *(line.amount for line in draft.lines))
        if key not in computed:
            computed[key] = tax_rates.totals_for(decision, [line.amount for line in draft.lines])
        totals.append(computed[key])
    return customers, totals


LINE_COLUMNS = {"invoice_id": "id", "description": "text", "computation": "text", "quantity": "decimal",
                "unit_price": "decimal", "amount": "decimal", "period_start": "datetime", "period_end": "datetime",
                "tax_rate": "decimal", "tax_amount": "decimal"}


def _lines_insert(ids: list[int], drafts: list[Draft], totals: list[InvoiceTotals]) -> None:
    rows = []
    for invoice_id, draft, t in zip(ids, drafts, totals, strict=True):
        for line, line_tax in zip(draft.lines, t.line_taxes, strict=True):
            fields = line_fields(line, draft.period_start, draft.period_end, t.decision.rate, line_tax)
            rows.append((invoice_id, *fields.values()))
    for chunk in sql.chunks(rows, len(LINE_COLUMNS)):
        source, params = sql.rows_from(LINE_COLUMNS, chunk)
        sql.run(f"INSERT INTO {InvoiceLine._meta.db_table} ({', '.join(LINE_COLUMNS)}) "
                f"SELECT {', '.join(LINE_COLUMNS)} FROM {source}", params)


PAYMENT_COLUMNS = {"invoice_id": "id", "account_id": "id", "payment_method_id": "id", "amount": "decimal",
                   "currency": "text", "idempotency_key": "text"}


def _payments_insert(ids, drafts, totals, keys, gateway: str, now) -> dict[int, int]:
    """Each invoice's first attempt, `unknown`, with the card as charged (INV-6): {invoice: payment}."""
    payment_of = {}
    rows = [(invoice_id, draft.account_id, draft.payment_method_id, t.amount_due, draft.currency, key)
            for invoice_id, draft, t, key in zip(ids, drafts, totals, keys, strict=True)]
    for chunk in sql.chunks(rows, len(PAYMENT_COLUMNS)):
        source, params = sql.rows_from(PAYMENT_COLUMNS, chunk)
        payment_of.update((invoice_id, pk) for pk, invoice_id in sql.run(
            f"INSERT INTO {Payment._meta.db_table} ({', '.join(PAYMENT_COLUMNS)}, card_brand, card_last4, gateway, "
            "gateway_reference, status, decline_code, decline_message, refunded_amount, attempted_at) "
            f"SELECT {', '.join('v.' + c for c in PAYMENT_COLUMNS)}, COALESCE(m.brand, ''), COALESCE(m.last4, ''), "
            f"%s, '', %s, '', '', 0, %s FROM {source} " + sql.probe_join(
                PaymentMethod._meta.db_table, "m", "m.id = v.payment_method_id", ["brand", "last4"], left=True)
            + " RETURNING id, invoice_id",
            [gateway, PaymentStatus.UNKNOWN, now, *params]))
    return payment_of


INVOICE_COLUMNS = {"id": "id", "account_id": "id", "subscription_id": "id", "kind": "text", "currency": "text",
                   "dedupe_key": "text", "period_start": "datetime", "period_end": "datetime", "subtotal": "decimal",
                   "tax_amount": "decimal", "total": "decimal", "country": "text", "vat_id": "text",
                   "tax_treatment": "text", "tax_rate": "decimal", "tax_country": "text", "tax_vat_id": "text",
                   "tax_mention": "text", "prices_include_tax": "bool", "seller": "text"}
INVOICE_INSERT = (  # {number}, {source}, {counter}, {account_join}, {seller}: per database; bill-to as it is now
    # (INV-4); the seller (one value for the batch, so `rows_from` binds it once) and the account's time zone (INV-6)
    "INSERT INTO {invoice} (id, account_id, subscription_id, number, kind, status, currency, dedupe_key, "
    "period_start, period_end, issued_at, bill_to_name, bill_to_company, bill_to_address, bill_to_country, "
    "bill_to_vat_id, seller, timezone, tax_treatment, tax_rate, tax_country, tax_vat_id, tax_mention, "
    "prices_include_tax, subtotal, tax_amount, credit_applied, total, amount_paid, notes, pending_change, created_at) "
    "SELECT v.id, v.account_id, v.subscription_id, {number}, v.kind, %s, v.currency, v.dedupe_key, v.period_start, "
    "v.period_end, %s, a.name, a.company, a.address, v.country, v.vat_id, {seller}, a.timezone, v.tax_treatment, "
    "v.tax_rate, v.tax_country, v.tax_vat_id, v.tax_mention, v.prices_include_tax, v.subtotal, v.tax_amount, 0, "
    "v.total, 0, '', '{{}}', %s FROM {counter}{source} {account_join}"
)
AUDIT_INSERT = ("INSERT INTO {audit} (account_id, actor_id, actor_label, action, object_type, object_id, before, "
                "after, reason, created_at) ")


def _invoices_number_and_insert(ids, drafts, totals, customers, year, now, audit_actor) -> None:
    seller = json.dumps(seller_record())  # INV-6: the seller as configured at this batch's issue
    rows = [(invoice_id, draft.account_id, draft.subscription_id, draft.kind, draft.currency, draft.dedupe_key,
             draft.period_start, draft.period_end, cents(t.subtotal), t.tax, t.total, str(country or ""),
             vat_id or "", t.decision.treatment, t.decision.rate, t.decision.country, t.decision.vat_id,
             t.decision.mention, t.inclusive, seller)
            for invoice_id, draft, t, (country, vat_id) in zip(ids, drafts, totals, customers, strict=True)]
    tables = {"invoice": Invoice._meta.db_table, "audit": AuditEvent._meta.db_table,
              "account_join": sql.probe_join(Account._meta.db_table, "a", "a.id = v.account_id",
                                             ["name", "company", "address", "timezone"]),
              "seller": "v.seller::jsonb" if connection.vendor == "postgresql" else "v.seller"}
    if connection.vendor == "postgresql":
        # One statement from the counter's lock to the commit: bump it, insert the numbered
        # invoices (numbers in the drafts' order, f"{year}-{n:06d}" as `invoice_issue` spells them),
        # and their audit rows.
        source, params = sql.rows_from({**INVOICE_COLUMNS, "n": "int"},
                                       [(*row, n) for n, row in enumerate(rows, start=1)])
        serial = "(counter.last - %s + v.n)::text"
        number = f"%s || lpad({serial}, greatest(6, length({serial})), '0')"
        insert = INVOICE_INSERT.format(number=number, counter="counter CROSS JOIN ", source=source, **tables)
        sql.run(
            # The counter is an upsert (the year's first batch creates it): no read of it beforehand.
            "WITH counter AS (INSERT INTO invoices_sequence (series, year, last) VALUES ('INV', %s, %s) "
            "ON CONFLICT (series, year) DO UPDATE SET last = invoices_sequence.last + EXCLUDED.last "
            f"RETURNING last), issued AS ({insert} RETURNING id, account_id, number, kind, total) "
            + AUDIT_INSERT.format(**tables)
            + "SELECT account_id, NULL, %s, 'invoice.issued', 'Invoice', id::text, '{}', "
            "jsonb_build_object('number', number, 'kind', kind, 'total', total::text), '', %s FROM issued",
            [year, len(rows), f"{year}-", len(rows), len(rows), InvoiceStatus.OPEN, now, now, *params,
             audit_actor, now])
        return
    # SQLite: the transaction holds the whole database, so the order of the statements is free.
    numbers = [f"{year}-{n:06d}" for n in next_numbers("INV", year, len(rows))]
    for chunk in sql.chunks(list(zip(rows, numbers, strict=True)), len(INVOICE_COLUMNS) + 1):
        source, params = sql.rows_from({**INVOICE_COLUMNS, "number": "text"},
                                       [(*row, number) for row, number in chunk])
        sql.run(INVOICE_INSERT.format(number="v.number", counter="", source=source, **tables),
                [InvoiceStatus.OPEN, now, now, *params])
    audit_columns = {"account_id": "id", "object_id": "text", "after": "json"}
    audits = [(draft.account_id, str(invoice_id), {"number": number, "kind": draft.kind, "total": str(t.total)})
              for invoice_id, draft, t, number in zip(ids, drafts, totals, numbers, strict=True)]
    for chunk in sql.chunks(audits, len(audit_columns)):
        source, params = sql.rows_from(audit_columns, chunk)
        sql.run(AUDIT_INSERT.format(**tables) + "SELECT account_id, NULL, %s, 'invoice.issued', 'Invoice', object_id, "
                f"'{{}}', after, '', %s FROM {source}", [audit_actor, now, *params])


def _invoice_ids_reserve(count: int) -> list[int]:
    """Primary keys for `count` new invoices, taken before the rows are written."""
    table = Invoice._meta.db_table
    if connection.vendor == "postgresql":
        return [row[0] for row in sql.run(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                                          "FROM generate_series(1, %s)", [count])]
    # SQLite: the write transaction holds the database, so nobody else takes ids meanwhile.
    row = sql.run("SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = %s), 0), "
                  f"COALESCE((SELECT max(id) FROM {table}), 0))", [table])
    last = row[0][0]
    return list(range(last + 1, last + count + 1))


def payments_send_many(attempts: list[Attempt]) -> list[ChargeResult | None]:
    """Step 2 for many attempts, outside any transaction: one call where the gateway takes a
    batch (`charge_many`), else one `payment_send` each. None: still unknown (PAY-2)."""
    if not attempts:
        return []
    gateway = get_gateway(attempts[0].gateway)
    charge_many = getattr(gateway, "charge_many", None)
    if charge_many is None or any(a.gateway != attempts[0].gateway for a in attempts):
        payments = Payment.objects.select_related("account", "payment_method").in_bulk(
            [a.payment_id for a in attempts])
        return [payment_send(payments[a.payment_id]) for a in attempts]
    requests = [ChargeRequest(customer_id=a.customer_id or _customer(gateway, a.account_id),
                              payment_method_id=a.payment_method_gateway_id, amount=a.amount, currency=a.currency,
                              idempotency_key=a.idempotency_key, description=f"Invoice {a.invoice_id}")
                for a in attempts]
    try:
        return charge_many(requests)
    except GatewayUnavailable:
        return [payment_lookup(a.payment(), unseen_means_not_sent=False) for a in attempts]


def _customer(gateway, account_id: int) -> str:
    return gateway.ensure_customer(Account.objects.get(pk=account_id))  # may create it at the gateway


def payments_record_succeeded(pairs: list[tuple[Attempt, ChargeResult]], *, now) -> list[Attempt]:
    """Step 3 for many succeeded charges, in the caller's transaction, which holds the invoices'
    subscriptions (so no one else settles these payments meanwhile): the invoices of the payments
    still unknown are paid (one update: amount, date and status), then those payments are marked
    succeeded (a conditional update: only payments still unknown, PAY-2). Invoices before payments,
    the lock order. Returns the attempts settled by this call (a webhook or another worker may
    have settled some first)."""
    if not pairs:
        return []
    invoice, payment = Invoice._meta.db_table, Payment._meta.db_table
    done: set[int] = set()
    for chunk in sql.chunks(pairs, 2):
        source, params = sql.rows_from({"id": "id"}, [(attempt.payment_id,) for attempt, _result in chunk])
        sql.run(f"UPDATE {invoice} SET amount_paid = {invoice}.amount_paid + p.amount, paid_at = %s, "
                f"status = CASE WHEN {invoice}.amount_paid + p.amount >= {invoice}.total AND {invoice}.status IN "
                f"(%s, %s) THEN %s ELSE {invoice}.status END FROM {source} JOIN {payment} p ON p.id = v.id "
                f"WHERE {invoice}.id = p.invoice_id AND p.status = %s",
                [now, InvoiceStatus.OPEN, InvoiceStatus.DRAFT, InvoiceStatus.PAID, *params, PaymentStatus.UNKNOWN])
        source, params = sql.rows_from({"id": "id", "reference": "text"},
                                       [(attempt.payment_id, result.reference) for attempt, result in chunk])
        done.update(row[0] for row in sql.run(
            f"UPDATE {payment} SET status = %s, gateway_reference = v.reference, settled_at = %s FROM {source} "
            f"WHERE {payment}.id = v.id AND {payment}.status = %s RETURNING {payment}.id",
            [PaymentStatus.SUCCEEDED, now, *params, PaymentStatus.UNKNOWN]))
    return [attempt for attempt, _result in pairs if attempt.payment_id in done]


