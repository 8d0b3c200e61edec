"""The customer billing page. Views validate input and call the engine (subscriptions.billing) or
accounts.preferences; they never change state through the ORM. Every view is behind
`account_required` (login, membership, ACC-1 role), and every lookup by id filters by
request.account.
"""

from datetime import datetime
from decimal import Decimal

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import account_required
from core import charts
from core.words import counted

from . import billing, selectors, terms, usage_panel
from .forms import (
    CancelForm,
    ExtraPropertiesConfirmForm,
    ExtraPropertiesForm,
    PlanChoiceForm,
    PlanConfirmForm,
)
from .models import Status
from .pages import local_text, money_text, page_refused, page_render, page_subscription
from .statement import account_statement, unpaid_renewals

# --- overview and plans ------------------------------------------------------------------------


@account_required("view_usage")
@require_GET
def overview(request):
    context = selectors.billing_overview(request.account, request.membership)
    return page_render(request, "billing/overview.html", context)


@account_required("view_usage")
@require_GET
def usage(request):
    """USE-2: past months against their quota, the days of one month as a chart and a table, and
    the projected overage of the current month (members may read it, ACC-1)."""
    account, now = request.account, timezone.now()
    first, current = usage_panel.usage_months_range(account, now)
    month = current
    if request.GET.get("month"):
        try:
            month = datetime.strptime(request.GET["month"], "%Y-%m").date()
        except ValueError:
            raise Http404("Give the month as YYYY-MM.") from None
        if not first <= month <= current:
            raise Http404("There is no usage for this account in that month.")
    usage_now = usage_panel.usage_summary(account, now)
    history = usage_panel.usage_history(account, month, now, usage_now)
    statement = account_statement(account, now, usage=usage_now) if month == current else None
    return page_render(request, "billing/usage.html", {
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
    return page_render(request, "billing/plans.html", {
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
        return f"Pay {money_text(quote.amount_due, quote.currency)} and {verb}"
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


@account_required("change_plan")
@require_GET
def change(request):
    form = PlanChoiceForm(request.GET)
    if not form.is_valid():
        messages.error(request, "Choose a plan and a billing cycle.")
        return redirect("billing:plans")
    sub = page_subscription(request)
    plan_code, cycle = form.cleaned_data["plan"], form.cleaned_data["cycle"]
    try:
        quote = billing.preview_change(sub, plan_code, cycle)
        context = _plan_quote_context(request, sub, plan_code, cycle, quote)
    except REFUSED as exc:
        return page_refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:plans")
    return page_render(request, "billing/quote.html", context)


@account_required("change_plan")
@require_POST
def change_confirm(request):
    form = PlanConfirmForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The confirmation was incomplete. Choose the plan again.")
        return redirect("billing:plans")
    sub = page_subscription(request)
    plan_code, cycle, quoted = form.cleaned_data["plan"], form.cleaned_data["cycle"], form.cleaned_data["quoted_amount"]
    try:
        quote = billing.preview_change(sub, plan_code, cycle)
    except REFUSED as exc:
        return page_refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:plans")
    context = _plan_quote_context(request, sub, plan_code, cycle, quote)
    try:  # PAY-3: the engine applies the change only at the amount the customer saw, under its lock
        result = billing.change_plan(sub, plan_code, cycle, actor=request.user, expected_amount=quoted)
    except billing.QuoteChanged as exc:
        context = _plan_quote_context(request, sub, plan_code, cycle, exc.quote)
        context["changed_from"] = money_text(quoted, exc.quote.currency)
        return page_render(request, "billing/quote.html", context, status=409)
    except billing.PaymentDeclined as exc:
        context["declined"] = str(exc)  # UPG-4: nothing changed
        return page_render(request, "billing/quote.html", context, status=402)
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
        return redirect("billing:overview")
    except REFUSED as exc:
        return page_refused(request, exc)
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
        text += f" Charged {money_text(invoice.total, invoice.currency)} (invoice {invoice.number})."
    return f"{text} {quote.at_period_end}".strip()


# --- cancel and resume (CAN, TRI-4, TRI-5, DWN-1) ------------------------------------------------


@account_required("cancel")
@require_http_methods(["GET", "POST"])
def cancel(request):
    sub = page_subscription(request)
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
                                      f"You can reactivate the trial until {local_text(request, sub.trial_end)}.")
        elif sub.plan.is_free:
            messages.success(request, "Your subscription has ended and your account is on the Free plan. The unpaid "
                                      "invoice was voided; nothing more is charged.")
        else:
            messages.success(request, f"Your subscription is cancelled. Service runs until "
                                      f"{local_text(request, terms.paid_until(sub))}; no further charge.")
        return redirect("billing:overview")
    return page_render(request, "billing/cancel.html", {
        "subscription": sub, "form": form, "service_until": terms.paid_until(sub), "unpaid": unpaid,
    })


@account_required("change_plan")
@require_POST
def resume(request):
    sub = page_subscription(request)
    pending = selectors.pending_changes(sub, timezone.now())
    if not pending:
        messages.info(request, "There is no pending change to undo.")
        return redirect("billing:overview")
    if pending[0].owner_only and not request.membership.can("cancel"):
        raise PermissionDenied("Only the account owner can resume a cancelled subscription.")
    try:
        sub = billing.resume(sub, actor=request.user)
    except billing.PaymentMethodRequired as exc:
        return page_refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
    else:
        done = {
            "trial_cancelled": f"Your trial is active again until {local_text(request, sub.current_period_end)}.",
            "cancellation": "Your subscription continues; it renews as usual.",
        }.get(pending[0].kind, "The scheduled change is undone.")
        messages.success(request, done)
    return redirect("billing:overview")


# --- extra properties (ADD-1, ADD-2) -------------------------------------------------------------


@account_required("change_plan")
@require_GET
def extra_properties(request):
    sub = page_subscription(request)
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
            return page_refused(request, exc)
        except billing.BillingError as exc:
            form.add_error("quantity", str(exc))
        else:
            return page_render(request, "billing/quote.html", _extra_quote_context(sub, form.cleaned_data["quantity"],
                                                                               quote))
    return page_render(request, "billing/extra_properties.html", context)


def _extra_quote_context(sub, quantity: int, quote) -> dict:
    more = quantity > sub.extra_properties
    return {
        "title": counted(quantity, "extra property"), "quote": quote, "subscription": sub,
        "confirm_url": "billing:extra_properties_confirm",
        "confirm_label": (f"Pay {money_text(quote.amount_due, quote.currency)} and add" if more and quote.amount_due
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
    sub = page_subscription(request)
    quantity, quoted = form.cleaned_data["quantity"], form.cleaned_data["quoted_amount"]
    try:
        quote = billing.preview_extra_properties(sub, quantity)
    except REFUSED as exc:
        return page_refused(request, exc)
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:extra_properties")
    context = _extra_quote_context(sub, quantity, quote)
    try:  # PAY-3, as for plan changes
        result = billing.set_extra_properties(sub, quantity, actor=request.user, expected_amount=quoted)
    except billing.QuoteChanged as exc:
        context = _extra_quote_context(sub, quantity, exc.quote)
        context["changed_from"] = money_text(quoted, exc.quote.currency)
        return page_render(request, "billing/quote.html", context, status=409)
    except billing.PaymentDeclined as exc:
        context["declined"] = str(exc)
        return page_render(request, "billing/quote.html", context, status=402)
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
        return redirect("billing:overview")
    except billing.BillingError as exc:
        messages.error(request, str(exc))
        return redirect("billing:extra_properties")
    text = f"Extra properties: {quantity}."
    if result.invoice is not None and result.invoice.total:
        charged = money_text(result.invoice.total, result.invoice.currency)
        text += f" Charged {charged} (invoice {result.invoice.number})."
    messages.success(request, f"{text} {result.at_period_end}")
    return redirect("billing:overview")
