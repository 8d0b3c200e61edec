"""Stripe webhooks through dj-stripe's endpoint, signed as Stripe signs them, against localstripe.

The objects are real localstripe objects, except the dispute, which the emulator lacks: it is
a recorded Stripe payload (payloads/dispute.json) that the test emulator serves back. These
tests go through the billing engine (payment_settle, payment_record_external_refund,
set_payment_method, payment_method_detached).
"""

import time
from decimal import Decimal

import pytest
import stripe
from django.utils import timezone

from accounts.models import AccountFlag, AuditEvent, FlagKind
from invoices.models import CreditNote, InvoiceKind, InvoiceStatus, Payment, PaymentMethod, PaymentStatus, Refund
from subscriptions import charges
from tests.stripe.conftest import SECRET_KEY, event_for, load_payload

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(localstripe, catalog):
    """An account on Free with a Visa on file, set through the engine and the Stripe gateway."""
    from subscriptions import billing
    from tests.factories import AccountFactory, UserFactory

    account = AccountFactory(owner=UserFactory(username="payer@example.com"))
    method = billing.set_payment_method(account, "pm_card_visa")
    account.refresh_from_db()
    return account, method


def open_invoice_payment(account, amount="29.00") -> Payment:
    """An issued invoice and a payment recorded as sent (status unknown), as the engine leaves
    them when the gateway's answer is lost (PAY-2)."""
    from django.db import transaction

    from invoices import services as ledger

    now = timezone.now()
    with transaction.atomic():  # as the engine does: committed before the gateway is called
        invoice = ledger.invoice_create(account=account, subscription=account.subscription,
                                        kind=InvoiceKind.OVERAGE, currency="USD", now=now,
                                        lines=[ledger.Line("Overage, 2,500 sessions", Decimal(amount))])
        ledger.invoice_issue(invoice, now=now)
        return ledger.payment_begin(invoice, ledger.default_payment_method(account), now=now)


def charge_at_stripe(payment: Payment):
    """The charge reaches Stripe, but its answer never reaches us."""
    from invoices.gateways import get_gateway

    gateway = get_gateway("stripe")
    return gateway.charge(customer_id=payment.account.gateway_customer_id,
                          payment_method_id=payment.payment_method.gateway_id, amount=payment.amount,
                          currency=payment.currency, idempotency_key=payment.idempotency_key)


def intent_dict(reference: str) -> dict:
    return stripe.PaymentIntent.retrieve(reference, api_key=SECRET_KEY).to_dict()


def charge_of(payment: Payment) -> dict:
    charges = stripe.Charge.list(customer=payment.account.gateway_customer_id, api_key=SECRET_KEY)
    return next(c.to_dict() for c in charges.auto_paging_iter() if c.payment_intent == payment.gateway_reference)


def ledger_state(account) -> dict:
    """What a webhook may change, to compare before and after a replay."""
    return {
        "payments": list(Payment.objects.filter(account=account).values_list("id", "status", "settled_at",
                                                                            "refunded_amount")),
        "invoices": list(account.invoices.values_list("id", "status", "amount_paid")),
        "refunds": Refund.objects.filter(payment__account=account).count(),
        "credit_notes": CreditNote.objects.filter(account=account).count(),
        "flags": AccountFlag.objects.filter(account=account).count(),
        "methods": list(PaymentMethod.objects.filter(account=account).values_list("id", "is_default",
                                                                                  "detached_at")),
        "audit": AuditEvent.objects.filter(account=account).count(),
    }


# -- signatures ------------------------------------------------------------------------------


def test_good_signature_is_processed_once_and_a_replay_changes_nothing(customer, post_event):
    """PAY-2: a signed payment_intent.succeeded settles the unknown payment and pays its invoice; the same event
    replayed changes nothing."""
    from djstripe.models import Event

    account, _ = customer
    payment = open_invoice_payment(account)
    result = charge_at_stripe(payment)
    event = event_for("payment_intent.succeeded", intent_dict(result.reference), event_id="evt_prorata_ok_1")

    response = post_event(event)

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.gateway_reference == result.reference
    assert payment.invoice.status == InvoiceStatus.PAID
    assert Event.objects.filter(id="evt_prorata_ok_1").count() == 1
    after_first = ledger_state(account)

    replay = post_event(event)

    assert replay.status_code == 200
    assert ledger_state(account) == after_first
    assert Event.objects.filter(id="evt_prorata_ok_1").count() == 1


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param({"secret": "whsec_someoneElsesSecret000000000000"}, id="wrong-secret"),
        pytest.param({"timestamp": int(time.time()) - 3600}, id="an-hour-old"),
        pytest.param({"signature": "t=1,v1=deadbeef"}, id="garbage"),
    ],
)
def test_a_bad_signature_or_an_old_timestamp_is_rejected_and_changes_nothing(customer, post_event, tamper):
    """Safety: a webhook with a wrong secret, an hour-old timestamp or a garbage
    signature gets 400 and changes nothing."""
    from djstripe.models import Event, WebhookEventTrigger

    account, _ = customer
    payment = open_invoice_payment(account)
    result = charge_at_stripe(payment)
    before = ledger_state(account)

    response = post_event(event_for("payment_intent.succeeded", intent_dict(result.reference),
                                    event_id="evt_prorata_forged"), **tamper)

    assert response.status_code == 400
    assert ledger_state(account) == before
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.UNKNOWN
    assert not Event.objects.filter(id="evt_prorata_forged").exists()
    assert WebhookEventTrigger.objects.get().valid is False


