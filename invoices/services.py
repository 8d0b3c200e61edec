"""Invoices, credit notes and charge attempts: the money ledger under the engine.

Only the engine (subscriptions: charges, lifecycle, renewals, overage) calls these. A charge is
three steps so that no crash or timeout can charge twice (PAY-2, REN-3):

1. `payment_begin` (in the caller's transaction): a Payment row in status `unknown` with a
   unique idempotency key is committed *before* the gateway is called;
2. `payment_send` (outside any transaction): the gateway call; a lost answer is settled at once
   by asking the gateway about the key, and stays `unknown` if it cannot tell;
3. `payment_record` (in a new transaction): the outcome is written; the invoice is paid.

An `unknown` payment is always settled with the gateway (find by key) before any new attempt.
"""

import json
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

from django.db import connection
from django.db.models import F, Q

from accounts.models import Account, AuditEvent
from core import sql
from core.money import ZERO, cents
from core.seller import seller_record

from . import tax_rates, tax_rules
from .gateways import ChargeRequest, ChargeResult, GatewayError, GatewayUnavailable, RefundResult, get_gateway
from .models import (
    CreditApplication,
    CreditNote,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    RefundStatus,
    Sequence,
)


@dataclass(frozen=True)
class Line:
    """An invoice line to create: a quote line plus the period and unit it covers."""

    description: str
    amount: Decimal
    computation: str = ""
    quantity: Decimal = Decimal("1")
    unit_price: Decimal | None = None
    period_start: object = None
    period_end: object = None

    @classmethod
    def from_quote(cls, line, period_start=None, period_end=None) -> "Line":
        """From a quote line (description, amount, computation), for the span it charges."""
        return cls(line.description, line.amount, line.computation, quantity=Decimal(line.quantity),
                   unit_price=line.unit_price, period_start=period_start, period_end=period_end)


def next_number(series: str, year: int) -> int:
    """Gapless (INV-1): the counter row is locked until the caller's transaction ends, so a
    rollback gives the number back and two issuers never get the same one."""
    return next_numbers(series, year, 1)[0]


def next_numbers(series: str, year: int, count: int) -> range:
    """`count` consecutive numbers, under the same lock as `next_number`."""
    Sequence.objects.get_or_create(series=series, year=year)
    seq = Sequence.objects.select_for_update().get(series=series, year=year)
    seq.last = F("last") + count
    seq.save(update_fields=["last"])
    seq.refresh_from_db(fields=["last"])
    return range(seq.last - count + 1, seq.last + 1)


def invoice_create(*, account, subscription, kind, lines: list[Line], currency: str, now,
                   period_start=None, period_end=None, dedupe_key=None, notes="",
                   pending_change=None) -> Invoice:
    """A draft invoice with its lines, its tax and the account's credit applied (DWN-4, REN-2).

    The amounts and the facts they rest on are fixed together, here, because the draft's total is
    what the gateway charges: the account's billing details as they are now (INV-4) and its tax
    treatment at the rate in force today (TAX-2, TAX-3), tax per line, half up; the seller as
    configured now (the `seller` column's default) and the account's billing time zone, the calendar
    of every date it prints (INV-6). Issuing numbers and dates the draft; nothing of it changes
    after (INV-2, INV-6)."""
    decision = tax_rates.decision_for(account, now)
    taxed = _taxed(lines, decision)
    invoice = Invoice.objects.create(
        account=account, subscription=subscription, kind=kind, currency=currency,
        period_start=period_start, period_end=period_end, dedupe_key=dedupe_key, notes=notes,
        pending_change=pending_change or {}, created_at=now, status=InvoiceStatus.DRAFT,
        timezone=account.timezone, **_bill_to(account), **_tax_fields(decision, taxed),
    )
    InvoiceLine.objects.bulk_create([
        InvoiceLine(invoice=invoice, **_line_fields(line, invoice.period_start, invoice.period_end, decision.rate,
                                                    line_tax))
        for line, line_tax in zip(lines, taxed.line_taxes, strict=True)])
    invoice.credit_applied = credit_apply(invoice, now=now)
    invoice.total = taxed.gross - invoice.credit_applied
    invoice.save(update_fields=["credit_applied", "total"])
    return invoice


