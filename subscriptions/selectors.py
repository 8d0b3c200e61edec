"""Reads: what is due for the billing run, and what the customer billing page shows. Nothing here
changes state.

The overview reads a fixed number of rows whatever the account's history: invoices are limited,
sums are aggregates, and usage comes from the monthly counter, never from the per-day rows.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import F, Q

from accounts.models import ROLE_PERMISSIONS, SuspensionReason
from core.clock import clock
from core.money import format_money
from invoices import services as ledger
from invoices.models import Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus
from invoices.selectors import issued_invoices
from plans.models import Cycle, Plan

from . import pricing, quotes, terms
from .models import Status, Subscription
from .statement import account_statement
from .usage_panel import usage_bars, usage_summary

RECENT_INVOICES = 5


def role_flags(membership) -> dict[str, bool]:
    """ACC-1 for templates: {"cancel": True, ...} for what the user's role allows."""
    return {permission: True for permission in ROLE_PERMISSIONS[membership.role]}


# --- what the billing run has to do at `now` (REN-1, TRI-3, TRI-7, REN-5, DUN-2) -----------------------


def due_trial_reminders(now):
    return Subscription.objects.filter(status=Status.TRIALING, trial_reminded_at__isnull=True,
                                       trial_end__gt=now, trial_end__lte=now + timedelta(days=3))


def due_trials(now):
    return Subscription.objects.filter(
        Q(status=Status.TRIALING) | Q(status=Status.CANCELED, ended_at__isnull=True, trial_start__isnull=False,
                                      current_price=0),
        trial_end__lte=now,
    )


def due_renewal_reminders(now):
    return Subscription.objects.filter(status=Status.ACTIVE, cycle=Cycle.YEARLY, cancel_at_period_end=False,
                                       current_period_end__lte=now + timedelta(days=7),
                                       current_period_end__gt=now).exclude(renewal_reminded_for=F("current_period_end"))


def due_renewals(now):
    # A past-due subscription does not renew again: dunning settles it first (DUN-3).
    return (Subscription.objects.filter(status=Status.ACTIVE, cancel_at_period_end=False,
                                        current_period_end__isnull=False,
                                        current_period_end__lte=now + terms.renewal_lead(), current_price__gt=0)
            .exclude(scheduled_plan__monthly_price=0, scheduled_plan__yearly_price__isnull=True)
            .exclude(renewal_invoiced_for=F("current_period_end")))


def due_rollovers(now):
    return Subscription.objects.filter(status__in=[Status.ACTIVE, Status.PAST_DUE], current_period_end__lte=now,
                                       current_price__gt=0)


def due_retries(now):
    return Subscription.objects.filter(status=Status.PAST_DUE, next_retry_at__lte=now)


# --- the current subscription ----------------------------------------------------------------------


def subscription_current(account) -> Subscription | None:
    return Subscription.objects.select_related("plan", "scheduled_plan").current_of(account)


def _day(sub: Subscription, moment: datetime) -> str:
    return f"{terms.period_date(sub, moment):%Y-%m-%d}"


# --- pending changes (DWN-1, CAN-3, ADD-2, TRI-5) --------------------------------------------------


@dataclass
class PendingNotice:
    """A change waiting on the billing page's banner, with its undo button (not the engine's
    `changes.PendingChange`, which is what a charge applies)."""

    kind: str  # cancellation | downgrade | extra_properties | trial_cancelled
    text: str
    undo_label: str
    owner_only: bool  # undoing a cancellation is the owner's (CAN-1)


def pending_changes(sub: Subscription | None, now: datetime) -> list[PendingNotice]:
    if sub is None:
        return []
    changes = []
    until = terms.trial_reactivable_until(sub, now)
    if until:
        changes.append(PendingNotice(
            "trial_cancelled",
            f"You cancelled your {sub.plan.name} trial; your account is suspended. You can reactivate the trial "
            f"until {_day(sub, until)}.", "Reactivate trial", True))
        return changes
    if sub.status == Status.CANCELED:
        return changes
    if sub.cancel_at_period_end:
        changes.append(PendingNotice(
            "cancellation",
            f"Your {sub.plan.name} subscription is cancelled: service runs until {_day(sub, terms.paid_until(sub))}, "
            "then the account moves to Free.", "Resume subscription", True))
    if sub.scheduled_plan_id:
        effective = sub.trial_end if sub.status == Status.TRIALING else sub.current_period_end
        target = "Free" if sub.scheduled_plan.is_free else f"{sub.scheduled_plan.name} ({sub.scheduled_cycle})"
        changes.append(PendingNotice(
            "downgrade", f"Downgrade to {target} on {_day(sub, effective)}. You keep {sub.plan.name} until then.",
            "Undo downgrade", False))
    if sub.scheduled_extra_properties is not None:
        changes.append(PendingNotice(
            "extra_properties",
            f"Extra properties go from {sub.extra_properties} to {sub.scheduled_extra_properties} on "
            f"{_day(sub, sub.current_period_end)}.", "Undo change", False))
    return changes


