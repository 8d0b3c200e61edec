"""PAY-5 "pay now": the owner pays an open invoice with the card on file, without saving the card
again, through the engine's three-step charge (PAY-2); DUN-3 while suspended for non-payment."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections

from accounts.models import AuditEvent
from invoices.gateways.sandbox import faults
from invoices.models import Invoice, InvoiceStatus, Payment, PaymentMethod, SandboxCard, SandboxCharge
from notifications.models import EmailLog
from subscriptions import billing, charges, scheduler

from .conftest import at, current

RUN = at("2026-04-30T01:00")  # the renewal of the period 2026-04-01 → 05-01 is charged 24 h ahead


@pytest.fixture
def past_due(account):
    """Personal monthly from 2026-04-01; the card on file declines the renewal on 04-30 (DUN-1)."""
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    billing.set_payment_method(account, "pm_card_chargeDeclinedInsufficientFunds", now=at("2026-04-02"))
    scheduler.run(now=RUN)
    sub = current(account)
    assert sub.status == "past_due"
    return sub


def bank_accepts_the_card_now(account) -> None:
    """The customer put money on the card: the gateway charges it from now on (the same card)."""
    method = PaymentMethod.objects.get(account=account, is_default=True)
    SandboxCard.objects.filter(gateway_id=method.gateway_id).update(token="pm_card_visa:topped-up")


def open_renewal(account) -> Invoice:
    return Invoice.objects.get(account=account, kind="renewal", status=InvoiceStatus.OPEN)


def test_pay5_pay_now_charges_the_open_renewal_with_the_card_on_file_and_ends_past_due(past_due):
    account = past_due.account
    invoice = open_renewal(account)
    bank_accepts_the_card_now(account)
    cards_before = (PaymentMethod.objects.count(), SandboxCard.objects.count())

    paid = billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00"))

    assert paid.pk == invoice.pk and paid.status == InvoiceStatus.PAID and paid.amount_paid == Decimal("14.00")
    assert (PaymentMethod.objects.count(), SandboxCard.objects.count()) == cards_before  # the card was not re-saved
    last = Payment.objects.filter(invoice=invoice).order_by("-id").first()
    assert last.status == "succeeded" and last.payment_method.is_default
    assert SandboxCharge.objects.filter(idempotency_key=last.idempotency_key, succeeded=True).count() == 1
    sub = current(account)
    assert sub.status == "active" and sub.past_due_since is None and sub.next_retry_at is None
    assert sub.charge_in_flight_id is None
    assert AuditEvent.objects.filter(action="invoice.pay_now", object_id=str(invoice.pk)).exists()
    assert AuditEvent.objects.filter(action="subscription.paid_up").exists()


def test_pay5_a_paid_pay_now_sends_the_receipt(past_due, django_capture_on_commit_callbacks):
    account = past_due.account
    bank_accepts_the_card_now(account)
    invoice = open_renewal(account)
    with django_capture_on_commit_callbacks(execute=True):
        billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00"))
    assert EmailLog.objects.filter(account=account, kind="payment.succeeded", related_type="invoice",
                                   related_id=str(invoice.pk)).count() == 1


def test_pay5_a_declined_pay_now_keeps_the_invoice_open_and_the_dunning_schedule(past_due):
    account = past_due.account
    invoice = open_renewal(account)
    before = (past_due.retry_count, past_due.next_retry_at, past_due.past_due_since)
    failures = AuditEvent.objects.filter(action="payment.failed").count()

    with pytest.raises(billing.PaymentDeclined, match=r"Your card has insufficient funds\. Nothing was charged; "
                                                      rf"invoice {invoice.number} is still open\."):
        billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00"))

    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN
    sub = current(account)
    assert sub.status == "past_due" and (sub.retry_count, sub.next_retry_at, sub.past_due_since) == before
    assert sub.charge_in_flight_id is None  # the next click may try again
    assert AuditEvent.objects.filter(action="payment.failed").count() == failures  # no DUN-1 step, no e-mail
    assert AuditEvent.objects.filter(action="charge.declined", after__invoice=invoice.number).exists()
    # The scheduled retry still happens as planned (DUN-2), and succeeds once the bank accepts the card.
    bank_accepts_the_card_now(account)
    scheduler.run(now=before[1] + timedelta(minutes=1))
    assert current(account).status == "active"


def test_pay5_a_second_click_while_the_first_attempt_is_in_flight_is_refused(past_due, settings):
    """PAY-2: the first attempt's answer is lost; the second click is refused with the reason and
    never charges. The lost attempt is settled later and the customer can pay again."""
    account = past_due.account
    invoice = open_renewal(account)
    bank_accepts_the_card_now(account)
    with faults(unavailable=True), pytest.raises(billing.PaymentPending):
        billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00"))
    assert current(account).charge_in_flight.status == "unknown"

    with pytest.raises(billing.NotEligible, match="already being processed"):
        billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00:05"))
    with pytest.raises(billing.NotEligible, match="already being processed"):  # the banner's button neither
        billing.open_invoices_pay_now(account, now=at("2026-04-30T09:00:06"))
    assert Payment.objects.filter(invoice=invoice, status="unknown").count() == 1

    settings.BILLING_SETTLE_GRACE_SECONDS = 0
    charges.payments_settle_unknown(now=at("2026-04-30T09:10"))  # the gateway never saw it: not sent
    assert Payment.objects.filter(invoice=invoice, status="unknown").count() == 0
    assert current(account).charge_in_flight_id is None and current(account).retry_count == 0
    billing.invoice_pay_now(invoice, now=at("2026-04-30T09:11"))
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert SandboxCharge.objects.filter(succeeded=True, amount=Decimal("14.00"),
                                        idempotency_key__startswith=f"prorata-inv{invoice.pk}-").count() == 1


def test_pay5_paying_a_paid_invoice_again_charges_nothing(past_due):
    account = past_due.account
    invoice = open_renewal(account)
    bank_accepts_the_card_now(account)
    billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00"))
    charged = SandboxCharge.objects.count()
    with pytest.raises(billing.NotEligible, match=rf"Invoice {invoice.number} is paid: nothing is owed on it\."):
        billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00:01"))
    with pytest.raises(billing.InvalidChange, match="Nothing is owed"):
        billing.open_invoices_pay_now(account, now=at("2026-04-30T09:00:02"))
    assert SandboxCharge.objects.count() == charged


def test_pay5_without_a_card_on_file_pay_now_says_to_add_one(past_due):
    account = past_due.account
    PaymentMethod.objects.filter(account=account).update(is_default=False, detached_at=at("2026-04-30T05:00"))
    with pytest.raises(billing.NotEligible, match="There is no card on file"):
        billing.invoice_pay_now(open_renewal(account), now=at("2026-04-30T09:00"))


def test_dun3_pay_now_is_refused_while_suspended_for_non_payment_and_a_new_card_reactivates(past_due):
    """DUN-3 decided (docs/policy-decisions.md): the old renewal is not charged while suspended;
    updating the payment method charges a full new period from that day, voiding it."""
    account = past_due.account
    invoice = open_renewal(account)
    for day in (1, 3, 5, 7):
        scheduler.run(now=RUN + timedelta(days=day, minutes=1))
    account.refresh_from_db()
    assert account.is_suspended and current(account).status == "suspended"
    bank_accepts_the_card_now(account)
    charged = SandboxCharge.objects.count()
    with pytest.raises(billing.NotEligible, match="suspended for non-payment.*Update your payment method"):
        billing.invoice_pay_now(invoice, now=at("2026-05-08"))
    assert SandboxCharge.objects.count() == charged
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-05-08"))
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID and current(account).status == "active"


def test_pay5_open_invoices_are_paid_oldest_first_from_the_banner(past_due):
    account = past_due.account
    bank_accepts_the_card_now(account)
    paid = billing.open_invoices_pay_now(account, now=at("2026-04-30T09:00"))
    assert [invoice.kind for invoice in paid] == ["renewal"] and paid[0].status == InvoiceStatus.PAID
    assert current(account).status == "active"


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_pay5_two_racing_pay_now_clicks_charge_once(catalog):
    """PAY-2 with real connections: a double click's two requests at once make one charge; the
    other is refused with the reason."""
    from tests.factories import AccountFactory

    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-01-01"))
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    billing.set_payment_method(account, "pm_card_chargeDeclinedInsufficientFunds", now=at("2026-04-02"))
    scheduler.run(now=RUN)
    invoice = open_renewal(account)
    bank_accepts_the_card_now(account)
    barrier, outcomes = threading.Barrier(2), []

    def click():
        try:
            barrier.wait()
            billing.invoice_pay_now(invoice, now=at("2026-04-30T09:00"))
            outcomes.append("paid")
        except billing.BillingError as exc:
            outcomes.append(str(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=click) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes)[-1] == "paid" and len(outcomes) == 2, outcomes
    assert "already being processed" in outcomes[0] + outcomes[1] or "is paid" in outcomes[0] + outcomes[1]
    assert SandboxCharge.objects.filter(succeeded=True, idempotency_key__startswith=f"prorata-inv{invoice.pk}-"
                                        ).count() == 1
    assert Invoice.objects.get(pk=invoice.pk).status == InvoiceStatus.PAID