def _taxed(lines: list[Line], decision: tax_rules.TaxDecision) -> tax_rules.Taxed:
    inclusive = decision.charges_tax and tax_rates.prices_include_tax()
    return tax_rules.taxed([line.amount for line in lines], decision.rate, inclusive=inclusive)


def _bill_to(account) -> dict:
    """The account's billing details as they are now (INV-4)."""
    return {"bill_to_name": account.name, "bill_to_company": account.company, "bill_to_address": account.address,
            "bill_to_country": str(account.country or ""), "bill_to_vat_id": account.vat_id}


def _tax_fields(decision: tax_rules.TaxDecision, taxed: tax_rules.Taxed) -> dict:
    """The invoice's tax columns: the frozen treatment and the amounts (TAX-2)."""
    return {"tax_treatment": decision.treatment, "tax_rate": decision.rate, "tax_country": decision.country,
            "tax_vat_id": decision.vat_id, "tax_mention": decision.mention, "prices_include_tax": taxed.inclusive,
            "subtotal": cents(taxed.subtotal), "tax_amount": taxed.tax}


def _line_fields(line: Line, period_start, period_end, tax_rate: Decimal, tax_amount: Decimal) -> dict:
    """An invoice line's columns (the set-wise insert writes them in this order)."""
    return {"description": line.description[:300], "computation": line.computation[:300],
            "quantity": line.quantity, "unit_price": line.amount if line.unit_price is None else line.unit_price,
            "amount": line.amount, "period_start": line.period_start or period_start,
            "period_end": line.period_end or period_end, "tax_rate": tax_rate, "tax_amount": tax_amount}


def credit_apply(invoice: Invoice, *, now) -> Decimal:
    """Use the account's remaining credit, oldest note first, up to the invoice's amount with tax
    (credit notes hold tax-inclusive amounts: they reversed the tax of what they credit)."""
    due = invoice.gross_amount
    applied = ZERO
    notes = CreditNote.objects.select_for_update().filter(
        account_id=invoice.account_id, remaining__gt=0, currency=invoice.currency
    ).order_by("issued_at", "id")
    for note in notes:
        if due <= 0:
            break
        use = min(note.remaining, due)
        note.remaining -= use
        note.save(update_fields=["remaining"])
        CreditApplication.objects.create(credit_note=note, invoice=invoice, amount=use, applied_at=now)
        due -= use
        applied += use
    return applied


def credit_release(invoice: Invoice) -> None:
    """Give back the credit a draft reserved, when the draft is abandoned (UPG-4)."""
    for application in CreditApplication.objects.select_related("credit_note").filter(invoice=invoice):
        CreditNote.objects.filter(pk=application.credit_note_id).update(remaining=F("remaining") + application.amount)
        application.delete()  # a draft's reservation, never part of an issued document
    invoice.refresh_from_db()
    Invoice.objects.filter(pk=invoice.pk).update(credit_applied=ZERO, total=invoice.gross_amount)
    invoice.refresh_from_db()


def invoice_issue(invoice: Invoice, *, now) -> Invoice:
    """Give the invoice its number and its issue date (INV-1); its billing details and tax were
    fixed with its amounts (`invoice_create`). A zero invoice is paid at once without a charge
    (INV-5)."""
    if invoice.number:
        return invoice
    year = now.astimezone(UTC).year
    _issued(invoice, invoice.account, f"{year}-{next_number('INV', year):06d}", now)
    invoice.save()
    return invoice


def _issued(invoice: Invoice, account, number: str, now) -> None:
    invoice.number = number
    invoice.issued_at = now
    if not invoice.bill_to_name:  # a draft made before its details were fixed with its amounts
        for field, value in _bill_to(account).items():
            setattr(invoice, field, value)
    if invoice.status == InvoiceStatus.DRAFT:
        invoice.status = InvoiceStatus.PAID if invoice.amount_due <= 0 else InvoiceStatus.OPEN
        if invoice.status == InvoiceStatus.PAID:
            invoice.paid_at = now