SUSPENSION_HELP = {
    SuspensionReason.NON_PAYMENT: (
        "Your account is suspended because the last payment retry failed; your properties have stopped tracking.",
        "Update your payment method: a full new period is charged from today and tracking resumes at once."),
    SuspensionReason.POLICY_VIOLATION: (
        "Your account is suspended for a policy violation; your properties have stopped tracking.",
        "Contact support to resolve it. Billing continues as usual."),
    SuspensionReason.CANCELLED_TRIAL: (
        "Your account is suspended because you cancelled your free trial; your properties have stopped tracking.",
        "Reactivate the trial before its end date, or subscribe to a paid plan."),
}


def suspension(account) -> dict | None:
    if not account.is_suspended:
        return None
    why, what = SUSPENSION_HELP.get(account.suspension_reason, ("Your account is suspended.", "Contact support."))
    return {"reason": account.suspension_reason, "why": why, "what": what, "note": account.suspension_note}


# --- trials and the plan list (TRI-1, TRI-2, UPG-1, DWN-1) --------------------------------------------


def trial_offer(account) -> tuple[str, str]:
    """("eligible" | "needs_card" | "refused", reason)."""
    refusal = terms.trial_refusal(account)
    if refusal:
        return "refused", refusal[0]
    if ledger.default_payment_method(account) is None:
        return "needs_card", "Add a payment method to start your free trial. You are not charged until it ends."
    return "eligible", ""


def _starting(sub: Subscription | None) -> bool:
    return sub is None or sub.status == Status.CANCELED or (sub.plan.is_free and sub.status == Status.ACTIVE)


def plan_action(sub: Subscription | None, plan: Plan, cycle: str, trial: str) -> tuple[str, str] | None:
    """What choosing (plan, cycle) does, as (kind, button label); None when it is not offered.
    Mirrors the engine's rules; the engine's quote has the last word."""
    if plan.price_for(cycle) is None:
        return None
    if _starting(sub):
        if plan.is_free:
            return ("current", "Current plan") if sub is not None and sub.status == Status.ACTIVE else None
        if plan.trial_days and trial in ("eligible", "needs_card"):
            return "trial", "Start free trial"
        return "subscribe", f"Subscribe to {plan.name}"
    same = plan.pk == sub.plan_id
    if same and cycle == sub.cycle:
        return "current", "Current plan"
    if sub.scheduled_plan_id == plan.pk and (plan.is_free or sub.scheduled_cycle == cycle):
        effective = sub.trial_end if sub.status == Status.TRIALING else sub.current_period_end
        return "scheduled", f"Scheduled for {_day(sub, effective)}"  # DWN-1: already chosen, undo it instead
    if plan.is_free and sub.cancel_at_period_end:
        return "scheduled", f"From {_day(sub, terms.paid_until(sub))}, as you cancelled"
    if sub.status == Status.TRIALING:
        if plan.is_free:
            return "downgrade", "Downgrade to Free"
        return "trial_change", f"Switch trial to {plan.name}" + ("" if cycle == sub.cycle else f" ({cycle})")
    if plan.is_free:
        return "downgrade", "Downgrade to Free"
    if sub.cycle == Cycle.YEARLY and cycle == Cycle.MONTHLY:  # DWN-1 whatever the plan: at period end
        return "downgrade", "Switch to monthly" if same else f"Switch to {plan.name} (monthly) at period end"
    if plan.rank != sub.plan.rank:
        return ("upgrade", f"Upgrade to {plan.name}") if plan.rank > sub.plan.rank \
            else ("downgrade", f"Downgrade to {plan.name}")
    if cycle != sub.cycle:
        return "upgrade", "Switch to yearly" if same else f"Upgrade to {plan.name}"
    if plan.price_for(cycle) > sub.current_price:
        return "upgrade", f"Upgrade to {plan.name}"
    return "downgrade", f"Downgrade to {plan.name}"