def test_a_missing_signature_is_rejected(customer, client, webhook_endpoint):
    """Safety: a webhook without a signature gets 400."""
    response = client.post(f"/stripe/webhook/{webhook_endpoint.djstripe_uuid}/", data=b"{}",
                           content_type="application/json")
    assert response.status_code == 400


def test_an_unknown_event_type_is_stored_and_ignored(customer, post_event):
    """An event type Prorata does not handle is stored by dj-stripe and changes nothing in the ledger."""
    from djstripe.models import Event

    account, _ = customer
    before = ledger_state(account)
    event = event_for("balance.available", {"object": "balance", "available": [], "pending": [],
                                            "livemode": False}, event_id="evt_prorata_balance")

    assert post_event(event).status_code == 200
    assert Event.objects.filter(id="evt_prorata_balance", type="balance.available").exists()
    assert ledger_state(account) == before


# -- payment outcomes ------------------------------------------------------------------------


def test_pay2_payment_failed_settles_an_unknown_payment_and_starts_dunning(localstripe, catalog, post_event):
    from subscriptions import billing
    from subscriptions.models import Status
    from tests.factories import AccountFactory

    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_chargeCustomerFail")  # attaches, every charge fails
    account.refresh_from_db()
    payment = open_invoice_payment(account)
    result = charge_at_stripe(payment)
    assert not result.succeeded

    response = post_event(event_for("payment_intent.payment_failed", intent_dict(result.reference)))

    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.FAILED
    assert payment.decline_code == "card_declined"
    assert payment.invoice.status == InvoiceStatus.OPEN
    assert account.subscription.status == Status.PAST_DUE  # DUN-1


def test_a_stale_failure_event_does_not_contradict_what_stripe_says_now(customer, post_event):
    """Out of order: a payment_failed payload about an intent that Stripe now shows succeeded
    settles the payment as succeeded; the success event arriving after changes nothing."""
    account, _ = customer
    payment = open_invoice_payment(account)
    result = charge_at_stripe(payment)
    stale = intent_dict(result.reference) | {"status": "requires_payment_method"}

    post_event(event_for("payment_intent.payment_failed", stale, event_id="evt_prorata_stale"))
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    settled = ledger_state(account)

    post_event(event_for("payment_intent.succeeded", intent_dict(result.reference), event_id="evt_prorata_late"))
    assert ledger_state(account) == settled


def test_an_event_about_a_payment_already_settled_changes_nothing(customer, post_event):
    """PAY-2: a success event about a payment the engine already settled changes nothing."""

    account, _ = customer
    payment = open_invoice_payment(account)
    result = charge_at_stripe(payment)
    charges.payment_settle(payment, result)  # our own call recorded it first
    before = ledger_state(account)

    assert post_event(event_for("payment_intent.succeeded", intent_dict(result.reference))).status_code == 200
    assert ledger_state(account) == before


def test_an_intent_that_is_not_ours_is_ignored(customer, post_event):
    """A payment made at Stripe outside Prorata (no key of ours in its metadata) is ignored."""
    account, method = customer
    intent = stripe.PaymentIntent.create(amount=500, currency="usd", customer=account.gateway_customer_id,
                                         payment_method=method.gateway_id, confirm=True, off_session=True,
                                         api_key=SECRET_KEY)
    before = ledger_state(account)
    assert post_event(event_for("payment_intent.succeeded", intent.to_dict())).status_code == 200
    assert ledger_state(account) == before


# -- refunds made at Stripe ------------------------------------------------------------------


def test_a_refund_made_in_the_stripe_dashboard_is_recorded_once(customer, post_event):
    """INV-2: a refund made in the Stripe dashboard is recorded once, with a credit note for its amount; a second event
    about it adds nothing."""

    account, _ = customer
    payment = open_invoice_payment(account)
    charges.payment_settle(payment, charge_at_stripe(payment))
    payment.refresh_from_db()
    refund = stripe.Refund.create(payment_intent=payment.gateway_reference, amount=1000, api_key=SECRET_KEY)
    charge = charge_of(payment)

    assert post_event(event_for("charge.refunded", charge, event_id="evt_prorata_refund_1")).status_code == 200

    recorded = Refund.objects.get(payment=payment)
    assert (recorded.gateway_reference, recorded.amount) == (refund.id, Decimal("10.00"))
    assert recorded.credit_note.amount == Decimal("10.00")
    payment.refresh_from_db()
    assert payment.refunded_amount == Decimal("10.00")
    after = ledger_state(account)

    # Stripe sends one charge.refunded per refund: a second event about the same refund adds nothing.
    assert post_event(event_for("charge.refunded", charge, event_id="evt_prorata_refund_2")).status_code == 200
    assert ledger_state(account) == after