# --- set-wise: the billing run issues and collects a batch of invoices in a few statements ---------
#
# No model instance per row: each statement joins the whole batch as a relation (`core.sql.rows_from`:
# binary arrays on PostgreSQL, VALUES on SQLite), and what the next step needs travels as small
# frozen rows (`Attempt`). The guarantees are those of the one-by-one functions above.


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
    # TAX-2/3: each draft's tax in Python, from its account's country and VAT ID read once for the
    # batch (the same read is written as the invoice's bill-to country and VAT ID), one read of the
    # rates; written by the same set-based statements as the rest.
    customers = {d.account_id: d.customer for d in drafts if d.customer is not None}
    if len(customers) < len({d.account_id for d in drafts}):  # not read by the caller (`issue_facts`)
        customers = {row[0]: row[1:] for row in Account.objects.filter(pk__any={d.account_id for d in drafts})
                     .values_list("id", "country", "vat_id")}
    decisions = tax_rates.decisions_for(customers, now)
    taxed_of: dict[tuple, tax_rules.Taxed] = {}  # the batch's drafts share a few (prices, rate): each computed once
    taxed = []
    for draft in drafts:
        decision = decisions[draft.account_id]
        key = (decision.rate, decision.charges_tax, *(line.amount for line in draft.lines))
        if key not in taxed_of:
            taxed_of[key] = _taxed(draft.lines, decision)
        taxed.append(taxed_of[key])
    totals = [t.gross for t in taxed]
    line_rows = []
    for invoice_id, draft, t in zip(ids, drafts, taxed, strict=True):
        rate = decisions[draft.account_id].rate
        for line, line_tax in zip(draft.lines, t.line_taxes, strict=True):
            fields = _line_fields(line, draft.period_start, draft.period_end, rate, line_tax)
            line_rows.append((invoice_id, *fields.values()))
    line_columns = {"invoice_id": "id", "description": "text", "computation": "text", "quantity": "decimal",
                    "unit_price": "decimal", "amount": "decimal", "period_start": "datetime",
                    "period_end": "datetime", "tax_rate": "decimal", "tax_amount": "decimal"}
    for chunk in sql.chunks(line_rows, len(line_columns)):
        source, params = sql.rows_from(line_columns, chunk)
        sql.run(f"INSERT INTO {InvoiceLine._meta.db_table} ({', '.join(line_columns)}) "
                f"SELECT {', '.join(line_columns)} FROM {source}", params)
    gateway = get_gateway().name
    keys = [f"prorata-inv{invoice_id}-a1" for invoice_id in ids]
    payment_columns = {"invoice_id": "id", "account_id": "id", "payment_method_id": "id", "amount": "decimal",
                       "currency": "text", "idempotency_key": "text"}
    payment_of = {}
    rows = [(invoice_id, draft.account_id, draft.payment_method_id, total, draft.currency, key)
            for invoice_id, draft, total, key in zip(ids, drafts, totals, keys, strict=True)]
    for chunk in sql.chunks(rows, len(payment_columns)):
        source, params = sql.rows_from(payment_columns, chunk)
        payment_of.update((invoice_id, pk) for pk, invoice_id in sql.run(
            f"INSERT INTO {Payment._meta.db_table} ({', '.join(payment_columns)}, card_brand, card_last4, gateway, "
            "gateway_reference, status, decline_code, decline_message, refunded_amount, attempted_at) "
            f"SELECT {', '.join('v.' + c for c in payment_columns)}, COALESCE(m.brand, ''), COALESCE(m.last4, ''), "
            f"%s, '', %s, '', '', 0, %s FROM {source} " + sql.probe_join(  # the card as charged (INV-6)
                PaymentMethod._meta.db_table, "m", "m.id = v.payment_method_id", ["brand", "last4"], left=True)
            + " RETURNING id, invoice_id",
            [gateway, PaymentStatus.UNKNOWN, now, *params]))
    _invoices_number_and_insert(ids, drafts, taxed, [customers[d.account_id] for d in drafts],
                                [decisions[d.account_id] for d in drafts], year, now, audit_actor)
    return [Attempt(payment_of[invoice_id], invoice_id, draft.account_id, total, draft.currency, key,
                    draft.payment_method_gateway_id, draft.customer_id, gateway)
            for invoice_id, draft, total, key in zip(ids, drafts, totals, keys, strict=True)]


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


