"""Stripe webhooks with bad input (issue 16, invoices/stripe_endpoint.py): a signed delivery that
is not a usable event, or about an object Stripe no longer returns, is acknowledged (2xx, so Stripe
stops redelivering it for days) and recorded for staff on dj-stripe's trigger row; nothing in the
ledger changes; never a 500 on input. A fault that passes (Stripe not answering) is still a 500, so
that Stripe delivers the event again."""

import json
import socket

import pytest
from django.test import Client
from django.urls import reverse

from tests.stripe.conftest import event_for, sign
from tests.stripe.test_webhooks import charge_at_stripe, intent_dict, ledger_state, open_invoice_payment

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer(localstripe, catalog):
    from subscriptions import billing
    from tests.factories import AccountFactory, UserFactory

    account = AccountFactory(owner=UserFactory(username="payer@example.com"))
    billing.set_payment_method(account, "pm_card_visa")
    account.refresh_from_db()
    return account


@pytest.fixture
def deliver(webhook_endpoint):
    """POST raw bytes to the endpoint, signed with the endpoint's secret unless told otherwise, with
    a client that turns an exception into the 500 Stripe would see."""
    url = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": webhook_endpoint.djstripe_uuid})
    client = Client(raise_request_exception=False)

    def post(body: bytes, *, signature: str | None = None):
        header = signature if signature is not None else sign(body)
        return client.post(url, data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)

    return post


def triggers():
    from djstripe.models import WebhookEventTrigger

    return list(WebhookEventTrigger.objects.order_by("id").values("valid", "processed", "exception"))


def events_stored() -> int:
    from djstripe.models import Event

    return Event.objects.count()


NOT_EVENTS = [
    pytest.param(b"null", "the body is JSON null, not an event object", id="null"),
    pytest.param(b"42", "the body is JSON int, not an event object", id="number"),
    pytest.param(b'"evt_1"', "the body is JSON str, not an event object", id="string"),
    pytest.param(b"[]", "the body is JSON list, not an event object", id="list"),
    pytest.param(b"{}", "the event has no id", id="empty-object"),
    pytest.param(b'{"id": "evt_1", "type": "charge.refunded", "livemode": false, "data": {"object": "ch_1"}}',
                 "data.object of charge.refunded evt_1 is str, not an object", id="string-data-object"),
    pytest.param(b'{"id": "evt_2", "type": "payment_intent.succeeded", "livemode": false, "data": null}',
                 "data.object of payment_intent.succeeded evt_2 is NoneType, not an object", id="null-data"),
    pytest.param(b"[" * 50_000 + b"]" * 50_000, "the body is not JSON", id="deep"),
]


@pytest.mark.parametrize(("body", "reason"), NOT_EVENTS)
def test_a_signed_body_that_is_not_an_event_is_acknowledged_and_recorded_for_staff(customer, deliver, body, reason):
    """PAY-2: a signed webhook body that is not an event is acknowledged (200), recorded for staff, changes nothing."""
    before = ledger_state(customer)

    response = deliver(body)

    assert response.status_code == 200
    assert response.content.decode() == f"Acknowledged, not processed: {reason}"
    assert triggers() == [{"valid": True, "processed": False, "exception": f"Not processed: {reason}"[:128]}]
    assert events_stored() == 0
    assert ledger_state(customer) == before


@pytest.mark.parametrize(("body", "reason"), NOT_EVENTS[:3])
def test_an_unsigned_body_that_is_not_an_event_is_still_refused(customer, deliver, body, reason):
    """Safety: an unsigned body is refused (400) whatever it holds."""
    response = deliver(body, signature="t=1,v1=deadbeef")

    assert response.status_code == 400
    assert triggers() == [{"valid": False, "processed": False, "exception": f"Not processed: {reason}"}]


def test_an_event_about_a_payment_intent_stripe_no_longer_returns_is_acknowledged(customer, deliver):
    """Ours by its metadata, but Stripe answers 404 when the receiver asks for it."""
    from invoices.models import Payment, PaymentStatus

    payment = open_invoice_payment(customer)
    result = charge_at_stripe(payment)
    intent = intent_dict(result.reference) | {"id": "pi_goneFromStripe000001"}
    Payment.objects.filter(pk=payment.pk).update(gateway_reference="pi_goneFromStripe000001")
    before = ledger_state(customer)

    response = deliver(json.dumps(event_for("payment_intent.succeeded", intent, event_id="evt_gone_1")).encode())

    assert response.status_code == 200
    assert response.content.decode().startswith("Acknowledged, not processed:")
    [trigger] = triggers()
    assert (trigger["valid"], trigger["processed"]) == (True, False)
    assert trigger["exception"].startswith(
        "Not processed: payment_intent.succeeded evt_gone_1 about pi_goneFromStripe000001: ")
    assert events_stored() == 0  # rolled back: a fixed receiver can process it again from the trigger
    assert ledger_state(customer) == before
    payment.refresh_from_db()
    assert payment.status == PaymentStatus.UNKNOWN  # reconcile_payments settles it by its key


def test_an_event_about_a_charge_stripe_no_longer_returns_is_acknowledged(customer, deliver):
    """A dispute about a charge that is not ours by payment intent: the receiver fetches the charge."""
    dispute = {"id": "dp_gone0001", "object": "dispute", "amount": 2900, "currency": "usd", "charge": "ch_gone0001",
               "payment_intent": None, "reason": "fraudulent", "status": "needs_response", "livemode": False}
    before = ledger_state(customer)

    response = deliver(json.dumps(event_for("charge.dispute.created", dispute, event_id="evt_gone_2")).encode())

    assert response.status_code == 200
    assert triggers()[0]["exception"].startswith("Not processed: charge.dispute.created evt_gone_2 about dp_gone0001: ")
    assert ledger_state(customer) == before


def test_when_stripe_does_not_answer_the_event_is_a_500_so_stripe_delivers_it_again(customer, deliver, settings):
    """PAY-2: when Stripe does not answer, the webhook answers 500 so that Stripe delivers it again."""
    payment = open_invoice_payment(customer)
    result = charge_at_stripe(payment)
    event = json.dumps(event_for("payment_intent.succeeded", intent_dict(result.reference),
                                 event_id="evt_later_1")).encode()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        settings.STRIPE_API_BASE = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there

    response = deliver(event)

    assert response.status_code == 500
    [trigger] = triggers()
    assert (trigger["valid"], trigger["processed"]) == (True, False)
    assert trigger["exception"].startswith("Will be delivered again: payment_intent.succeeded evt_later_1 about ")
    assert events_stored() == 0
    payment.refresh_from_db()
    assert payment.status == "unknown"
