"""Set-wise renewals (subscriptions/renewals.py) and the events outbox they announce through."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.models import AuditEvent
from core import events, sql
from core.models import PendingEvent
from invoices import batch
from invoices.gateways import ChargeRequest, GatewayError, sandbox
from invoices.models import CreditNote, Invoice, PaymentMethod, SandboxCharge
from notifications.models import EmailLog
from subscriptions import billing
from subscriptions.models import Subscription
from subscriptions.scheduler import run
from tests.factories import AccountFactory

from .conftest import at, current


def _customer(plan="personal", card="pm_card_visa"):
    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-01"))
    sub = billing.subscribe(account, plan, now=at("2026-04-01"))
    if card != "pm_card_visa":
        billing.set_payment_method(account, card, now=at("2026-04-02"))
    return account, sub


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """The test's transaction never commits: run the on-commit callbacks as a commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_ren1_a_mixed_chunk_renews_each_subscription_as_one_by_one_would(catalog, committed):
    plain = [_customer()[0] for _ in range(3)]
    extra_account, extra_sub = _customer("advanced")
    billing.set_extra_properties(extra_sub, 2, now=at("2026-04-01"))
    credit_account, _sub = _customer()
    first = Invoice.objects.filter(account=credit_account).get()
    CreditNote.objects.create(account=credit_account, invoice=first, number="CN-2026-900001", kind="correction",
                              amount=Decimal("5.00"), remaining=Decimal("5.00"), reason="goodwill",
                              issued_at=at("2026-04-02"))
    no_card, _sub = _customer()
    PaymentMethod.objects.filter(account=no_card).update(detached_at=at("2026-04-03"))
    declined, _sub = _customer(card="pm_card_chargeDeclinedInsufficientFunds")
    numbers_before = set(Invoice.objects.exclude(number=None).values_list("number", flat=True))
    PendingEvent.objects.all().delete()  # the set-up never committed: its announcements never leave

    with committed():
        report = run(at("2026-04-30"))

    assert report.counts["renewals"] == 7 and not report.failures
    renewals = {i.account_id: i for i in Invoice.objects.filter(kind="renewal").prefetch_related("lines")}
    assert len(renewals) == 7
    for account in plain:
        assert (renewals[account.pk].status, renewals[account.pk].total) == ("paid", Decimal("14.00"))
    extra = renewals[extra_account.pk]
    assert [line.amount for line in extra.lines.all()] == [Decimal("29.00"), Decimal("60.00")]
    assert (extra.status, extra.total, extra.amount_paid) == ("paid", Decimal("89.00"), Decimal("89.00"))
    with_credit = renewals[credit_account.pk]  # DWN-4: the credit is used first
    assert (with_credit.credit_applied, with_credit.total, with_credit.status) == (
        Decimal("5.00"), Decimal("9.00"), "paid")
    for account in (no_card, declined):  # DUN-1: open, past due, the customer is told
        assert renewals[account.pk].status == "open"
        assert current(account).status == "past_due"
        assert EmailLog.objects.filter(account=account, kind="payment.failed").exists()
    # INV-1: the new numbers continue the series without a gap, in subscription order.
    new = sorted(set(Invoice.objects.exclude(number=None).values_list("number", flat=True)) - numbers_before)
    serials = [int(number.split("-")[1]) for number in new]
    assert serials == list(range(len(numbers_before) + 1, len(numbers_before) + 8))
    assert AuditEvent.objects.filter(action="invoice.issued", object_type="Invoice",
                                     object_id__in=[str(i.pk) for i in renewals.values()]).count() == 7
    # REN-5: a receipt for every paid renewal, delivered from the outbox, which is then empty.
    receipts = EmailLog.objects.filter(kind="payment.succeeded", related_type="invoice",
                                       related_id__in=[str(i.pk) for i in renewals.values() if i.status == "paid"])
    assert receipts.count() == 5
    assert not PendingEvent.objects.exists()


