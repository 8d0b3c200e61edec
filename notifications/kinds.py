"""Which notification each domain event becomes: its category (NOT-1 billing or NOT-2 opt-out),
its subject, the row it is about, and the facts its templates state.

Event data carries ids, amounts as strings and datetimes as ISO-8601 strings (events.KINDS);
here they become names, formatted money (`format_money`) and dates in the account's billing
time zone (D-2), so the templates only print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import dateformat, timezone

from core import zones
from core.events import KINDS, Event
from core.money import format_money
from subscriptions.statement import account_statement

from .models import Category

PRODUCT_NEWS = "product.news"

# Data keys holding a datetime or a date, shown as a date in the account's time zone.
DATE_KEYS = {"trial_end", "effective_at", "next_retry_at", "renews_at", "period_end"}
# Data keys holding a plan code, shown as the plan's name.
PLAN_KEYS = {"plan", "from_plan", "to_plan"}
# Data key naming the row an e-mail is about -> the related type stored on EmailLog.
RELATED_KEYS = (
    ("credit_note_id", "credit_note"),
    ("refund_request_id", "refund_request"),
    ("restore_request_id", "restore_request"),
    ("invoice_id", "invoice"),
    ("subscription_id", "subscription"),
)


@dataclass(frozen=True)
class Kind:
    code: str
    category: str
    subject: Callable[[dict], str]
    attach_pdf: bool = False  # attach the related invoice or credit note (the receipt)
    # Some events tell the same story as another one sent for the same action (see `payment.succeeded`).
    skip: Callable[[dict], bool] | None = None
    # A receipt or a decision is about one row and is sent once for it, even if the event repeats.
    once_per_related: bool = False

    @property
    def is_billing(self) -> bool:
        return self.category == Category.BILLING

    @property
    def template_name(self) -> str:
        return self.code.replace(".", "_")


def _subject(text: str) -> Callable[[dict], str]:
    return lambda ctx: text.format(**ctx)


# Invoices whose own event (trial.converted, subscription.started, ...) already is the receipt.
RECEIPT_BY_OWN_EVENT = {"trial_conversion", "subscription", "upgrade", "add_on"}


def _receipt_sent_by_own_event(ctx: dict) -> bool:
    invoice = ctx.get("invoice")
    return invoice is not None and invoice.kind in RECEIPT_BY_OWN_EVENT


NOTIFICATIONS: dict[str, Kind] = {
    k.code: k
    for k in [
        Kind("trial.started", Category.BILLING, _subject("Your {plan} trial has started: free until {trial_end}")),
        Kind("trial.ending_soon", Category.BILLING,
             _subject("Your {plan} trial ends on {trial_end}: {amount} will be charged")),
        Kind("trial.converted", Category.BILLING,
             _subject("Receipt: your {plan} subscription has started ({amount} paid)"), attach_pdf=True,
             once_per_related=True),
        Kind("trial.canceled", Category.BILLING, _subject("Your {plan} trial is cancelled")),
        Kind("subscription.started", Category.BILLING,
             _subject("Receipt: your {plan} subscription has started ({amount} paid)"), attach_pdf=True,
             once_per_related=True),
        Kind("subscription.upgraded", Category.BILLING,
             lambda ctx: (f"Receipt: {ctx['to_plan']} is now {ctx['to_cycle_unit']}ly ({ctx['amount']} paid)"
                          if ctx.get("from_plan") == ctx.get("to_plan")  # a change of cycle only (UPG-1)
                          else f"Receipt: you upgraded to {ctx['to_plan']} ({ctx['amount']} paid)"),
             attach_pdf=True, once_per_related=True),
        Kind("subscription.trial_plan_changed", Category.BILLING,
             _subject("Your trial is now on {to_plan}, still free until {trial_end}")),
        Kind("downgrade.scheduled", Category.BILLING,
             _subject("Your change to {to_plan} is scheduled for {effective_at}")),
        Kind("downgrade.applied", Category.BILLING, _subject("Your plan is now {to_plan}")),
        Kind("cancellation.scheduled", Category.BILLING,
             _subject("Your {plan} subscription will end on {effective_at}")),
        Kind("cancellation.effective", Category.BILLING,
             _subject("Your {plan} subscription has ended; you are on Free")),
        Kind("subscription.resumed", Category.BILLING,
             lambda ctx: (f"Your {ctx['plan']} trial is active again" if ctx.get("what") == "trial"
                          else f"Your {ctx['plan']} subscription continues")),
        Kind("add_on.changed", Category.BILLING, _subject("Extra properties: you now have {quantity}"),
             attach_pdf=True),
        Kind("payment.succeeded", Category.BILLING,
             _subject("Receipt for invoice {invoice_number}: {amount} paid"), attach_pdf=True,
             skip=_receipt_sent_by_own_event, once_per_related=True),
        Kind("payment.failed", Category.BILLING,
             _subject("Payment of {amount} failed: please update your payment method")),
        Kind("account.suspended", Category.BILLING, _subject("Your Prorata account is suspended")),
        Kind("account.reactivated", Category.BILLING, _subject("Your Prorata account is active again")),
        Kind("renewal.upcoming", Category.BILLING,
             _subject("Your {plan} subscription renews on {renews_at} for {amount}")),
        Kind("refund.decided", Category.BILLING,
             lambda ctx: "Your refund request was " + ("approved" if ctx["approved"] else "declined"),
             once_per_related=True),
        Kind("restore.decided", Category.BILLING,
             lambda ctx: f"Your request to restore {ctx['days']} days was "
                         + ("approved" if ctx["approved"] else "declined"), once_per_related=True),
        Kind("credit_note.issued", Category.BILLING,
             _subject("Credit note {credit_note_number} issued: {amount}"), attach_pdf=True, once_per_related=True),
        Kind("usage.alert", Category.USAGE_ALERTS,
             _subject("You have used {threshold}% of your {month} sessions")),
        Kind("period.extended", Category.BILLING,
             _subject("Your subscription was extended by {days} days, to {period_end}")),
        Kind(PRODUCT_NEWS, Category.PRODUCT_NEWS, lambda ctx: ctx["news"].subject),
    ]
}

missing = set(KINDS) - set(NOTIFICATIONS)
if missing:  # every event the engine can emit must become an e-mail (NOT-1)
    raise RuntimeError(f"No notification for event kinds: {sorted(missing)}")


# --- formatting ----------------------------------------------------------------


def account_zone(account) -> ZoneInfo:
    """The account's billing time zone (Account.zone); UTC without an account."""
    return account.zone if account is not None else zones.UTC_ZONE