@dataclass
class PlanOption:
    cycle: str
    price: Decimal
    kind: str
    label: str
    per_month: Decimal | None = None
    cuts: tuple = ()  # the limits this change lowers, in words (quotes.limit_cuts)


@dataclass
class PlanCard:
    plan: Plan
    current: bool
    custom: bool
    options: list[PlanOption]

    @property
    def trial_days(self) -> int:
        """The free trial this card offers (TRI-1), 0 when none is: only where choosing it starts one."""
        return self.plan.trial_days if any(option.kind == "trial" for option in self.options) else 0


def plan_cards(account, sub: Subscription | None, trial: str) -> list[PlanCard]:
    """The public plans and the account's own custom plan (CAT-3), in rank order."""
    plans = list(Plan.objects.filter(Q(public=True) | Q(account=account)).order_by("rank", "code"))
    if sub is not None and sub.plan_id not in {p.pk for p in plans}:
        plans.append(sub.plan)  # a retired plan the account is still on
    cards = []
    for plan in plans:
        options = []
        for cycle in (Cycle.MONTHLY, Cycle.YEARLY):
            action = plan_action(sub, plan, cycle, trial)
            if action is None:
                continue
            price = plan.price_for(cycle)
            cuts = quotes.limit_cuts(sub, plan) if action[0] in ("upgrade", "downgrade", "trial_change") else ()
            options.append(PlanOption(cycle, price, action[0], action[1],
                                      per_month=(price / 12).quantize(Decimal("0.01")) if cycle == Cycle.YEARLY
                                      else None, cuts=cuts))
        current = sub is not None and sub.plan_id == plan.pk and sub.status != Status.CANCELED
        cards.append(PlanCard(plan, current, plan.account_id is not None, options))
    return cards


# --- requests (REF-2, UPG-3) ----------------------------------------------------------------------


def trial_conversion_invoices(account):
    return (Invoice.objects.filter(account=account, kind=InvoiceKind.TRIAL_CONVERSION, number__isnull=False)
            .order_by("-issued_at", "-id"))


def refund_offer(invoice: Invoice, now: datetime) -> tuple[bool, str]:
    """(may request, why not) for one invoice, from the engine's read helper (REF-2, REF-3)."""
    reason = terms.refund_refusal(invoice, now=now)
    return reason is None, reason or ""


def restore_days(sub: Subscription, now: datetime) -> dict | None:
    """The forfeited days a monthly -> yearly upgrade left and the last day to ask for them (UPG-3)."""
    invoice = terms.upgrade_invoice(sub)
    if invoice is None:
        return None
    upgraded = terms.upgraded_on(sub, invoice)
    return {"days": terms.forfeited_days(invoice), "upgraded_on": upgraded,
            "deadline": pricing.restore_deadline(upgraded, settings.BILLING_RESTORE_WORKING_DAYS)}


def invoice_rows(account, *, limit: int | None = None) -> list:
    """The account's issued invoices, newest first, each with its refunded or credited status."""
    invoices = issued_invoices(account)
    return list(invoices[:limit] if limit else invoices)


def restore_offer(sub: Subscription | None, now: datetime) -> tuple[bool, str]:
    """(may request, why not) for the forfeited days of a monthly→yearly upgrade (UPG-3)."""
    if sub is None:
        return False, ""
    reason = terms.restore_refusal(sub, now=now)
    return reason is None, reason or ""


# --- the card on file and open invoices (PAY-5) -------------------------------------------------