def test_ren1_the_run_renews_a_chunk_in_the_same_number_of_statements_whatever_its_size(catalog, monkeypatch,
                                                                                         committed):
    from subscriptions.scheduler import run_chunk

    deferred = []
    monkeypatch.setattr(events, "deliver_soon", lambda *ids: deferred.append(1))  # deliver later, by hand

    def statements(n):
        earlier = list(PendingEvent.objects.values_list("pk", flat=True))
        ids = [_customer()[1].pk for _ in range(n)]
        # The set-up never committed: its announcements never leave the outbox.
        PendingEvent.objects.exclude(pk__in=earlier).delete()
        with committed(), CaptureQueriesContext(connection) as queries:
            report = run_chunk("renewals", ids, at("2026-04-30"))
        assert report.counts["renewals"] == n and not report.failures
        return len(queries)

    assert statements(30) == statements(3)
    assert PendingEvent.objects.count() == 33 and len(deferred) == 2
    assert events.drain() == 33
    assert not PendingEvent.objects.exists()
    renewals = [str(pk) for pk in Invoice.objects.filter(kind="renewal").values_list("pk", flat=True)]
    assert EmailLog.objects.filter(kind="payment.succeeded", related_type="invoice",
                                   related_id__in=renewals).count() == 33


def test_ren3_a_renewal_already_invoiced_is_not_invoiced_again_by_the_set_wise_path(account):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    run(at("2026-04-30"))
    report = run(at("2026-04-30T00:15"))
    assert report.counts["renewals"] == 0
    assert Invoice.objects.filter(kind="renewal").count() == 1


def test_pay2_sandbox_charge_many_is_idempotent_by_key(account):
    method = PaymentMethod.objects.get(account=account)
    requests = [ChargeRequest(customer_id=f"cus_sbx_{account.pk}", payment_method_id=method.gateway_id,
                              amount=Decimal("14.00"), currency="USD", idempotency_key=f"key-{i}")
                for i in range(3)]
    gateway = sandbox.SandboxGateway()
    first = gateway.charge_many(requests)
    again = gateway.charge_many(requests)
    assert [r.reference for r in first] == [r.reference for r in again]
    assert all(r.succeeded for r in first)
    assert SandboxCharge.objects.count() == 3
    changed = [ChargeRequest(**{**requests[0].__dict__, "amount": Decimal("15.00")})]
    with pytest.raises(GatewayError):
        gateway.charge_many(changed)
    with sandbox.faults(unavailable=True):
        assert gateway.charge_many(requests) == [None, None, None]


def test_pay2_a_lost_batch_answer_is_settled_by_asking_the_gateway(account, settings):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    with sandbox.faults(timeout_after_charge=1):
        report = run(at("2026-04-30"))
    assert report.counts["renewals"] == 1
    assert Invoice.objects.get(kind="renewal").status == "paid"  # found by its key at once


def test_not3_outbox_events_are_written_with_the_change_and_survive_a_failing_listener(account, committed):
    delivered = []

    def broken(event):
        raise RuntimeError("listener down")

    events.subscribe("credit_note.issued", broken)
    events.subscribe("credit_note.issued", delivered.append)
    try:
        with committed(), transaction.atomic():
            events.emit_many("credit_note.issued", [(account.pk, {"credit_note_id": 1, "amount": "1.00",
                                                                  "reason": "x"})], now=at("2026-04-01"))
            transaction.set_rollback(True)
        assert not PendingEvent.objects.exists() and not delivered  # rolled back: nothing announced
        with committed(), transaction.atomic():
            events.emit_many("credit_note.issued", [(account.pk, {"credit_note_id": 2, "amount": "2.00",
                                                                  "reason": "y"})], now=at("2026-04-01"))
        assert [e.data["credit_note_id"] for e in delivered] == [2]  # delivered after the commit
        assert not PendingEvent.objects.exists()
    finally:
        events.unsubscribe("credit_note.issued", broken)
        events.unsubscribe("credit_note.issued", delivered.append)


def test_not3_undelivered_outbox_rows_wait_for_the_scheduled_drain(account, monkeypatch):
    from notifications.tasks import scheduled_email_retries

    monkeypatch.setattr(events, "deliver_soon", lambda *ids: None)  # the broker did not take the task
    with transaction.atomic():
        events.emit_many("payment.succeeded", [(account.pk, {"invoice_id": 0, "payment_id": 0, "amount": "1.00"})],
                         now=at("2026-04-01"))
    assert PendingEvent.objects.count() == 1
    assert scheduled_email_retries().startswith("outbox 1")
    assert not PendingEvent.objects.exists()
    assert batch.accounts_with_credit([account.pk]) == set()


