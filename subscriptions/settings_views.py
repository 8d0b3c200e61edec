"""The account's billing settings and requests: the payment method (PAY-1, PAY-5, DUN-3, DUN-4),
billing details (INV-4), e-mail settings (NOT-2), and the trial refund and restored-days requests
(REF-2, REF-3, UPG-3). Like the other billing pages, they validate input and call the engine or
accounts.preferences, behind `account_required`."""

from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import preferences
from accounts.decorators import account_required
from accounts.services import AccountError
from invoices import services as ledger
from invoices.models import Invoice, RefundRequest

from . import billing, selectors, terms
from .forms import (
    BillingDetailsForm,
    BillingZoneForm,
    EmailPreferencesForm,
    RefundRequestForm,
    SandboxPaymentMethodForm,
)
from .models import RestoreRequest, Status
from .pages import money_text, page_render, page_subscription
from .statement import account_statement

# --- payment method (PAY-1, DUN-3, DUN-4) ---------------------------------------------------------


@account_required("payment_method")
@require_http_methods(["GET", "POST"])
def payment_method(request):
    account = request.account
    sandbox = settings.PAYMENT_GATEWAY != "stripe"
    form = SandboxPaymentMethodForm(request.POST or None)
    context = {"form": form, "sandbox": sandbox, "next": request.GET.get("next") or request.POST.get("next", "")}
    if request.method == "POST":
        if not sandbox:
            messages.error(request, "Add your card with the card form.")
            return redirect("billing:payment_method")
        if form.is_valid():
            before = selectors.subscription_current(account)
            owed = before is not None and before.status in (Status.PAST_DUE, Status.SUSPENDED)
            try:
                method = billing.set_payment_method(account, form.cleaned_data["token"], actor=request.user)
            except billing.PaymentDeclined as exc:
                context["declined"] = str(exc)
            except billing.PaymentPending as exc:
                messages.info(request, str(exc))
                return redirect("billing:overview")
            except billing.BillingError as exc:
                context["declined"] = str(exc)
            else:
                text = f"Your card {method} is saved."
                after = selectors.subscription_current(account)
                if owed and after is not None and after.status == Status.ACTIVE:
                    text += " The open invoice was paid and your subscription is active again."
                messages.success(request, text)
                if context["next"] == "plans":
                    return redirect("billing:plans")
                return redirect("billing:overview" if owed else "billing:payment_method")
    statement = account_statement(account)
    sub = statement.subscription
    method = ledger.default_payment_method(account)
    context.update({
        "method": method,
        "owed": statement.owed if sub and sub.status in (Status.PAST_DUE, Status.SUSPENDED) else None,
        "statement": statement,
        "subscription": sub,
        "removal_refusal": selectors.card_removal_refusal(account, timezone.now()) if method else None,
    })
    return page_render(request, "billing/payment_method.html", context, status=402 if "declined" in context else 200)


@account_required("payment_method")
@require_POST
def payment_method_remove(request):
    """PAY-5: remove the card on file, unless a paid subscription needs it (the page says why)."""
    try:
        method = billing.payment_method_remove(request.account, actor=request.user)
    except billing.BillingError as exc:
        messages.error(request, f"Your card was not removed. {exc}")
    else:
        messages.success(request, f"Your card {method} is removed. No card is on file now; add one before your "
                                  "next paid change.")
    return redirect("billing:payment_method")


@account_required("payment_method")
@require_POST
def pay_open(request):
    """PAY-5 from the overview's past-due banner: pay every open invoice now with the card on file."""
    before = selectors.subscription_current(request.account)
    try:
        paid = billing.open_invoices_pay_now(request.account, actor=request.user)
    except billing.PaymentDeclined as exc:
        messages.error(request, f"The payment did not go through. {exc} Update your payment method to use another "
                                "card.")
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
    except billing.BillingError as exc:
        messages.error(request, str(exc))
    else:
        total = sum((invoice.amount_paid for invoice in paid), Decimal("0"))
        numbers = ", ".join(invoice.number for invoice in paid)
        text = f"Paid {money_text(total, paid[0].currency)} (invoice{'s' if len(paid) > 1 else ''} {numbers})."
        after = selectors.subscription_current(request.account)
        if before is not None and before.status == Status.PAST_DUE and after.status == Status.ACTIVE:
            text += " Nothing is owed any more: your subscription is in good standing again."
        messages.success(request, text)
    return redirect("billing:overview")


# --- billing details (INV-4) and e-mail settings (NOT-2) ----------------------------------------


