"""Which notification each domain event becomes: its category (NOT-1 billing or NOT-2 opt-out),
its subject, the row it is about, and the facts its templates state.

Event data carries ids, amounts as strings and datetimes as ISO-8601 strings (events.KINDS);
here they become names, formatted money (`format_money`) and dates in the account's billing
time zone as it was at the event (D-2, NOT-4), so the templates only print. What the account was
at the event (its plan, card, next charge, ...) comes from the event's facts, taken when it was
emitted (`notifications.facts`); nothing here reads the account's current state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import dateformat, timezone

from accounts.models import Property, SuspensionReason
from core import zones
from core.events import KINDS, Event
from core.money import format_money
from invoices.models import CreditNote, Invoice, RefundRequest
from subscriptions.models import RestoreRequest

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
             lambda ctx: (f"Receipt for invoice {ctx['invoice_number']}: {ctx['amount']} paid" if ctx.get("payment_id")
                          else f"Receipt for invoice {ctx['invoice_number']}: paid by credit"),  # REN-5, INV-5
             attach_pdf=True,
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


def _property_names(values) -> list[str]:
    """`paused_properties` as names: ids are looked up, names and dicts are used as given."""

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


def _documents(data: dict) -> tuple:
    """The invoice, credit note, refund request and restore request the event names; the invoice
    of a refund request or a credit note when the event names none itself."""
    invoice = _load(Invoice, data.get("invoice_id"))
    credit_note = _load(CreditNote, data.get("credit_note_id"))
    refund_request = _load(RefundRequest, data.get("refund_request_id"))
    restore_request = _load(RestoreRequest, data.get("restore_request_id"))
    if invoice is None and refund_request is not None:
        invoice = refund_request.invoice
    if invoice is None and credit_note is not None:
        invoice = credit_note.invoice
    return invoice, credit_note, refund_request, restore_request


def _formatted(key: str, value, currency: str, zone, plan_names: dict):
    """One value of the event's data as the templates print it: money, a local date, a plan's name."""
    if key == "amount":
        return money(value, currency)
    elif key in DATE_KEYS:
        return human_date(local_day(value, zone))
    elif key in PLAN_KEYS:
        return plan_names.get(value) or str(value or "")
    elif key == "paused_properties":
        return _property_names(value)
    elif key in ("sessions", "sessions_included"):
        return f"{int(value):,}" if value not in (None, "") else "unlimited"
    elif key == "month":
        moment = parse_moment(f"{value}-01" if len(str(value)) == 7 else value)  # "2026-04" or a date
        return dateformat.format(moment, "F Y") if moment else str(value)
    else:
        return value


def event_context(event: Event, account, facts: dict) -> dict:
    """Everything the templates of `event.kind` print, already formatted: the event's data, its
    `facts` (the account's state when it happened, NOT-4: `notifications.facts`) and the issued
    invoice or credit note it names (fixed at issue, INV-6). Nothing is read from the account's
    subscription, plan, card or statement as they are now."""

    data = dict(event.data)
    zone = zones.zone(facts["zone"]) if facts.get("zone") else account_zone(account)
    invoice, credit_note, refund_request, restore_request = _documents(data)
    currency = (
        (credit_note.currency if credit_note else None)
        or (invoice.currency if invoice else None)
        or facts.get("currency")
        or settings.BILLING_DEFAULT_CURRENCY
    )
    ctx: dict = {
        "kind": event.kind,
        "account": account,
        "account_name": facts.get("account_name") or account.name,
        "zone": zone,
        "invoice": invoice,
        "credit_note": credit_note,
        "refund_request": refund_request,
        "restore_request": restore_request,
        "currency": currency,
        "billing_url": billing_url(),
        "payment_method_url": billing_url() + "payment-method/",
        "site_url": settings.SITE_URL.rstrip("/"),
        "support_email": facts.get("support_email", ""),
        "occurred_on": human_date(local_day(event.occurred_at, zone)),
        "invoice_number": invoice.number if invoice and invoice.number else "",
        "credit_note_number": credit_note.number if credit_note else "",
        "to_price": None, "to_cycle_unit": None, "to_limit": None,
    }
    # The facts first, then the event's own data on top (its plan, its dates, its amount).
    ctx.update({key: value for key, value in facts.items()
                if key not in ("zone", "plan_names", "account_name", "currency", "support_email")})
    plan_names = facts.get("plan_names") or {}
    for key, value in data.items():
        ctx[key] = _formatted(key, value, currency, zone, plan_names)
    if event.kind == "account.suspended" or event.kind == "account.reactivated":
        code = data.get("reason") or data.get("previous_reason") or ""
        ctx["reason_label"] = SuspensionReason(code).label if code in SuspensionReason.values else code
    if invoice is not None:
        ctx["invoice_total"] = money(invoice.total, invoice.currency)
        # DUN-1: only renewals, trial conversions and overage go to dunning; a declined immediate
        # charge (first period, upgrade, add-on, reactivation) just leaves things as they were.
        ctx["dunning"] = invoice.kind in DUNNING_INVOICE_KINDS
    return ctx


DUNNING_INVOICE_KINDS = {"renewal", "trial_conversion", "overage"}
CYCLE_UNITS = {"monthly": "month", "yearly": "year"}