def pay_now_refusal(invoice: Invoice) -> str | None:
    """Why `invoice` cannot be paid now with the card on file (PAY-5), or None. The engine's
    `billing.invoice_pay_now` asks the same under the invoice's lock; the pages ask to show the
    button or the reason instead."""
    if invoice.status != InvoiceStatus.OPEN:
        return f"Invoice {invoice.number} is {invoice.get_status_display().lower()}: nothing is owed on it."
    account = invoice.account
    if account.is_suspended and account.suspension_reason == SuspensionReason.NON_PAYMENT:
        # DUN-3: the period this renewal was for is gone; a new card pays a new period from that day.
        return ("Your account is suspended for non-payment, so this invoice is not charged again. Update your "
                "payment method: a full new period is charged from that day, tracking resumes at once and this "
                "invoice is voided.")
    if Payment.objects.filter(invoice=invoice, status=PaymentStatus.UNKNOWN).exists():
        return (f"A payment of invoice {invoice.number} is already being processed. Reload the page in a minute "
                "to see its result; you will not be charged twice.")
    sub = invoice.subscription
    if sub is not None and sub.charge_in_flight_id and Payment.objects.filter(
            pk=sub.charge_in_flight_id, status=PaymentStatus.UNKNOWN).exists():
        return "A payment for your subscription is still being processed. Try again in a minute."
    if ledger.default_payment_method(account) is None:
        return "There is no card on file. Add a payment method to pay this invoice."
    return None


def can_be_charged(account) -> bool:
    """PAY-6, the one answer to "can this account be charged": it has a card on file. Paying by
    bank transfer (COL-1) will be the other way to be charged, answered here."""
    return ledger.default_payment_method(account) is not None


def charge_refusal(account, what: str) -> str | None:
    """PAY-6: why `what` (a resumption, a plan change, a purchase: anything that leads to a charge)
    is refused when the account cannot be charged (`can_be_charged`), or None."""
    if can_be_charged(account):
        return None
    return f"There is no card on file. Add a payment method first to {what}; nothing is charged until you confirm."


def card_removal_refusal(account, now: datetime) -> str | None:
    """Why the card on file cannot be removed now (PAY-5: a paid subscription needs it), or None.
    Read from the account statement, the one computation of what is charged next, and this
    month's usage (an overage invoice is charged at once on the 1st, USE-3). Removing a card is
    never a cancellation (CAN-1): the page says what to do instead."""
    usage = usage_summary(account, now)
    statement = account_statement(account, now, usage=usage)
    sub = statement.subscription
    if sub is not None and sub.charge_in_flight_id and Payment.objects.filter(
            pk=sub.charge_in_flight_id, status=PaymentStatus.UNKNOWN).exists():
        return "A payment is being processed with this card. Try again in a minute."
    if statement.owed is not None:
        owed = statement.owed
        return (f"You have {format_money(owed.amount, owed.currency)} unpaid (invoice {owed.invoice.number}), "
                "charged to this card. Pay it first, or replace the card with another one.")
    charge = statement.next_charge
    if charge is not None:
        on = f"{terms.local_date(account, charge.at):%Y-%m-%d}"
        money = format_money(charge.total, charge.currency)
        what = (f"Your free trial of {sub.plan.name} converts on {on}: {money} is charged to this card."
                if charge.kind == "trial_conversion"
                else f"The next charge of your {sub.plan.name} subscription, {money} on {on}, is made with this card.")
        return (f"{what} Replace the card with another one, or cancel first: a card can be removed once no charge "
                "is scheduled.")
    if usage["overage_amount"]:
        return (f"Sessions over your quota this month ({format_money(usage['overage_amount'], usage['currency'])} "
                f"so far) are invoiced on the 1st and charged to this card. Replace the card with another one "
                "instead.")
    return None


# --- the overview --------------------------------------------------------------------------------


def billing_overview(account, membership, now: datetime | None = None) -> dict:
    """Everything the overview shows, in a fixed number of queries (see tests/web). The money and
    the dates come from the account statement, the one computation of what happens next."""
    now = clock(now)
    sub = subscription_current(account)
    usage = usage_summary(account, now)
    context = {"account": account, "subscription": sub, "usage": usage, "bars": usage_bars(usage), "now": now,
               "suspension": suspension(account)}
    if not membership.can("view_billing"):
        return context  # ACC-1: members see usage only
    statement = account_statement(account, now, usage=usage)
    pending = pending_changes(sub, now)
    context.update({
        "statement": statement,
        "payment_method": ledger.default_payment_method(account),
        "pending": pending,
        "pending_shown": [change for change in pending
                          if change.kind != "trial_cancelled" or not context["suspension"]],
        "recent_invoices": invoice_rows(account, limit=RECENT_INVOICES) if membership.can("invoices") else [],
    })
    if membership.can("requests") and sub is not None and sub.cycle == Cycle.YEARLY and sub.status == Status.ACTIVE:
        context["restore_ok"], context["restore_reason"] = restore_offer(sub, now)
        context["restore"] = restore_days(sub, now) if context["restore_ok"] else None
    return context
