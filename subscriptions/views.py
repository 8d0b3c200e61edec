"""The customer billing page. Views validate input and call the engine (subscriptions.billing) or
accounts.preferences; they never change state through the ORM. Every view is behind
`account_required` (login, membership, ACC-1 role), and every lookup by id filters by
request.account.
"""

from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import preferences
from accounts.decorators import account_required
from accounts.services import AccountError
from core import charts
from core.money import format_money
from core.words import counted
from invoices import services as ledger
from invoices.models import Invoice, RefundRequest

from . import billing, selectors, terms
from .forms import (
    BillingDetailsForm,
    BillingZoneForm,
    CancelForm,
    EmailPreferencesForm,
    ExtraPropertiesConfirmForm,
    ExtraPropertiesForm,
    PlanChoiceForm,
    PlanConfirmForm,
    RefundRequestForm,
    SandboxPaymentMethodForm,
)
from .models import RestoreRequest, Status
from .statement import account_statement, unpaid_renewals


def _render(request, template: str, context: dict, status: int = 200):
    """Render with dates in the account's billing time zone (D-2)."""
    context.setdefault("account", request.account)
    context.setdefault("membership", request.membership)
    context.setdefault("can", selectors.role_flags(request.membership))
    with timezone.override(request.account.zone):
        return render(request, template, context, status=status)


def _subscription(request):
    sub = selectors.subscription_current(request.account)
    if sub is None:
        raise Http404("This account has no subscription.")
    return sub


def _money(amount, currency="USD") -> str:
    return format_money(Decimal(amount), currency)


# --- overview and plans ------------------------------------------------------------------------


@account_required("view_usage")
@require_GET
def overview(request):
    context = selectors.billing_overview(request.account, request.membership)
    return _render(request, "billing/overview.html", context)


@account_required("view_usage")
@require_GET
def usage(request):
    """USE-2: past months against their quota, the days of one month as a chart and a table, and
    the projected overage of the current month (members may read it, ACC-1)."""
    account, now = request.account, timezone.now()
    first, current = selectors.usage_months_range(account, now)
    month = current
    if request.GET.get("month"):
        try:
            month = datetime.strptime(request.GET["month"], "%Y-%m").date()
        except ValueError:
            raise Http404("Give the month as YYYY-MM.") from None
        if not first <= month <= current:
            raise Http404("There is no usage for this account in that month.")
    usage_now = selectors.usage_summary(account, now)
    history = selectors.usage_history(account, month, now, usage_now)
    statement = account_statement(account, now, usage=usage_now) if month == current else None
    return _render(request, "billing/usage.html", {
        "history": history, "chart": _usage_chart(history), "usage": usage_now, "statement": statement,
        "projected": statement.overage if statement else None,
    })


def _usage_chart(history) -> str:
    """The month's running total of sessions by day against the quota, as inline SVG (core.charts)."""
    shown, days = history.month, history.days
    series = [charts.Series("Within the quota" if shown.included is not None else "Sessions",
                            tuple(day.within for day in days), charts.PALETTE[0])]
    if shown.included is not None and any(day.over for day in days):
        series.append(charts.Series("Over the quota", tuple(day.over for day in days), charts.PALETTE[1]))
    quota = (charts.Reference(f"Quota {shown.included:,}", Decimal(shown.included))
             if shown.included is not None else None)
    total = days[-1].to_date if days else 0
    label = (f"Sessions counted in {shown.month:%B %Y}, running total by day: {total:,} by "
             f"{days[-1].day:%B %-d}" if days else f"No sessions in {shown.month:%B %Y}")
    if shown.included is not None:
        label += f", against a quota of {shown.included:,}"
    return charts.bar_chart(label=label, categories=[str(day.day.day) for day in days], series=series,
                            money=False, reference=quota, label_every=2 if len(days) > 16 else 1)