def test_not3_a_drain_past_its_time_budget_hands_the_rest_to_another_task(account, monkeypatch):
    queued = []
    monkeypatch.setattr(events, "deliver_soon", lambda *ids: queued.append(1))
    with transaction.atomic():
        events.emit_many("credit_note.issued", [(account.pk, {"credit_note_id": n, "amount": "1.00", "reason": "x"})
                                                for n in range(5)], now=at("2026-04-01"))
    queued.clear()
    assert events.drain(batch=2, max_seconds=0) == 2  # one batch, then the rest is queued, not done here
    assert PendingEvent.objects.count() == 3 and queued == [1]
    assert events.drain(batch=2, max_seconds=None) == 3  # no budget: everything
    assert not PendingEvent.objects.exists() and queued == [1]


# --- roll-overs at the period end ------------------------------------------------------------------


def test_ren1_plain_rollovers_start_the_next_period_set_wise_and_the_rest_one_by_one(catalog, committed):
    from accounts.models import Property
    from tests.factories import PropertyFactory

    plain = [_customer() for _ in range(3)]
    leaving, leaving_sub = _customer()
    billing.cancel(leaving_sub, now=at("2026-04-10"))
    crowded, _sub = _customer()
    props = [PropertyFactory(account=crowded) for _ in range(4)]  # one more than Personal allows
    with committed():
        run(at("2026-04-30"))
        report = run(at("2026-05-01"))
    assert report.counts["rollovers"] == 5 and not report.failures
    for account, _sub in plain:
        sub = current(account)
        assert (sub.current_period_start, sub.current_period_end, sub.period_index) == (
            at("2026-05-01"), at("2026-06-01"), 1)
        assert sub.current_price == Decimal("14.00") and sub.status == "active"
        started = AuditEvent.objects.get(account=account, action="period.started")
        assert (started.before["period_end"], started.after["period_end"]) == (
            at("2026-05-01").isoformat(), at("2026-06-01").isoformat())
    assert current(leaving).plan.code == "free"  # CAN-2, one by one
    assert current(crowded).current_period_end == at("2026-06-01")
    paused = Property.objects.filter(account=crowded, status="paused")
    assert list(paused.values_list("pk", flat=True)) == [props[-1].pk]  # DWN-3: the newest, never deleted
    assert run(at("2026-05-01T00:15")).counts["rollovers"] == 0


def test_ren1_rollovers_take_the_same_number_of_statements_whatever_the_chunk_size(catalog):
    from subscriptions.scheduler import run_chunk

    def statements(n):
        ids = [_customer()[1].pk for _ in range(n)]
        run_chunk("renewals", ids, at("2026-04-30"))
        with CaptureQueriesContext(connection) as queries:
            report = run_chunk("rollovers", ids, at("2026-05-01"))
        assert report.counts["rollovers"] == n and not report.failures
        return len(queries)

    assert statements(30) == statements(3)


def test_ren3_a_renewed_subscription_is_not_selected_again_until_its_next_period(account, committed):
    from subscriptions.scheduler import anything_due
    from subscriptions.selectors import due_renewals

    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    with committed():
        assert run(at("2026-04-30")).counts["renewals"] == 1
    # Until the period ends the run has nothing to do: it does not claim the renewed row again.
    assert not due_renewals(at("2026-04-30T12:00")).exists()
    assert not anything_due(at("2026-04-30T12:00"))
    with committed():
        run(at("2026-05-01"))  # the next period starts
    assert list(due_renewals(at("2026-05-31")).values_list("pk", flat=True)) == [sub.pk]
    with committed():
        assert run(at("2026-05-31")).counts["renewals"] == 1
    assert Invoice.objects.filter(kind="renewal").count() == 2


def test_ren3_issue_facts_reads_each_keys_invoice_credit_card_and_tax_details_in_one_statement(catalog):
    account, _sub = _customer()
    other, _sub = _customer()
    Invoice.objects.filter(account=account).update(dedupe_key="renewal:taken")
    CreditNote.objects.create(account=other, invoice=Invoice.objects.get(account=other), number="CN-2026-900002",
                              kind="correction", amount=Decimal("5.00"), remaining=Decimal("5.00"), reason="goodwill",
                              issued_at=at("2026-04-02"))
    PaymentMethod.objects.filter(account=other).update(detached_at=at("2026-04-03"))
    AccountFactory._meta.model.objects.filter(pk=account.pk).update(country="DE", vat_id="DE136695976")
    card = PaymentMethod.objects.get(account=account, is_default=True)

    with CaptureQueriesContext(connection) as queries:
        facts = batch.issue_facts([(account.pk, "renewal:taken"), (other.pk, "renewal:free"),
                                    (account.pk, "renewal:free")])

    assert len(queries.captured_queries) == 1
    assert [f.invoiced for f in facts] == [True, False, False]  # REN-3
    assert [f.has_credit for f in facts] == [False, True, False]  # DWN-4: those go one by one
    assert (facts[0].payment_method_id, facts[0].payment_method_gateway_id) == (card.pk, card.gateway_id)
    assert facts[1].payment_method_id is None  # DUN-1: no card
    assert (facts[2].country, facts[2].vat_id) == ("DE", "DE136695976")  # TAX-3, INV-4