def parse_moment(value) -> datetime | date | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime | date):
        return value
    text = str(value)
    try:
        return datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text)
    except ValueError:
        return None


def local_day(value, zone: ZoneInfo) -> date | None:
    """The customer's calendar date for an instant (D-2: never `now().date()`)."""
    moment = parse_moment(value)
    if isinstance(moment, datetime):
        if timezone.is_naive(moment):
            moment = timezone.make_aware(moment, ZoneInfo("UTC"))
        return moment.astimezone(zone).date()
    return moment


def human_date(day: date | None) -> str:
    return dateformat.format(day, "F j, Y") if day else ""


def money(amount, currency: str) -> str:
    try:
        return format_money(Decimal(str(amount)), currency)
    except (InvalidOperation, TypeError, ValueError):
        return str(amount)


def billing_url() -> str:
    return settings.SITE_URL.rstrip("/") + "/billing/"


# --- context -------------------------------------------------------------------


def _load(model, pk):
    if pk in (None, ""):
        return None
    return model.objects.filter(pk=pk).first()


def _plan_name(code) -> str:
    from plans.models import Plan

    plan = Plan.objects.filter(code=code).only("name").first()
    return plan.name if plan else str(code or "")


def _property_names(values) -> list[str]:
    """`paused_properties` as names: ids are looked up, names and dicts are used as given."""
    from accounts.models import Property

    names = []
    for value in values or []:
        if isinstance(value, dict):
            names.append(value.get("name") or value.get("domain") or str(value.get("id", "")))
        elif isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            prop = Property.objects.filter(pk=int(value)).first()
            names.append(f"{prop.name} ({prop.domain})" if prop else f"#{value}")
        else:
            names.append(str(value))
    return names


def related_of(kind: str, account_id: int, data: dict) -> tuple[str, str]:
    for key, type_name in RELATED_KEYS:
        if data.get(key) not in (None, ""):
            return type_name, str(data[key])
    return "account", str(account_id)


