"""End to end: localstripe itself signs and delivers `payment_intent.succeeded` to dj-stripe's
URL on a live server, and the lost outcome of a charge is settled from it. Needs the engine."""

import time
import urllib.parse

import pytest

from invoices.models import PaymentStatus
from tests.stripe.conftest import WEBHOOK_SECRET
from tests.stripe.test_webhooks import charge_at_stripe, open_invoice_payment

pytestmark = pytest.mark.slow


def register_webhook(localstripe, url: str, events: list[str]) -> None:
    fields = [("url", url), ("secret", WEBHOOK_SECRET)] + [(f"events[{i}]", e) for i, e in enumerate(events)]
    localstripe.request("POST", "/_config/webhooks/prorata", urllib.parse.urlencode(fields).encode())


def test_pay2_a_webhook_sent_by_the_emulator_settles_the_payment(live_server, transactional_db, localstripe,
                                                                catalog, webhook_endpoint):
    from djstripe.models import WebhookEventTrigger

    from subscriptions import billing
    from tests.factories import AccountFactory

    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa")
    account.refresh_from_db()
    payment = open_invoice_payment(account)
    # Events from earlier tests may still be on their way (they are sent about 1 s later).
    time.sleep(1.5)
    url = f"{live_server.url}/stripe/webhook/{webhook_endpoint.djstripe_uuid}/"
    register_webhook(localstripe, url, ["payment_intent.succeeded"])
    try:
        charge_at_stripe(payment)  # the answer is lost; the webhook is not
        deadline = time.monotonic() + 10
        # The trigger row is saved last, when dj-stripe has finished with the request.
        while not WebhookEventTrigger.objects.filter(processed=True).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        # The registration outlives this test in the emulator: send later events nowhere.
        register_webhook(localstripe, "http://127.0.0.1:9/", ["payment_intent.succeeded"])

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.invoice.status == "paid"