def _invoices_number_and_insert(ids, drafts, taxed, customers, decisions, year, now, audit_actor) -> None:
    seller = json.dumps(seller_record())  # INV-6: the seller as configured at this batch's issue
    rows = [(invoice_id, draft.account_id, draft.subscription_id, draft.kind, draft.currency, draft.dedupe_key,
             draft.period_start, draft.period_end, cents(t.subtotal), t.tax, t.gross, str(country or ""), vat_id or "",
             d.treatment, d.rate, d.country, d.vat_id, d.mention, t.inclusive, seller)
            for invoice_id, draft, t, (country, vat_id), d
            in zip(ids, drafts, taxed, customers, decisions, strict=True)]
    totals = [t.gross for t in taxed]
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
    audits = [(draft.account_id, str(invoice_id), {"number": number, "kind": draft.kind, "total": str(total)})
              for invoice_id, draft, total, number in zip(ids, drafts, totals, numbers, strict=True)]
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


def invoice_void(invoice: Invoice, *, now) -> None:
    Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.VOID, voided_at=now)
    invoice.refresh_from_db()


def credit_note_issue(*, account, invoice, kind, reason: str, now, amount: Decimal | None = None,
                      net_amount: Decimal | None = None, remaining=None, computation="",
                      issued_by=None) -> CreditNote:
    """A credit note on `invoice` (INV-2), its tax reversed in proportion to the invoice's (TAX-2):
    give `amount`, what is credited or refunded with tax (a refund: the money paid back), or
    `net_amount`, a value before tax (DWN-4's unused days), to which the invoice's tax is added.
    Its treatment and rate are the invoice's, not the customer's today."""
    net, tax_amount = tax_rules.credit_split(invoice_net=invoice.net_amount, invoice_tax=invoice.tax_amount,
                                       net=net_amount, gross=amount)
    gross = net + tax_amount
    year = now.astimezone(UTC).year
    number = f"CN-{year}-{next_number('CN', year):06d}"
    return CreditNote.objects.create(
        account=account, invoice=invoice, number=number, kind=kind, currency=invoice.currency,
        amount=gross, net_amount=net, tax_amount=tax_amount, tax_rate=invoice.tax_rate,
        tax_treatment=invoice.tax_treatment, remaining=gross if remaining is None else remaining, reason=reason,
        computation=computation[:300], issued_at=now, issued_by=issued_by,
        timezone=account.timezone,  # INV-6: its dates on the account's calendar at issue; the seller: the default
    )


def default_payment_method(account) -> PaymentMethod | None:
    return PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True).first()


def payment_begin(invoice: Invoice, payment_method: PaymentMethod, *, now) -> Payment:
    """Step 1: record the attempt before calling the gateway."""
    attempt = Payment.objects.filter(invoice=invoice).count() + 1
    return Payment.objects.create(
        invoice=invoice, account_id=invoice.account_id, payment_method=payment_method,
        card_brand=payment_method.brand, card_last4=payment_method.last4,
        amount=invoice.amount_due, currency=invoice.currency,
        idempotency_key=f"prorata-inv{invoice.pk}-a{attempt}", gateway=get_gateway().name,
        status=PaymentStatus.UNKNOWN, attempted_at=now,
    )


def payment_send(payment: Payment) -> ChargeResult | None:
    """Step 2, outside any transaction: the charge. None means the outcome is still unknown."""
    gateway = get_gateway(payment.gateway)
    method = payment.payment_method
    try:
        return gateway.charge(
            customer_id=gateway.ensure_customer(payment.account), payment_method_id=method.gateway_id,
            amount=payment.amount, currency=payment.currency, idempotency_key=payment.idempotency_key,
            description=f"Invoice {payment.invoice_id}",
        )
    except GatewayUnavailable:
        # Right after a lost answer the charge may still be in progress at the gateway: a key it
        # has not seen yet stays unknown, and is settled after the grace period (PAY-2).
        return payment_lookup(payment, unseen_means_not_sent=False)


def payment_lookup(payment: Payment, *, unseen_means_not_sent: bool = True) -> ChargeResult | None:
    """PAY-2: ask the gateway what happened to this key. None: it cannot tell yet."""
    try:
        found = get_gateway(payment.gateway).find_charge(payment.idempotency_key)
    except GatewayUnavailable:
        return None
    if found is None:
        if not unseen_means_not_sent:
            return None
        # Long after the attempt the gateway has never seen the key: it did not happen.
        return ChargeResult(False, "", "not_sent", "The payment was not sent to the bank.")
    return found