def test_a_refund_made_by_prorata_is_not_recorded_twice(customer, post_event):
    """A refund Prorata sent (it carries our key) is left to the engine to record: its charge.refunded event adds
    nothing."""
    from invoices.gateways import get_gateway

    account, _ = customer
    payment = open_invoice_payment(account)

    charges.payment_settle(payment, charge_at_stripe(payment))
    payment.refresh_from_db()
    get_gateway("stripe").refund(reference=payment.gateway_reference, amount=Decimal("29.00"),
                                 idempotency_key="refund-by-staff-1")
    charge = charge_of(payment)
    before = ledger_state(account)

    assert post_event(event_for("charge.refunded", charge)).status_code == 200
    assert ledger_state(account) == before  # the engine records its own refund when it makes it


# -- disputes (recorded Stripe payload) ------------------------------------------------------


def test_a_dispute_flags_the_account_for_staff_once(customer, post_event, localstripe):
    """A dispute flags the account for staff once (audited; id, amount and reason in the flag) and changes no billing;
    replays add nothing."""
    import json


    account, _ = customer
    payment = open_invoice_payment(account)
    charges.payment_settle(payment, charge_at_stripe(payment))
    payment.refresh_from_db()
    dispute = load_payload("dispute", charge=charge_of(payment)["id"], payment_intent=payment.gateway_reference)
    localstripe.request("POST", "/_config/disputes", json.dumps(dispute).encode())
    status_before = account.subscription.status

    assert post_event(event_for("charge.dispute.created", dispute, event_id="evt_prorata_dispute")).status_code == 200

    flag = AccountFlag.objects.get(account=account)
    assert flag.kind == FlagKind.DISPUTE
    assert "dp_1ProrataDispute0001" in flag.detail and "29.00 USD" in flag.detail and "fraudulent" in flag.detail
    assert AuditEvent.objects.filter(account=account, action="payment.disputed").count() == 1
    assert account.subscription.status == status_before  # a flag never changes billing by itself
    after = ledger_state(account)

    assert post_event(event_for("charge.dispute.created", dispute, event_id="evt_prorata_dispute")).status_code == 200
    assert post_event(event_for("charge.dispute.created", dispute, event_id="evt_prorata_dispute_b")).status_code == 200
    assert ledger_state(account) == after


# -- cards -----------------------------------------------------------------------------------


def test_can1_a_card_detached_at_stripe_is_marked_detached_and_nothing_is_cancelled(customer, post_event):
    account, method = customer
    subscription_before = account.subscription
    pm = stripe.PaymentMethod.detach(method.gateway_id, api_key=SECRET_KEY).to_dict()

    assert post_event(event_for("payment_method.detached", pm, event_id="evt_prorata_detach")).status_code == 200

    method.refresh_from_db()
    assert method.detached_at is not None and not method.is_default
    assert account.subscription == subscription_before
    assert account.subscription.status == subscription_before.status
    after = ledger_state(account)
    assert post_event(event_for("payment_method.detached", pm, event_id="evt_prorata_detach_b")).status_code == 200
    assert ledger_state(account) == after


def test_a_new_default_card_chosen_at_stripe_becomes_the_accounts_card_once(customer, post_event):
    """PAY-1: a card made the default at Stripe becomes the account's default card, once; an attach alone or a replay
    changes nothing."""
    account, old = customer
    mastercard = stripe.PaymentMethod.create(
        type="card", card={"number": "5555555555554444", "exp_month": 8, "exp_year": 2032, "cvc": "123"},
        api_key=SECRET_KEY,
    )  # made in the Stripe dashboard, say
    pm = stripe.PaymentMethod.attach(mastercard.id, customer=account.gateway_customer_id, api_key=SECRET_KEY)
    attached = event_for("payment_method.attached", pm.to_dict(), event_id="evt_prorata_attach")

    # Attached but not the default: not ours yet.
    assert post_event(attached).status_code == 200
    assert not PaymentMethod.objects.filter(gateway_id=pm.id).exists()

    customer_obj = stripe.Customer.modify(account.gateway_customer_id,
                                          invoice_settings={"default_payment_method": pm.id}, api_key=SECRET_KEY)
    updated = customer_obj.to_dict()
    assert post_event(event_for("customer.updated", updated, event_id="evt_prorata_cu")).status_code == 200

    new = PaymentMethod.objects.get(account=account, gateway_id=pm.id)
    assert new.is_default and new.last4 == "4444"  # (localstripe calls every card "visa")
    old.refresh_from_db()
    assert not old.is_default
    after = ledger_state(account)

    # Replays and late events about the same change add nothing.
    assert post_event(event_for("customer.updated", updated, event_id="evt_prorata_cu")).status_code == 200
    assert post_event(event_for("customer.updated", updated, event_id="evt_prorata_cu2")).status_code == 200
    assert post_event(attached | {"id": "evt_prorata_attach2"}).status_code == 200
    assert ledger_state(account) == after