@account_required("billing_details")
@require_http_methods(["GET", "POST"])
def billing_details(request):
    account = request.account
    initial = {"company": account.company, "address": account.address, "country": account.country,
               "vat_id": account.vat_id, "billing_email": account.billing_email}
    zone_post = request.method == "POST" and "timezone" in request.POST
    zone_form = BillingZoneForm(request.POST if zone_post else None, initial={"timezone": account.timezone})
    form = BillingDetailsForm(request.POST if request.method == "POST" and not zone_post else None, initial=initial)
    if zone_post and zone_form.is_valid():  # D-5
        try:
            change = billing.set_billing_zone(account, zone_form.cleaned_data["timezone"], actor=request.user)
        except billing.BillingError as exc:
            zone_form.add_error("timezone", str(exc))
        else:
            messages.success(request, " ".join(["Billing time zone saved.", *terms.zone_notes(change.account)]))
            return redirect("billing:billing_details")
    elif not zone_post and form.is_valid():
        try:
            saved = preferences.billing_details_update(account, actor=request.user, **form.cleaned_data)
        except preferences.VatIdRefused as exc:  # TAX-4: the reason, and nothing saved
            form.add_error("vat_id", str(exc))
        except AccountError as exc:
            form.add_error("country", str(exc))
        else:
            messages.success(request, " ".join(preferences.billing_details_notes(saved)))
            return redirect("billing:billing_details")
    return page_render(request, "billing/billing_details.html", {
        "form": form, "zone_form": zone_form, "zone_notes": terms.zone_notes(account)})


@account_required("email_settings")
@require_http_methods(["GET", "POST"])
def email_settings(request):
    account = request.account
    if request.method == "POST" and "unsubscribe_all" in request.POST:
        preferences.email_unsubscribe_all(account, actor=request.user)
        messages.success(request, "You are unsubscribed from usage alerts and product news. "
                                  "Billing e-mails still reach you.")
        return redirect("billing:email_settings")
    initial = {"email_usage_alerts": account.email_usage_alerts, "email_product_news": account.email_product_news}
    form = EmailPreferencesForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        preferences.email_preferences_update(account, usage_alerts=form.cleaned_data["email_usage_alerts"],
                                             product_news=form.cleaned_data["email_product_news"],
                                             actor=request.user)
        messages.success(request, "E-mail settings saved.")
        return redirect("billing:email_settings")
    return page_render(request, "billing/email_settings.html", {"form": form})


# --- requests: trial refund (REF-2, REF-3) and restored days (UPG-3) -----------------------------


@account_required("requests")
@require_GET
def requests(request):
    account = request.account
    now = timezone.now()
    sub = selectors.subscription_current(account)
    conversions = [(invoice, *selectors.refund_offer(invoice, now))
                   for invoice in selectors.trial_conversion_invoices(account)]
    restore_ok, restore_reason = selectors.restore_offer(sub, now)
    return page_render(request, "billing/requests.html", {
        "subscription": sub, "conversions": conversions, "refund_form": RefundRequestForm(),
        "restore_ok": restore_ok, "restore_reason": restore_reason,
        "refund_requests": RefundRequest.objects.filter(account=account).select_related("invoice")
                                                .order_by("-requested_at", "-id"),
        "restore_requests": RestoreRequest.objects.filter(subscription__account=account)
                                                  .order_by("-requested_at", "-id"),
    })


@account_required("requests")
@require_POST
def refund_request(request, pk: int):
    invoice = get_object_or_404(Invoice, pk=pk, account=request.account, number__isnull=False)
    form = RefundRequestForm(request.POST)
    message = form.cleaned_data["message"] if form.is_valid() else ""
    try:
        billing.request_refund(invoice, message=message, actor=request.user)
    except billing.BillingError as exc:
        messages.error(request, f"Your refund request was refused: {exc}")
    else:
        messages.success(request, f"Your refund request for invoice {invoice.number} is sent. Our staff review it "
                                  "and e-mail you the decision.")
    return redirect("billing:requests")


@account_required("requests")
@require_POST
def restore_request(request):
    sub = page_subscription(request)
    try:
        made = billing.request_restore_days(sub, actor=request.user)
    except billing.BillingError as exc:
        messages.error(request, f"Your request was refused: {exc}")
    else:
        messages.success(request, f"You asked for {made.days} forfeited days to be added to your yearly period. "
                                  "Our staff review it and e-mail you the decision.")
    return redirect("billing:requests")
