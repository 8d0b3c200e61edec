"""The engine's safety rules (issue "Engine by ownership"): one transition table for every status
change, one lock order, the gateway never inside an open transaction (refunds included), and the
events outbox as the only way an announcement leaves a transaction."""

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction

from accounts.models import Account, AccountStatus
from core import events
from core.models import PendingEvent
from invoices import services as ledger
from invoices.gateways import ChargeResult
from invoices.models import Invoice, Payment, PaymentMethod, Refund, RefundRequest, SandboxRefund
from subscriptions import billing, charges, lifecycle, staff
from subscriptions.lifecycle import ACCOUNT_TRANSITIONS, SUBSCRIPTION_TRANSITIONS, TransitionNotAllowed
from subscriptions.models import Status, Subscription
from tests.factories import AccountFactory

from .conftest import at, current

SUBSCRIPTION_STATES = [None, *Status.values]


# --- one transition table -----------------------------------------------------------------------------


@pytest.mark.parametrize("frm", SUBSCRIPTION_STATES)
@pytest.mark.parametrize("to", Status.values)
def test_every_subscription_status_change_is_in_the_table_or_refused(frm, to, catalog):
    """Walks the whole table: each listed transition is allowed, every other one raises."""
    sub = Subscription(account=AccountFactory(), plan=catalog["personal"])
    if frm is not None:
        sub.status, sub.pk = frm, 1
    if frm == to or (frm, to) in SUBSCRIPTION_TRANSITIONS:
        lifecycle.subscription_status_set(sub, to)
        assert sub.status == to
    else:
        with pytest.raises(TransitionNotAllowed):
            lifecycle.subscription_status_set(sub, to)


def test_the_subscription_table_covers_the_documented_lifecycle():
    """TRI-3, TRI-5, DUN-1, DUN-3: the transition table has the documented moves, and an ended subscription never
    becomes active again."""
    assert {(Status.TRIALING, Status.ACTIVE), (Status.ACTIVE, Status.PAST_DUE),
            (Status.PAST_DUE, Status.SUSPENDED), (Status.SUSPENDED, Status.ACTIVE),
            (Status.CANCELED, Status.TRIALING)} <= set(SUBSCRIPTION_TRANSITIONS)
    assert (Status.CANCELED, Status.ACTIVE) not in SUBSCRIPTION_TRANSITIONS  # an ended subscription stays ended


@pytest.mark.parametrize("frm", AccountStatus.values)
@pytest.mark.parametrize("to", AccountStatus.values)
def test_every_account_status_change_is_in_the_table_or_refused(frm, to, db):
    """Safety: suspending or lifting moves an account only along the transition table; any other move raises
    TransitionNotAllowed."""
    account = AccountFactory()
    Account.objects.filter(pk=account.pk).update(status=frm)
    account.refresh_from_db()
    if (frm, to) in ACCOUNT_TRANSITIONS:
        (lifecycle.account_suspend(account, "policy_violation", "x", actor=None, now=at("2026-04-01"))
         if to == AccountStatus.SUSPENDED else lifecycle.account_lift(account, "x", actor=None, now=at("2026-04-01")))
        account.refresh_from_db()
        assert account.status == to
    else:
        with pytest.raises(TransitionNotAllowed):
            if to == AccountStatus.SUSPENDED:
                lifecycle.account_suspend(account, "policy_violation", "x", actor=None, now=at("2026-04-01"))
            else:
                lifecycle.account_lift(account, "x", actor=None, now=at("2026-04-01"))


def test_an_engine_change_outside_the_table_raises_and_changes_nothing(account):
    """Reactivating a trial that is active is not a transition the table has."""
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    with pytest.raises(TransitionNotAllowed), transaction.atomic():
        lifecycle.trial_reactivate(sub, actor=None, now=at("2026-04-02"))
    assert current(account).status == Status.ACTIVE


# --- the outbox is the only way out ----------------------------------------------------------------------


def test_not3_an_event_is_a_row_of_the_transaction_and_a_rollback_announces_nothing(account):
    delivered = []
    events.subscribe("period.extended", delivered.append)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            events.emit("period.extended", account.pk, subscription_id=1, days=1, period_end="2026-05-01", reason="x")
            assert PendingEvent.objects.filter(kind="period.extended").count() == 1
            raise RuntimeError("the change fails after the announcement")
        assert not PendingEvent.objects.filter(kind="period.extended").exists() and delivered == []
        with transaction.atomic():
            events.emit("period.extended", account.pk, subscription_id=1, days=1, period_end="2026-05-01", reason="x")
        assert events.drain() == 1 and [event.kind for event in delivered] == ["period.extended"]
    finally:
        events.unsubscribe("period.extended", delivered.append)


# --- refunds: intent, call, outcome (PAY-2, REF-2) ---------------------------------------------------------


@pytest.fixture
def converted(account, committed):
    billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))
    from subscriptions import scheduler

    with committed():
        scheduler.run(now=at("2026-04-15T08:00"))
    return Invoice.objects.get(account=account, kind="trial_conversion")