@account_required("change_plan")
@require_GET
def plans(request):
    account = request.account
    sub = selectors.subscription_current(account)
    trial, trial_reason = selectors.trial_offer(account)
    cards = selectors.plan_cards(account, sub, trial)
    offers_trial = any(card.trial_days for card in cards)  # TRI-1: only where choosing a plan starts one
    return _render(request, "billing/plans.html", {
        "subscription": sub, "cards": cards, "offers_trial": offers_trial,
        "trial": trial, "trial_reason": trial_reason,
        "owed": sub is not None and sub.status in (Status.PAST_DUE, Status.SUSPENDED),
        # PAY-6: a change that leads to a charge needs a card; the page says so before the quote does.
        "no_card": not offers_trial and not selectors.can_be_charged(account),
    })


# --- quote and confirm (PAY-3) ------------------------------------------------------------------

CONFIRM_LABELS = {
    "trial": "Start free trial",
    "trial_change": "Switch my trial",
    "downgrade": "Schedule the downgrade",
}


def _confirm_label(action_kind: str, quote) -> str:
    if quote.kind == "new" and quote.amount_due == 0:
        return "Start free trial"
    if quote.kind == "downgrade" and quote.effective_at and quote.lines:
        return "Downgrade now"
    if quote.amount_due > 0:
        verb = {"subscribe": "subscribe", "trial": "subscribe"}.get(action_kind, "upgrade")
        return f"Pay {_money(quote.amount_due, quote.currency)} and {verb}"
    return CONFIRM_LABELS.get(action_kind, "Confirm")


def _plan_quote_context(request, sub, plan_code: str, cycle: str, quote) -> dict:
    plan = terms.plan_for(request.account, plan_code)
    trial, _reason = selectors.trial_offer(request.account)
    action = selectors.plan_action(sub, plan, cycle, trial) or ("change", "Change plan")
    return {
        "title": action[1] if action[0] != "trial" else f"Start your free trial of {plan.name}",
        "quote": quote, "plan": plan, "cycle": cycle, "subscription": sub,
        "confirm_url": "billing:change_confirm", "confirm_label": _confirm_label(action[0], quote),
        "hidden": {"plan": plan.code, "cycle": cycle, "quoted_amount": quote.amount_due},
        "back_url": "billing:plans",
    }


# Refusals shown on their own page with what to do: remove properties (DWN-3), add a card (PAY-6).
REFUSED = (billing.LimitExceeded, billing.PaymentMethodRequired)


def _refused(request, exc: Exception, *, status: int = 409):
    """DWN-3: what to remove, with a link to the property list; PAY-6: a link to add a card."""
    add_card = isinstance(exc, billing.PaymentMethodRequired)
    return _render(request, "billing/refused.html", {"message": str(exc), "add_card": add_card}, status=status)


@account_required("change_plan")
@require_GET
def change(request):
    form = PlanChoiceForm(request.GET)
    if not form.is_valid():
        messages.error(request, "Choose a plan and a billing cycle.")
        return redirect("billing:plans")
    sub = _subscription(request)
    plan_code, cycle = form.cleaned_data["plan"], form.cleaned_data["cycle"]
    try:
        quote = billing.preview_change(sub, plan_code, cycle)
        context = _plan_quote_context(request, sub, plan_code, cycle, quote)
    except REFUSED as exc:
        return _refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:plans")
    return _render(request, "billing/quote.html", context)


