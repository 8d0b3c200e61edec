"""`reconcile_payments` against localstripe: unknown outcomes and missed webhooks are settled
through the engine, each change printed; a second run changes nothing. Needs the engine."""

from decimal import Decimal
from io import StringIO

import pytest
import stripe
from django.core.management import CommandError, call_command
from django.utils import timezone

from invoices.models import InvoiceStatus, PaymentMethod, PaymentStatus, Refund
from subscriptions import charges
from tests.stripe.conftest import SECRET_KEY
from tests.stripe.test_webhooks import charge_at_stripe, open_invoice_payment

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(localstripe, catalog):
    from subscriptions import billing
    from tests.factories import AccountFactory

    account = AccountFactory()
    method = billing.set_payment_method(account, "pm_card_visa")
    account.refresh_from_db()
    return account, method


def run(*args) -> str:
    out = StringIO()
    call_command("reconcile_payments", *args, stdout=out, stderr=out)
    return out.getvalue()


def old_enough(payment):
    """Past the engine's grace for in-flight charges (BILLING_SETTLE_GRACE_SECONDS)."""
    payment.attempted_at = timezone.now() - timezone.timedelta(minutes=10)
    payment.save(update_fields=["attempted_at"])


def test_pay2_an_unknown_outcome_is_settled_and_printed_then_nothing_on_a_second_run(customer):
    account, _ = customer
    payment = open_invoice_payment(account)
    charge_at_stripe(payment)  # charged at Stripe; the answer and the webhook were lost
    old_enough(payment)

    output = run()

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.invoice.status == InvoiceStatus.PAID
    assert f"payment {payment.pk} ({payment.idempotency_key}, 29.00 USD) settled: succeeded" in output
    assert "1 change(s)" in output

    assert "0 change(s), 0 for staff, 0 not checked." in run()


def test_pay2_a_charge_that_never_reached_stripe_is_settled_as_not_sent(customer):
    account, _ = customer
    payment = open_invoice_payment(account)  # recorded, then the process died before calling Stripe
    old_enough(payment)

    output = run()

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED and payment.decline_code == "not_sent"
    assert f"payment {payment.pk}" in output
    assert stripe.Charge.list(customer=account.gateway_customer_id, api_key=SECRET_KEY).data == []


def test_a_refund_made_at_stripe_whose_webhook_was_missed_is_recorded(customer):
    """A refund made at Stripe whose webhook was missed is recorded by reconcile_payments and printed; a second run
    changes nothing."""

    account, _ = customer
    payment = open_invoice_payment(account)
    charges.payment_settle(payment, charge_at_stripe(payment))
    payment.refresh_from_db()
    refund = stripe.Refund.create(payment_intent=payment.gateway_reference, amount=2900, api_key=SECRET_KEY)

    output = run("--since", (timezone.now() - timezone.timedelta(days=1)).date().isoformat())

    recorded = Refund.objects.get(payment=payment)
    assert recorded.gateway_reference == refund.id and recorded.amount == Decimal("29.00")
    assert f"refund {refund.id} of 29.00 USD made at Stripe recorded" in output
    assert "0 change(s)" in run()


def test_payments_before_since_are_not_looked_at(customer):
    """reconcile_payments --since skips payments made before that date."""

    account, _ = customer
    payment = open_invoice_payment(account)
    charges.payment_settle(payment, charge_at_stripe(payment))
    payment.refresh_from_db()
    stripe.Refund.create(payment_intent=payment.gateway_reference, amount=500, api_key=SECRET_KEY)

    output = run("--since", (timezone.now() + timezone.timedelta(days=1)).date().isoformat())

    assert not Refund.objects.filter(payment=payment).exists()
    assert "0 change(s)" in output


def test_can1_a_card_removed_at_stripe_is_marked_detached(customer):
    account, method = customer
    stripe.PaymentMethod.detach(method.gateway_id, api_key=SECRET_KEY)

    output = run()

    method.refresh_from_db()
    assert method.detached_at is not None
    assert f"card {method} ({method.gateway_id}) no longer at Stripe, marked detached" in output
    assert account.subscription.status == "active"  # removing a card is not a cancellation
    assert "0 change(s)" in run()
    assert PaymentMethod.objects.filter(account=account, detached_at__isnull=True).count() == 0


def test_a_payment_failed_here_but_paid_at_stripe_is_reported_for_staff(customer):
    """Safety: a payment recorded as failed here but paid at Stripe is reported for staff, never flipped by the
    reconciliation itself."""
    from invoices.gateways import ChargeResult

    account, _ = customer
    payment = open_invoice_payment(account)
    made = charge_at_stripe(payment)
    # Our side recorded a failure (e.g. a lookup made while the charge was still in flight).
    charges.payment_settle(payment, ChargeResult(False, made.reference, "processing_error", "Lost."))

    output = run()

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED  # never flipped by the reconciliation itself
    assert f"needs staff: payment {payment.pk}" in output


def test_when_stripe_does_not_answer_the_run_says_what_was_not_checked(customer, settings):
    """When Stripe does not answer, reconcile_payments fails with an error that says what could not be checked."""
    import socket


    account, _ = customer
    payment = open_invoice_payment(account)
    charges.payment_settle(payment, charge_at_stripe(payment))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{sock.getsockname()[1]}"

    with pytest.raises(CommandError) as failed:
        run()
    assert "could not be checked" in str(failed.value)


def test_the_daily_schedule_is_created_once():
    """The daily reconcile_payments schedule is created once; setting it up again changes nothing."""
    from django_q.models import Schedule

    from invoices.stripe_schedules import SCHEDULE_NAME, ensure_reconcile_schedule

    ensure_reconcile_schedule()
    first = Schedule.objects.get(name=SCHEDULE_NAME)
    ensure_reconcile_schedule()

    schedule = Schedule.objects.get(name=SCHEDULE_NAME)
    assert schedule.func == "invoices.stripe_schedules.scheduled_reconcile"
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats == -1
    assert schedule.next_run == first.next_run


def test_the_scheduled_task_runs_the_command_with_the_sandbox_default(catalog):
    """The scheduled reconciliation runs with the sandbox default and reports nothing to change."""
    from invoices.stripe_schedules import scheduled_reconcile

    assert "0 change(s), 0 for staff, 0 not checked." in scheduled_reconcile()
