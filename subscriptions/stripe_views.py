"""The card form for Stripe (PAY-1): the card number goes from the browser to Stripe (Elements
confirms a SetupIntent); our server only sees the resulting `pm_…` id, checks that it came from
the SetupIntent it made for this account, and hands it to the engine (billing.set_payment_method,
which also retries an open invoice at once when the account is past due, DUN-4)."""

import logging

from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from accounts.decorators import account_required
from invoices.gateways import GatewayError, get_gateway
from subscriptions import billing

logger = logging.getLogger(__name__)

SESSION_KEY = "stripe_setup_intent"


@account_required("payment_method")
@require_POST
def setup_intent_create(request):
    """A SetupIntent for the account's Stripe customer, and what the browser needs to confirm it."""
    if settings.PAYMENT_GATEWAY != "stripe":
        return JsonResponse({"error": "Card collection through Stripe is not enabled."}, status=404)
    gateway = get_gateway("stripe")
    try:
        customer_id = gateway.ensure_customer(request.account)
        intent = gateway.create_setup_intent(customer_id)
    except GatewayError as exc:
        logger.warning("SetupIntent for account %s failed: %s", request.account.pk, exc)
        return JsonResponse({"error": "The payment provider did not answer. Please try again in a minute."},
                            status=503)
    request.session[SESSION_KEY] = {"id": intent["id"], "customer": customer_id}
    return JsonResponse({
        "client_secret": intent["client_secret"],
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "js_url": settings.STRIPE_JS_URL,
    })


@account_required("payment_method")
@require_POST
def card_save(request):
    """The browser confirmed the SetupIntent: make its payment method the account's card."""

    next_page = request.POST.get("next", "")
    back = redirect("billing:plans") if next_page == "plans" else redirect("billing:payment_method")
    pm_id = request.POST.get("payment_method", "").strip()
    expected = request.session.get(SESSION_KEY) or {}
    problem = _setup_problem(expected, pm_id)
    if problem:
        messages.error(request, problem)
        return redirect("billing:payment_method")
    try:
        method = billing.set_payment_method(request.account, pm_id, actor=request.user)
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
        return redirect("billing:overview")
    except billing.BillingError as exc:  # PaymentDeclined included: the message says what happened
        messages.error(request, str(exc))
        return redirect("billing:payment_method")
    request.session.pop(SESSION_KEY, None)
    messages.success(request, f"Your card {method} is saved.")
    return back


def _setup_problem(expected: dict, pm_id: str) -> str:
    """Why the posted payment method cannot be used, or "" when it is the one our SetupIntent set up."""
    if not expected or not pm_id.startswith("pm_"):
        return "The card form expired. Please enter your card again."
    try:
        intent = get_gateway("stripe").retrieve_setup_intent(expected["id"])
    except GatewayError:
        return "The payment provider did not answer. Nothing was changed; please try again."
    if intent.get("customer") != expected["customer"] or intent.get("payment_method") != pm_id:
        return "That card was not set up through this form. Please enter your card again."
    if intent.get("status") != "succeeded":
        return "Your bank did not confirm the card. Please try again or use another card."
    return ""