@account_required("change_plan")
@require_POST
def change_confirm(request):
    form = PlanConfirmForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The confirmation was incomplete. Choose the plan again.")
        return redirect("billing:plans")
    sub = _subscription(request)
    plan_code, cycle, quoted = form.cleaned_data["plan"], form.cleaned_data["cycle"], form.cleaned_data["quoted_amount"]
    try:
        quote = billing.preview_change(sub, plan_code, cycle)
    except REFUSED as exc:
        return _refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:plans")
    context = _plan_quote_context(request, sub, plan_code, cycle, quote)
    try:  # PAY-3: the engine applies the change only at the amount the customer saw, under its lock
        result = billing.change_plan(sub, plan_code, cycle, actor=request.user, expected_amount=quoted)
    except billing.QuoteChanged as exc:
        context = _plan_quote_context(request, sub, plan_code, cycle, exc.quote)
        context["changed_from"] = _money(quoted, exc.quote.currency)
        return _render(request, "billing/quote.html", context, status=409)
    except billing.PaymentDeclined as exc:
        context["declined"] = str(exc)  # UPG-4: nothing changed
        return _render(request, "billing/quote.html", context, status=402)
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
        return redirect("billing:overview")
    except REFUSED as exc:
        return _refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:plans")
    messages.success(request, _applied_message(context["plan"], result))
    return redirect("billing:overview")


def _applied_message(plan, quote) -> str:
    if quote.kind == "new" and quote.amount_due == 0:
        text = f"Your free trial of {plan.name} has started."
    elif quote.kind == "trial_change":
        text = f"Your trial is now on {plan.name}; nothing was charged."
    elif quote.kind == "downgrade":
        text = "Your change is scheduled."
    else:
        text = f"You are now on {plan.name}."
    invoice = quote.invoice
    if invoice is not None and getattr(invoice, "number", None) and invoice.total:
        text += f" Charged {_money(invoice.total, invoice.currency)} (invoice {invoice.number})."
    return f"{text} {quote.at_period_end}".strip()


# --- cancel and resume (CAN, TRI-4, TRI-5, DWN-1) ------------------------------------------------


@account_required("cancel")
@require_http_methods(["GET", "POST"])
def cancel(request):
    sub = _subscription(request)
    if not (sub.status == Status.TRIALING or (sub.is_paid and sub.status in (Status.ACTIVE, Status.PAST_DUE)
                                               and not sub.cancel_at_period_end)):
        messages.info(request, "There is no paid subscription or trial to cancel.")
        return redirect("billing:overview")
    form = CancelForm(request.POST or None)
    # CAN-6: past due with the period in force unpaid: cancelling ends the subscription at once.
    unpaid = unpaid_renewals(sub, timezone.now())
    if request.method == "POST" and form.is_valid():
        trial = sub.status == Status.TRIALING
        try:
            sub = billing.cancel(sub, reason=form.cleaned_data["reason"], reason_code=form.cleaned_data["reason_code"],
                                 actor=request.user)
        except billing.BillingError as exc:
            messages.error(request, str(exc))
            return redirect("billing:overview")
        if trial:
            messages.success(request, "Your trial is cancelled and your account is suspended. Nothing was charged. "
                                      f"You can reactivate the trial until {_local(request, sub.trial_end)}.")
        elif sub.plan.is_free:
            messages.success(request, "Your subscription has ended and your account is on the Free plan. The unpaid "
                                      "invoice was voided; nothing more is charged.")
        else:
            messages.success(request, f"Your subscription is cancelled. Service runs until "
                                      f"{_local(request, terms.paid_until(sub))}; no further charge.")
        return redirect("billing:overview")
    return _render(request, "billing/cancel.html", {
        "subscription": sub, "form": form, "service_until": terms.paid_until(sub), "unpaid": unpaid,
    })


def _local(request, moment) -> str:
    return f"{terms.local_date(request.account, moment):%Y-%m-%d}"


@account_required("change_plan")
@require_POST
def resume(request):
    sub = _subscription(request)
    pending = selectors.pending_changes(sub, timezone.now())
    if not pending:
        messages.info(request, "There is no pending change to undo.")
        return redirect("billing:overview")
    if pending[0].owner_only and not request.membership.can("cancel"):
        raise PermissionDenied("Only the account owner can resume a cancelled subscription.")
    try:
        sub = billing.resume(sub, actor=request.user)
    except billing.PaymentMethodRequired as exc:
        return _refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
    else:
        done = {
            "trial_cancelled": f"Your trial is active again until {_local(request, sub.current_period_end)}.",
            "cancellation": "Your subscription continues; it renews as usual.",
        }.get(pending[0].kind, "The scheduled change is undone.")
        messages.success(request, done)
    return redirect("billing:overview")