@pytest.fixture
def approver(db):
    from django.contrib.auth.models import Group

    from accounts.groups import BILLING_MANAGERS, ensure_staff_groups
    from tests.factories import UserFactory

    ensure_staff_groups()
    user = UserFactory(username="manager@prorata.test", is_staff=True)
    user.groups.add(Group.objects.get(name=BILLING_MANAGERS))
    return user


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def test_ref2_a_refund_whose_outcome_was_lost_after_the_gateway_call_is_settled_once_by_reconcile(
    converted, approver, monkeypatch
):
    """A fault after the gateway refunded (the process dies before recording it): the refund is on
    record as an intent, the money went back once, and reconcile_payments records it and finishes
    the decision: one gateway refund, one credit note, the request refunded."""
    from subscriptions.management.commands.reconcile_payments import reconcile_payments

    request = billing.request_refund(converted, now=at("2026-04-20"))
    recorded = ledger.refund_record

    def crash_after_the_call(refund, outcome, *, now):
        raise SystemExit("the worker died after the gateway refunded")

    monkeypatch.setattr(ledger, "refund_record", crash_after_the_call)
    with pytest.raises(SystemExit):
        staff.decide_refund(request, approve=True, reason="No usage", actor=approver, now=at("2026-04-21"))
    refund = Refund.objects.get()
    assert (refund.status, refund.credit_note) == ("unknown", None)  # the intent was committed first
    assert SandboxRefund.objects.count() == 1  # the money went back
    request.refresh_from_db()
    assert request.status == "approved"

    monkeypatch.setattr(ledger, "refund_record", recorded)
    report = reconcile_payments(since=at("2026-04-01"), now=at("2026-04-22"))
    assert any(f"refund {refund.pk}" in change and "succeeded" in change for change in report.changes)
    refund.refresh_from_db()
    request.refresh_from_db()
    assert refund.status == "succeeded" and refund.credit_note.amount == Decimal("14.00")
    assert SandboxRefund.objects.count() == 1  # sent again with the same key: not refunded twice
    assert Payment.objects.get(invoice=converted, status="succeeded").refunded_amount == Decimal("14.00")
    assert (request.status, request.refund_id) == ("refunded", refund.pk)
    assert current(converted.account).plan.code == "free"
    assert reconcile_payments(since=at("2026-04-01"), now=at("2026-04-23")).changes == []  # nothing left


def test_ref2_a_gateway_that_does_not_answer_leaves_the_refund_pending_and_tells_staff(converted, approver):
    from invoices.gateways import sandbox

    request = billing.request_refund(converted, now=at("2026-04-20"))
    with sandbox.faults(unavailable=True), pytest.raises(billing.BillingError, match="did not confirm the refund"):
        staff.decide_refund(request, approve=True, reason="No usage", actor=approver, now=at("2026-04-21"))
    request.refresh_from_db()
    assert request.status == "approved" and Refund.objects.get().status == "unknown"
    assert not SandboxRefund.objects.exists()
    staff.refunds_settle(now=at("2026-04-22"))
    request.refresh_from_db()
    assert request.status == "refunded" and SandboxRefund.objects.count() == 1


# --- one lock order (PostgreSQL, two connections) -----------------------------------------------------------


def _past_due_with_a_retry_in_flight():
    """A past-due subscription whose open renewal has a charge attempt whose outcome is not known yet."""
    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-01"))
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-02"))
    from subscriptions import renewals

    renewals.renew(current(account).pk, at("2026-04-30T01:00"))  # the renewal charge fails (DUN-1)
    sub = current(account)
    assert sub.status == Status.PAST_DUE
    invoice = Invoice.objects.get(account=account, kind="renewal", status="open")
    payment = ledger.payment_begin(invoice, PaymentMethod.objects.get(account=account, is_default=True),
                                   now=at("2026-05-01T01:00"))
    return sub, invoice, payment


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_dun4_cancel_racing_the_settlement_of_the_open_invoice_never_deadlocks(catalog):
    """`cancel` (subscription, then its open invoices) raced against `payment_settle` (invoice, then
    subscription, before) 50 times on two connections: no deadlock, and each time the state is one
    of the two serial outcomes."""
    errors = []
    for _round in range(50):
        sub, invoice, payment = _past_due_with_a_retry_in_flight()
        start = threading.Barrier(2)

        def owner_cancels(sub=sub, start=start):
            try:
                start.wait()
                billing.cancel(sub, reason="race", now=at("2026-05-01T02:00"))
            except billing.InvalidChange:
                pass  # refused while the payment is in flight: a serial outcome
            except Exception as exc:  # a deadlock would land here
                errors.append(repr(exc))
            finally:
                connections.close_all()

        def webhook_settles(payment=payment, start=start):
            try:
                start.wait()
                charges.payment_settle(payment, ChargeResult(True, "ch_race"), now=at("2026-05-01T02:00"))
            except Exception as exc:
                errors.append(repr(exc))
            finally:
                connections.close_all()

        threads = [threading.Thread(target=owner_cancels), threading.Thread(target=webhook_settles)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        invoice.refresh_from_db()
        payment.refresh_from_db()
        sub.refresh_from_db()
        assert (payment.status, invoice.status, invoice.amount_paid) == ("succeeded", "paid", Decimal("14.00"))
        assert sub.status == Status.ACTIVE and sub.past_due_since is None
    assert connection.vendor == "postgresql"
    assert not RefundRequest.objects.exists()