def event_context(event: Event, account) -> dict:
    """Everything the templates of `event.kind` print, already formatted."""
    from invoices.models import CreditNote, Invoice, Payment, PaymentStatus, RefundRequest
    from subscriptions.models import RestoreRequest, Subscription

    data = dict(event.data)
    zone = account_zone(account)
    subscription = _load(Subscription, data.get("subscription_id"))
    invoice = _load(Invoice, data.get("invoice_id"))
    credit_note = _load(CreditNote, data.get("credit_note_id"))
    refund_request = _load(RefundRequest, data.get("refund_request_id"))
    restore_request = _load(RestoreRequest, data.get("restore_request_id"))
    if restore_request and subscription is None:
        subscription = restore_request.subscription
    if invoice is None and refund_request is not None:
        invoice = refund_request.invoice
    if invoice is None and credit_note is not None:
        invoice = credit_note.invoice
    if subscription is None:
        subscription = (invoice.subscription if invoice else None) or account.subscription

    currency = (
        (credit_note.currency if credit_note else None)
        or (invoice.currency if invoice else None)
        or (subscription.plan.currency if subscription else None)
        or settings.BILLING_DEFAULT_CURRENCY
    )
    ctx: dict = {
        "kind": event.kind,
        "account": account,
        "subscription": subscription,
        "invoice": invoice,
        "credit_note": credit_note,
        "refund_request": refund_request,
        "restore_request": restore_request,
        "currency": currency,
        "billing_url": billing_url(),
        "payment_method_url": billing_url() + "payment-method/",
        "site_url": settings.SITE_URL.rstrip("/"),
        "occurred_on": human_date(local_day(event.occurred_at, zone)),
        "invoice_number": invoice.number if invoice and invoice.number else "",
        "credit_note_number": credit_note.number if credit_note else "",
    }
    for key, value in data.items():
        if key == "amount":
            ctx[key] = money(value, currency)
        elif key in DATE_KEYS:
            ctx[key] = human_date(local_day(value, zone))
        elif key in PLAN_KEYS:
            ctx[key] = _plan_name(value)
        elif key == "paused_properties":
            ctx[key] = _property_names(value)
        elif key in ("sessions", "sessions_included"):
            ctx[key] = f"{int(value):,}" if value not in (None, "") else "unlimited"
        elif key == "month":
            moment = parse_moment(f"{value}-01" if len(str(value)) == 7 else value)  # "2026-04" or a date
            ctx[key] = dateformat.format(moment, "F Y") if moment else str(value)
        else:
            ctx[key] = value
    _add_plan_facts(ctx, data, subscription, account, currency)
    if event.kind == "account.suspended" or event.kind == "account.reactivated":
        from accounts.models import SuspensionReason

        code = data.get("reason") or data.get("previous_reason") or ""
        ctx["reason_label"] = SuspensionReason(code).label if code in SuspensionReason.values else code
    if event.kind == "payment.failed" and invoice is not None:
        # DUN-2: each failure e-mails; say which attempt this was. The engine counts the failures
        # of the dunning cycle on the subscription (0 after the first one).
        failed = Payment.objects.filter(invoice=invoice, status=PaymentStatus.FAILED).count()
        ctx["attempt_number"] = subscription.retry_count + 1 if subscription is not None else max(failed, 1)
    if invoice is not None:
        ctx["invoice_total"] = money(invoice.total, invoice.currency)
        ctx["invoice_due"] = money(invoice.amount_due, invoice.currency)
    if invoice is not None:
        # DUN-1: only renewals, trial conversions and overage go to dunning; a declined immediate
        # charge (first period, upgrade, add-on, reactivation) just leaves things as they were.
        ctx["dunning"] = invoice.kind in DUNNING_INVOICE_KINDS
    # PAY-4: what happens next is the account statement's, the computation the billing run acts on.
    statement = account_statement(account, event.occurred_at)
    ctx["statement"] = statement
    ctx["next_charge_sentence"] = statement.next_charge_sentence
    if statement.on_new_card is not None:
        upcoming = statement.on_new_card.upcoming
        ctx["reactivation_amount"] = money(statement.on_new_card.total, statement.currency)
        ctx["reactivation_what"] = f"{upcoming.plan.name}, {upcoming.cycle}"
    if "trial_end" not in ctx:
        ctx["trial_end"] = human_date(local_day(subscription.trial_end, zone)) if subscription else ""
    return ctx


DUNNING_INVOICE_KINDS = {"renewal", "trial_conversion", "overage"}
CYCLE_UNITS = {"monthly": "month", "yearly": "year"}


def _add_plan_facts(ctx: dict, data: dict, subscription, account, currency: str) -> None:
    """The current plan's price and limits, the target plan of a change, and the card on file."""
    from invoices.models import PaymentMethod
    from plans.models import Plan

    plan = subscription.plan if subscription else None
    cycle = subscription.cycle if subscription else "monthly"
    price = plan.price_for(cycle) if plan else None
    ctx["plan_obj"] = plan
    ctx.setdefault("plan", plan.name if plan else "")
    ctx["price"] = money(price, currency) if price is not None else ""
    ctx["cycle_unit"] = CYCLE_UNITS.get(cycle, cycle)
    ctx["hard_capped"] = bool(plan and plan.hard_capped)
    ctx["overage_price"] = money(plan.overage_per_1000, currency) if plan and not plan.hard_capped else ""
    ctx["to_plan_obj"] = ctx["to_price"] = ctx["to_cycle_unit"] = None
    if data.get("to_plan"):
        target = Plan.objects.filter(code=data["to_plan"]).first()
        to_cycle = data.get("to_cycle") or data.get("cycle") or cycle
        to_price = target.price_for(to_cycle) if target else None
        ctx["to_plan_obj"] = target
        ctx["to_price"] = money(to_price, currency) if to_price is not None else ""
        ctx["to_cycle_unit"] = CYCLE_UNITS.get(to_cycle, to_cycle)
    card = (
        PaymentMethod.objects.filter(account=account, is_default=True, detached_at__isnull=True)
        .order_by("-id").first()
    )
    ctx["card"] = f"{card.brand.title()} ending in {card.last4}" if card else ""