def payment_record(payment: Payment, result: ChargeResult, *, now) -> bool:
    """Step 3: write the outcome once; returns True when this call settled it. The invoice is
    marked paid when the charge succeeded."""
    updated = Payment.objects.filter(pk=payment.pk, status=PaymentStatus.UNKNOWN).update(
        status=PaymentStatus.SUCCEEDED if result.succeeded else PaymentStatus.FAILED,
        gateway_reference=result.reference, decline_code=result.decline_code[:60],
        decline_message=(result.decline_message or "")[:300], settled_at=now,
    )
    payment.refresh_from_db()
    if updated and result.succeeded:
        Invoice.objects.filter(pk=payment.invoice_id).update(
            amount_paid=F("amount_paid") + payment.amount, paid_at=now,
        )
        invoice = Invoice.objects.get(pk=payment.invoice_id)
        if invoice.amount_paid >= invoice.total and invoice.status in (InvoiceStatus.OPEN, InvoiceStatus.DRAFT):
            Invoice.objects.filter(pk=invoice.pk).update(status=InvoiceStatus.PAID)
    return bool(updated)


# --- refunds: three steps like a charge (PAY-2, REF-2, REF-4) ----------------------------------------


def refund_begin(payment: Payment, amount: Decimal, *, key: str, reason: str, now, issued_by=None,
                 request=None) -> Refund:
    """Step 1, in the caller's transaction: the refund's intent, committed before the gateway is
    called. Idempotent by `key`: the same key returns the refund recorded first."""
    refund, _created = Refund.objects.get_or_create(
        idempotency_key=key,
        defaults={"payment": payment, "amount": amount, "reason": reason, "issued_by": issued_by,
                  "refund_request": request, "status": RefundStatus.UNKNOWN, "created_at": now},
    )
    return refund


def refund_send(refund: Refund) -> RefundResult | GatewayError | None:
    """Step 2, outside any transaction: the gateway refunds with the refund's key (never twice for
    one key, so sending an unknown refund again is how it is settled). Returns the result, the
    gateway's refusal, or None when the answer was lost (the refund stays unknown)."""
    payment = refund.payment
    try:
        return get_gateway(payment.gateway).refund(reference=payment.gateway_reference, amount=refund.amount,
                                                   idempotency_key=refund.idempotency_key)
    except GatewayUnavailable:
        return None
    except GatewayError as exc:
        return exc


def refund_record(refund: Refund, outcome: RefundResult | GatewayError, *, now) -> bool:
    """Step 3, in the caller's transaction: the outcome is written once (a conditional update of
    an unknown refund). On success the refund credit note is issued and the payment's refunded
    amount grows. Returns True when this call recorded it."""
    succeeded = isinstance(outcome, RefundResult)
    updated = Refund.objects.filter(pk=refund.pk, status=RefundStatus.UNKNOWN).update(
        status=RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED, settled_at=now,
        gateway_reference=outcome.reference if succeeded else "",
        failure_message="" if succeeded else str(outcome)[:300],
    )
    refund.refresh_from_db()
    if not updated or not succeeded:
        return bool(updated)
    payment = refund.payment
    note = credit_note_issue(account=payment.account, invoice=payment.invoice, kind="refund", amount=refund.amount,
                             remaining=ZERO, reason=refund.reason, now=now, issued_by=refund.issued_by)
    Refund.objects.filter(pk=refund.pk).update(credit_note=note)
    Payment.objects.filter(pk=payment.pk).update(refunded_amount=F("refunded_amount") + refund.amount)
    refund.refresh_from_db()
    return True


def refund_record_external(payment: Payment, amount: Decimal, reference: str, *, reason: str, now) -> Refund:
    """A refund made at the gateway outside Prorata (the Stripe dashboard): recorded once, as
    succeeded, with its refund credit note."""
    existing = Refund.objects.filter(Q(gateway_reference=reference) | Q(idempotency_key=f"external-{reference}"))
    if existing.exists():
        return existing.first()
    refund = Refund.objects.create(payment=payment, amount=amount, idempotency_key=f"external-{reference}",
                                   status=RefundStatus.UNKNOWN, reason=reason, created_at=now)
    refund_record(refund, RefundResult(reference, amount), now=now)
    return refund
