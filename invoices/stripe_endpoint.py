"""The Stripe webhook endpoint: dj-stripe's view, answering 2xx to what no retry can fix (issue 16).

dj-stripe's `ProcessWebhookView` stores each delivery (`WebhookEventTrigger`), checks the signature
and runs the receivers (subscriptions/stripe_webhooks.py); any exception becomes a 500, and Stripe
delivers the event again for three days, then disables an endpoint that keeps failing. That is
right for a fault that passes (Stripe or the database not answering) and wrong for input that
will fail the same way every time:

- a signed body that is not an event: `null`, a number, a list, an object without `id`,
  `type` or `livemode`, or whose `data.object` is not an object (a string): dj-stripe raised a
  TypeError on some and the receivers an AttributeError on others;
- an event about an object Stripe no longer returns (`404 resource_missing` when dj-stripe or a
  receiver fetches it again).

Those are acknowledged (200) and recorded for staff: the delivery's `WebhookEventTrigger` row
stays with `processed` false and the reason in `exception` (admin: dj-stripe → Webhook event
triggers, filter Processed: No). Unsigned or badly signed bodies are still refused with 400, as
dj-stripe does; faults that pass (`TRANSIENT`) still answer 500 so that Stripe delivers again,
and the receivers are idempotent, so a redelivery changes nothing twice. Payments whose webhook
was lost are settled by `reconcile_payments` all the same (docs/stripe.md).
"""

from __future__ import annotations

import json
import logging

import stripe
from django.db import InterfaceError, OperationalError
from django.dispatch import receiver
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from djstripe.models import WebhookEndpoint, WebhookEventTrigger
from djstripe.models.webhooks import get_remote_ip
from djstripe.signals import webhook_processing_error
from djstripe.views import ProcessWebhookView

from invoices.gateways.base import GatewayUnavailable

logger = logging.getLogger(__name__)

# Faults that pass: answer 500 so that Stripe delivers the event again later.
TRANSIENT = (
    stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError, stripe.AuthenticationError,
    stripe.PermissionError, stripe.IdempotencyError, GatewayUnavailable, OperationalError, InterfaceError,
)
EXCEPTION_FIELD_LENGTH = WebhookEventTrigger._meta.get_field("exception").max_length


def event_problem(body: bytes) -> str | None:
    """Why this body is not an event dj-stripe and our receivers can process, or None."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "the body is not JSON"
    if not isinstance(data, dict):
        return f"the body is JSON {type(data).__name__ if data is not None else 'null'}, not an event object"
    for field in ("id", "type"):
        if not isinstance(data.get(field), str) or not data[field]:
            return f"the event has no {field}"
    if "livemode" not in data:
        return "the event has no livemode"
    obj = data.get("data").get("object") if isinstance(data.get("data"), dict) else None
    if not isinstance(obj, dict):
        return f"data.object of {data['type']} {data['id']} is {type(obj).__name__}, not an object"
    return None


def transient(exc: BaseException) -> bool:
    """A fault that a later delivery may not meet again: the exception or any cause behind it
    (our gateway wraps Stripe's errors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, TRANSIENT):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def signature_valid(request, endpoint: WebhookEndpoint) -> bool:
    try:
        stripe.WebhookSignature.verify_header(request.body.decode("utf-8", "replace"),
                                              request.headers.get("stripe-signature", ""), endpoint.secret,
                                              endpoint.djstripe_tolerance)
    except (stripe.SignatureVerificationError, ValueError):
        return False
    return True


@receiver(webhook_processing_error, dispatch_uid="invoices.stripe_endpoint.describe_failure")
def describe_failure(sender, instance, exception, **kwargs):
    """Say on the trigger row (before dj-stripe saves it) which event about which object failed
    and how, and whether Stripe will deliver it again: what staff read in the admin's list."""
    data = instance.json_body if isinstance(instance.json_body, dict) else {}
    obj = (data.get("data") or {}).get("object") if isinstance(data.get("data"), dict) else None
    about = f"{data.get('type', 'event')} {data.get('id', '')} about {obj.get('id') if isinstance(obj, dict) else '?'}"
    outcome = "will be delivered again" if transient(exception) else "not processed"
    instance.exception = f"{outcome.capitalize()}: {about}: {type(exception).__name__}: {exception}"[
        :EXCEPTION_FIELD_LENGTH]


class StripeWebhookView(ProcessWebhookView):
    """Mounted at dj-stripe's own URL (`stripe/webhook/<uuid>/`, config/urls.py), in front of its include."""

    def post(self, request, uuid):
        if "stripe-signature" not in request.headers:
            return super().post(request, uuid)  # 400, nothing stored (dj-stripe's rule)
        endpoint = get_object_or_404(WebhookEndpoint, djstripe_uuid=uuid)
        problem = event_problem(request.body)
        if problem is not None:
            return self.unusable(request, endpoint, problem)
        try:
            return super().post(request, uuid)
        except Exception as exc:
            if transient(exc):
                raise  # 500: Stripe delivers it again; dj-stripe kept the trigger with the error
            # dj-stripe has saved the trigger (processed false, the exception and its traceback)
            # and rolled the event's processing back.
            logger.warning("Stripe webhook acknowledged without processing it (%s: %s); see dj-stripe's "
                           "webhook event triggers", type(exc).__name__, exc)
            return HttpResponse(f"Acknowledged, not processed: {type(exc).__name__}", status=200)

    def unusable(self, request, endpoint: WebhookEndpoint, problem: str) -> HttpResponse:
        """Store the delivery as dj-stripe would, with the reason; 200 when Stripe signed it."""
        valid = signature_valid(request, endpoint)
        trigger = WebhookEventTrigger.objects.create(
            headers=dict(request.headers), body=request.body.decode("utf-8", "replace"),
            remote_ip=get_remote_ip(request), webhook_endpoint=endpoint,
            stripe_trigger_account=endpoint.djstripe_owner_account, valid=valid, processed=False,
            exception=f"Not processed: {problem}"[:EXCEPTION_FIELD_LENGTH],
        )
        if not valid:
            logger.error("Stripe webhook with a bad signature and no usable event (%s)", problem)
            return HttpResponseBadRequest()
        logger.warning("Stripe webhook acknowledged without processing it: %s (trigger %s)", problem, trigger.pk)
        return HttpResponse(f"Acknowledged, not processed: {problem}", status=200)