def test_any_lookup_finds_what_in_finds_with_one_parameter_on_postgresql(catalog):
    """`field__any=values` (core.sql.AnyOf, the billing run's batch reads) selects the rows `__in`
    selects, for primary keys (ints, bound as one array literal, or strings), foreign keys and text,
    and binds one array on PostgreSQL however many values there are (issue 17)."""
    accounts = [_customer()[0] for _ in range(3)]
    ids = [a.pk for a in accounts[:2]] + [10**9]
    cases = (("pk", ids, AccountFactory._meta.model), ("pk", [str(pk) for pk in ids], AccountFactory._meta.model),
             ("account_id", ids, PaymentMethod),
             ("account", ids, PaymentMethod), ("gateway_id", ["pm_card_visa", "x'y"], PaymentMethod))
    for lookup, values, model in cases:
        found = set(model.objects.filter(**{f"{lookup}__any": values}).values_list("pk", flat=True))
        assert found == set(model.objects.filter(**{f"{lookup}__in": values}).values_list("pk", flat=True))
        assert found or lookup == "gateway_id"
        _sql, params = model.objects.filter(**{f"{lookup}__any": values}).query.sql_with_params()
        assert len(params) == (1 if connection.vendor == "postgresql" else len(values))
    assert not PaymentMethod.objects.filter(account_id__any=[]).exists()


@pytest.mark.django_db
def test_rows_from_gives_back_every_value_when_columns_are_the_same_in_every_row():
    """`core.sql.rows_from` binds a column holding one value in every row once, beside the arrays
    (issue 17): the relation still has every row with its values, in every kind, whatever the
    column's position, and decimals that are equal but written differently (1.0, 1.00) keep their
    own exponent, as a numeric column would store them."""
    when = at("2026-04-30")
    columns = {"n": "int", "kind": "text", "at": "datetime", "amount": "decimal", "rate": "decimal",
               "ok": "bool", "ref": "id", "note": "text", "data": "json"}
    rows = [(n, "renewal", when, Decimal("10.00"), Decimal("1.0") if n else Decimal("1.00"), True, None,
             f"n{n}", {"a": 1}) for n in range(3)]
    for given in (rows, rows[:1]):
        source, params = sql.rows_from(columns, given)
        found = sql.run(f"SELECT {', '.join(f'v.{name}' for name in columns)} FROM {source} ORDER BY v.n", params)
        assert [(row[0], row[1], _aware(row[2]), Decimal(row[3]), str(row[4]), bool(row[5]), row[6], row[7],
                 row[8] if isinstance(row[8], dict) else json.loads(row[8])) for row in found] == [
            (n, kind, at, amount, str(rate), ok, ref, note, data)
            for n, kind, at, amount, rate, ok, ref, note, data in given]


def _aware(value):
    """A datetime read back raw: SQLite returns the text it stored (UTC)."""
    return datetime.fromisoformat(value).replace(tzinfo=UTC) if isinstance(value, str) else value


def test_values_of_reads_a_claim_as_values_list_does(catalog):
    """`core.sql.values_of` (the billing run's claim, read in binary on PostgreSQL, issue 17) gives
    the rows `values_list` gives, equal and of the same types: ids, text, NULLs and timestamps
    (aware, in UTC), joined columns included."""
    subs = [_customer()[1] for _ in range(2)]
    fields = ("id", "account_id", "scheduled_plan_id", "cycle", "anchor_at", "current_period_end",
              "scheduled_extra_properties", "account__timezone")
    with transaction.atomic():
        queryset = Subscription.objects.filter(pk__any=[sub.pk for sub in subs]).order_by("pk").values_list(*fields)
        rows = sql.values_of(queryset)
        assert rows == list(queryset)
        assert [[type(value) for value in row] for row in rows] == [[type(value) for value in row]
                                                                    for row in queryset]
        assert rows[0][4].utcoffset().total_seconds() == 0