# --- extra properties (ADD-1, ADD-2) -------------------------------------------------------------


@account_required("change_plan")
@require_GET
def extra_properties(request):
    sub = _subscription(request)
    if sub.plan.extra_property_monthly is None:
        messages.info(request, f"{sub.plan.name} does not offer extra properties. Advanced does.")
        return redirect("billing:plans")
    form = ExtraPropertiesForm(request.GET if "quantity" in request.GET else None,
                               initial={"quantity": sub.extra_properties})
    context = {"subscription": sub, "form": form}
    if form.is_bound and form.is_valid():
        try:
            quote = billing.preview_extra_properties(sub, form.cleaned_data["quantity"])
        except REFUSED as exc:
            return _refused(request, exc)
        except billing.BillingError as exc:
            form.add_error("quantity", str(exc))
        else:
            return _render(request, "billing/quote.html", _extra_quote_context(sub, form.cleaned_data["quantity"],
                                                                               quote))
    return _render(request, "billing/extra_properties.html", context)


def _extra_quote_context(sub, quantity: int, quote) -> dict:
    more = quantity > sub.extra_properties
    return {
        "title": counted(quantity, "extra property"), "quote": quote, "subscription": sub,
        "confirm_url": "billing:extra_properties_confirm",
        "confirm_label": (f"Pay {_money(quote.amount_due, quote.currency)} and add" if more and quote.amount_due
                          else "Confirm"),
        "hidden": {"quantity": quantity, "quoted_amount": quote.amount_due},
        "back_url": "billing:extra_properties",
    }


@account_required("change_plan")
@require_POST
def extra_properties_confirm(request):
    form = ExtraPropertiesConfirmForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a number of extra properties between 0 and 1,000.")
        return redirect("billing:extra_properties")
    sub = _subscription(request)
    quantity, quoted = form.cleaned_data["quantity"], form.cleaned_data["quoted_amount"]
    try:
        quote = billing.preview_extra_properties(sub, quantity)
    except REFUSED as exc:
        return _refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:extra_properties")
    context = _extra_quote_context(sub, quantity, quote)
    try:  # PAY-3, as for plan changes
        result = billing.set_extra_properties(sub, quantity, actor=request.user, expected_amount=quoted)
    except billing.QuoteChanged as exc:
        context = _extra_quote_context(sub, quantity, exc.quote)
        context["changed_from"] = _money(quoted, exc.quote.currency)
        return _render(request, "billing/quote.html", context, status=409)
    except billing.PaymentDeclined as exc:
        context["declined"] = str(exc)
        return _render(request, "billing/quote.html", context, status=402)
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
        return redirect("billing:overview")
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:extra_properties")
    text = f"Extra properties: {quantity}."
    if result.invoice is not None and result.invoice.total:
        text += f" Charged {_money(result.invoice.total, result.invoice.currency)} (invoice {result.invoice.number})."
    messages.success(request, f"{text} {result.at_period_end}")
    return redirect("billing:overview")


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
    return _render(request, "billing/payment_method.html", context, status=402 if "declined" in context else 200)


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
        text = f"Paid {_money(total, paid[0].currency)} (invoice{'s' if len(paid) > 1 else ''} {numbers})."
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
    return _render(request, "billing/billing_details.html", {
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
    return _render(request, "billing/email_settings.html", {"form": form})


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
    return _render(request, "billing/requests.html", {
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
    sub = _subscription(request)
    try:
        made = billing.request_restore_days(sub, actor=request.user)
    except billing.BillingError as exc:
        messages.error(request, f"Your request was refused: {exc}")
    else:
        messages.success(request, f"You asked for {made.days} forfeited days to be added to your yearly period. "
                                  "Our staff review it and e-mail you the decision.")
    return redirect("billing:requests")
