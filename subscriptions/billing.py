"""What a customer asks of the billing engine: start a trial or a subscription, change plans,
buy extra properties, cancel and resume, save or remove a card, pay an open invoice now, ask for a
refund or for forfeited days.
The billing page calls these (docs/billing-engine.md); staff decisions are in `staff`, the
scheduled work in `scheduler`. The card on file and paying now live in `cards`, the requests staff
decide in `requests`; both are public here under their names (`billing.set_payment_method`, ...).

Every command takes `actor` (the acting user; None means the system) and `now` (D-4), runs in a
transaction that starts with the locks it needs (`locks`), writes an audit row (ACC-3) and raises
a `BillingError` whose message is fit for the customer. Money moves through `charges`; the rules
it reads are in `terms` and `quotes`; state changes go through `lifecycle`.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from accounts import preferences
from accounts.audit import audit
from accounts.models import AccountFlag, FlagKind
from accounts.services import account_create, unpause_within_limit
from core import events, zones
from invoices import services as ledger
from invoices.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
)
from plans.models import Plan

from . import charges, lifecycle, quotes, selectors, statement, terms
from .cards import (
    invoice_pay_now,
    open_invoices_pay_now,
    payment_method_detached,
    payment_method_remove,
    set_payment_method,
)
from .changes import ChangeKind, PendingChange
from .errors import (
    BillingError,
    InvalidChange,
    LimitExceeded,
    NotEligible,
    PaymentDeclined,
    PaymentMethodRequired,
    PaymentPending,
    QuoteChanged,
)
from .locks import account_lock, account_subscription_lock, invoices_lock, subscription_lock_current
from .models import CancelReason, Status, Subscription
from .pricing import Quote
from .requests import request_refund, request_restore_days

__all__ = [
    # the commands
    "cancel", "change_plan", "invoice_pay_now", "open_invoices_pay_now", "payment_method_detached",
    "payment_method_remove", "preview_change", "preview_extra_properties", "request_refund", "request_restore_days",
    "resume", "set_billing_zone", "set_extra_properties", "set_payment_method", "sign_up", "start_free",
    "start_trial", "subscribe",
    # what they return and raise
    "BillingError", "InvalidChange", "LimitExceeded", "NotEligible", "PaymentDeclined", "PaymentMethodRequired",
    "PaymentPending", "Quote", "QuoteChanged", "ZoneChange",
]


@dataclass(frozen=True)
class ZoneChange:
    """What `set_billing_zone` did: the account, and from when the subscription's periods follow
    the new zone (the start of the first period not yet invoiced; None: nothing changed or no
    period to follow it)."""

    account: object
    effective_at: object


def payment_means_guard(account, what: str) -> None:
    """PAY-6: refuse what would lead to a charge when the account cannot be charged
    (`selectors.charge_refusal`, the one place that decides)."""
    refusal = selectors.charge_refusal(account, what)
    if refusal:
        raise PaymentMethodRequired(refusal)


# --- signing up (a new account starts on Free) ---------------------------------------------------------


def sign_up(*, email: str, password: str, account_name: str, timezone: str = "", now=None):
    """A user, an account on the Free plan and the owner membership, at once. `timezone` is the
    billing time zone to start with (the browser's, D-5); UTC when it is empty or unknown."""
    now = terms.clock(now)
    with transaction.atomic():
        user, account = account_create(email=email, password=password, account_name=account_name,
                                       timezone=timezone, now=now)
        lifecycle.subscription_start_free(account, actor=user, now=now)
        return user, account


def start_free(account, *, actor=None, now=None) -> Subscription:
    """Put a new account on the Free plan (no card, no periods to charge)."""
    now = terms.clock(now)
    with transaction.atomic():
        return lifecycle.subscription_start_free(account, actor=actor, now=now)


# --- trials (TRI-1, TRI-2) ------------------------------------------------------------------------------


def start_trial(account, plan_code: str, cycle: str = "monthly", *, actor=None, now=None) -> Subscription:
    """TRI-1: a free trial of a paid plan; needs a card on file; one per account (TRI-2)."""
    now = terms.clock(now)
    try:
        with transaction.atomic():
            sub = account_subscription_lock(account)
            return _trial_start(sub, terms.plan_for(account, plan_code), cycle, actor=actor, now=now)
    except NotEligible as exc:
        if exc.matched_account is not None:  # staff see the match (TRI-2)
            with transaction.atomic():
                _flag_trial_abuse(account, exc.matched_account, now=now)
        raise


def _trial_start(sub: Subscription, plan: Plan, cycle: str, *, actor, now) -> Subscription:
    account = sub.account
    terms.plan_price(plan, cycle)
    if plan.is_free or not plan.trial_days:
        raise InvalidChange(f"{plan.name} has no free trial.")
    if sub.status == Status.TRIALING or (sub.is_paid and sub.status != Status.CANCELED):
        raise InvalidChange("You already have a subscription; change its plan instead.")
    terms.paid_status_guard(sub)
    refusal = terms.trial_refusal(account)
    if refusal:
        raise NotEligible(refusal[0], matched_account=refusal[1])
    if ledger.default_payment_method(account) is None:
        raise NotEligible("Add a payment method to start your free trial. You will not be charged until it ends.")
    return lifecycle.trial_start(sub, plan, cycle, actor=actor, now=now)


def _flag_trial_abuse(account, match, *, now) -> None:
    if match is None:
        return
    if not AccountFlag.objects.filter(account=account, kind=FlagKind.TRIAL_ABUSE, matched_account=match).exists():
        flag = AccountFlag.objects.create(
            account=account, kind=FlagKind.TRIAL_ABUSE, matched_account=match, created_at=now,
            detail=f"Card fingerprint or owner e-mail matches account #{match.pk} ({match.name}), which had a trial.",
        )
        audit(account=account, actor=None, action="account.flagged", obj=flag, after={"kind": flag.kind}, now=now)


# --- a first paid period (REN-4, UPG-6) -------------------------------------------------------------------


def subscribe(account, plan_code: str, cycle: str = "monthly", *, actor=None, now=None) -> Subscription:
    """A paid subscription at once, no trial (REN-4): the first period starts on the payment date."""
    now = terms.clock(now)
    with transaction.atomic():
        sub = account_subscription_lock(account)
        plan = terms.plan_for(account, plan_code)
        terms.plan_price(plan, cycle)
        if plan.is_free:
            raise InvalidChange("The Free plan needs no subscription.")
        if sub.is_paid and sub.status != Status.CANCELED:
            raise InvalidChange("You already have a subscription; change its plan instead.")
        terms.paid_status_guard(sub)
        payment_means_guard(account, f"subscribe to {plan.name}")
        problem = terms.fit_problem(account, plan)
        if problem:
            raise LimitExceeded(problem.replace("to downgrade", "to subscribe to this plan"))
        line, period = quotes.first_period(plan, cycle, now, sub.account)
        step = _first_period_begin(sub, plan, cycle, [line], period, actor=actor, now=now)
    charges.charge_finish(step, actor=actor, now=now)
    return Subscription.objects.select_related("plan").current_of(account)


def _first_period_begin(sub, plan, cycle, lines, period, *, actor, now):
    """Step 1 of the charge for a first full period (REN-4); the change applies once it is paid."""
    start, end = period
    pending = PendingChange(ChangeKind.SUBSCRIBE, plan=plan.code, cycle=cycle, start=start,
                            timezone=sub.account.timezone, from_subscription=sub.pk)
    return charges.charge_begin(sub, kind=InvoiceKind.SUBSCRIPTION,
                                lines=[ledger.Line.from_quote(line, start, end) for line in lines],
                                pending=pending, currency=plan.currency, period=period, actor=actor, now=now)


# --- plan changes (UPG, DWN, TRI-6, PAY-3) ------------------------------------------------------------------


def preview_change(subscription, plan_code: str, cycle: str = "monthly", *, now=None) -> Quote:
    """The quote for a plan change; changes nothing."""
    now = terms.clock(now)
    sub = Subscription.objects.select_related("plan", "account", "scheduled_plan").get(pk=subscription.pk)
    change = quotes.plan_change(sub, terms.plan_for(sub.account, plan_code), cycle, now)
    _plan_change_guard(sub, change)
    return change.quote


def _plan_change_guard(sub: Subscription, change) -> None:
    """PAY-6: a plan change that leads to a charge (now, at the trial's end or at the next renewal)
    needs a way to pay; a move to Free does not. A trial has its own rule (TRI-1)."""
    if change.kind != ChangeKind.START_TRIAL and not change.plan.is_free:
        payment_means_guard(sub.account, f"change to {change.plan.name}")


def change_plan(subscription, plan_code: str, cycle: str = "monthly", *, actor=None, now=None,
                expected_amount: Decimal | None = None) -> Quote:
    """Apply a plan change after the customer confirmed its quote: UPG-*, DWN-*, TRI-6, UPG-6.
    With `expected_amount` (what the customer saw), a different amount due raises QuoteChanged."""
    now = terms.clock(now)
    with transaction.atomic():
        sub = subscription_lock_current(subscription)
        plan = terms.plan_for(sub.account, plan_code)
        change = quotes.plan_change(sub, plan, cycle, now)
        _plan_change_guard(sub, change)
        quotes.check_expected(change.quote, expected_amount)
        if change.kind == ChangeKind.START_TRIAL:
            _trial_start(sub, plan, cycle, actor=actor, now=now)
            return change.quote
        if change.kind in (ChangeKind.TRIAL_CHANGE, ChangeKind.SCHEDULE):
            _plan_change_uncharged(sub, change, actor=actor, now=now)
            return change.quote
        if change.kind == ChangeKind.DOWNGRADE_NOW:
            lifecycle.downgrade_apply_now(sub, plan, change.credit, actor=actor,
                                          reason="Immediate downgrade", now=now)
            return change.quote
        if change.kind == ChangeKind.SUBSCRIBE:
            refusal = terms.trial_refusal(sub.account) if plan.trial_days else None
            if refusal:
                _flag_trial_abuse(sub.account, refusal[1], now=now)
            step = _first_period_begin(sub, plan, cycle, change.lines, change.period, actor=actor, now=now)
        else:
            step = charges.charge_begin(sub, kind=InvoiceKind.UPGRADE, lines=change.ledger_lines(),
                                        pending=change.pending(sub, now), currency=plan.currency,
                                        period=change.period, notes=" ".join(change.quote.notes), actor=actor,
                                        now=now)
    invoice = charges.charge_finish(step, actor=actor, now=now)
    return change.quote.with_invoice(invoice)


def _plan_change_uncharged(sub: Subscription, change, *, actor, now) -> None:
    """TRI-6 (a trial's plan switched) and DWN-1 (a change scheduled for the period's end): applied
    at once, nothing charged. The caller holds the subscription's lock."""
    before, from_plan = terms.snapshot(sub), sub.plan.code
    lifecycle.change_apply(sub, change.pending(sub, now), change.plan, now=now).save()
    if change.kind == ChangeKind.TRIAL_CHANGE:
        unpause_within_limit(sub.account, actor=actor, now=now)
        audit(account=sub.account, actor=actor, action="trial.plan_changed", obj=sub, before=before,
              after=terms.snapshot(sub), now=now)
        events.emit("subscription.trial_plan_changed", sub.account_id, now=now, subscription_id=sub.pk,
                    from_plan=from_plan, to_plan=change.plan.code, trial_end=sub.trial_end.isoformat())
        return
    audit(account=sub.account, actor=actor, action="downgrade.scheduled", obj=sub, before=before,
          after=terms.snapshot(sub), now=now)
    effective = sub.trial_end if sub.status == Status.TRIALING else sub.current_period_end
    events.emit("downgrade.scheduled", sub.account_id, now=now, subscription_id=sub.pk, from_plan=sub.plan.code,
                to_plan=change.plan.code, to_cycle=change.cycle, effective_at=terms.iso(effective))


# --- cancel and resume (CAN, TRI-4, TRI-5) ------------------------------------------------------------------


def cancel(subscription, *, reason: str = "", reason_code: str = "", actor=None, now=None) -> Subscription:
    """CAN-2: a paid subscription cancels at period end; TRI-4: a trial is cancelled at once and the
    account suspended; CAN-6: while past due with the period in force unpaid, the open renewal is
    voided and the subscription ends at once (the Free subscription that replaces it is returned).
    Only the owner may call this, from the billing page (CAN-1). CAN-5: the optional reason, a
    `CancelReason` code and the owner's own words, is kept for staff."""
    now = terms.clock(now)
    if reason_code and reason_code not in CancelReason.values:
        raise InvalidChange("Choose a reason from the list, or none.")
    reason = (reason or "").strip()
    with transaction.atomic():
        sub = subscription_lock_current(subscription)
        if sub.status == Status.TRIALING:
            lifecycle.trial_cancel(sub, reason, actor=actor, now=now, reason_code=reason_code)
            return sub
        if not sub.is_paid or sub.status == Status.CANCELED:
            raise InvalidChange("There is no paid subscription to cancel.")
        if sub.cancel_at_period_end:
            raise InvalidChange(f"Your subscription already ends on {terms.period_date(sub, terms.paid_until(sub))}.")
        if sub.status == Status.SUSPENDED:
            raise InvalidChange("Your subscription is suspended for non-payment; there is nothing left to cancel.")
        before = terms.snapshot(sub)
        if sub.status == Status.PAST_DUE:
            open_invoices = invoices_lock(Invoice.objects.filter(subscription=sub, status=InvoiceStatus.OPEN))
            if Payment.objects.filter(invoice__in=open_invoices, status=PaymentStatus.UNKNOWN).exists():
                raise InvalidChange("A payment for your open invoice is being processed. Try again in a minute.")
            unpaid = statement.unpaid_renewals(sub, now)
            # The open renewal is for a period the customer will not have: void it.
            lifecycle.renewals_void_open(sub, now=now)
            lifecycle.dunning_abandon(sub, now, action="subscription.dunning_ended")
            if unpaid:  # CAN-6: nothing was bought beyond the last paid period: it ends now
                return lifecycle.subscription_cancel_now(sub, reason, reason_code=reason_code, actor=actor, now=now)
        ends_at = terms.paid_until(sub)
        sub.cancel_at_period_end, sub.canceled_at, sub.cancel_reason = True, now, reason[:2000]
        sub.cancel_reason_code = reason_code
        if ends_at == sub.current_period_end:  # else the next period is bought as scheduled; it ends after it
            sub.scheduled_plan, sub.scheduled_cycle, sub.scheduled_extra_properties = None, "", None
        sub.save()
        audit(account=sub.account, actor=actor, action="cancellation.scheduled", obj=sub, before=before,
              after={**terms.snapshot(sub), "cancel_reason_code": reason_code}, reason=reason, now=now)
        events.emit("cancellation.scheduled", sub.account_id, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    effective_at=ends_at.isoformat())
        return sub


def resume(subscription, *, actor=None, now=None) -> Subscription:
    """Undo a scheduled cancellation or downgrade (CAN-3, DWN-1); reactivate a cancelled trial
    until its original end date (TRI-5)."""
    now = terms.clock(now)
    with transaction.atomic():
        sub = subscription_lock_current(subscription)
        before = terms.snapshot(sub)
        if selectors.pending_changes(sub, now):  # PAY-6: what resumes is charged (renewal, trial's end)
            payment_means_guard(sub.account, f"resume your {sub.plan.name} subscription")
        if sub.status == Status.CANCELED and sub.trial_end and sub.trial_start and not sub.current_price:
            if sub.trial_end <= now:
                raise NotEligible(f"Your trial ended on {terms.period_date(sub, sub.trial_end)}. "
                                  "You can subscribe to a paid plan instead.")
            if sub.ended_at:
                raise NotEligible("This trial has ended. You can subscribe to a paid plan instead.")
            lifecycle.trial_reactivate(sub, actor=actor, now=now)
            what = "trial"
        elif sub.cancel_at_period_end:
            sub.cancel_at_period_end, sub.canceled_at, sub.cancel_reason, sub.cancel_reason_code = False, None, "", ""
            sub.save()
            what = "cancellation"
        elif sub.scheduled_plan_id or sub.scheduled_extra_properties is not None:
            ahead = terms.invoiced_ahead(sub)
            if ahead is not None:  # the next period is bought at the scheduled terms (REN-2)
                raise NotEligible(terms.invoiced_ahead_refusal(sub, ahead))
            sub.scheduled_plan, sub.scheduled_cycle, sub.scheduled_extra_properties = None, "", None
            sub.save()
            what = "downgrade"
        else:
            raise InvalidChange("There is no pending change to undo.")
        audit(account=sub.account, actor=actor, action=f"{what}.undone", obj=sub, before=before,
              after=terms.snapshot(sub), now=now)
        events.emit("subscription.resumed", sub.account_id, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    what=what)
        return sub


# --- extra properties (ADD-1, ADD-2) ---------------------------------------------------------------------


def preview_extra_properties(subscription, quantity: int, *, now=None) -> Quote:
    now = terms.clock(now)
    sub = Subscription.objects.select_related("plan", "account").get(pk=subscription.pk)
    quote = quotes.addon_change(sub, quantity, now)[0]
    payment_means_guard(sub.account, "change your extra properties")
    return quote


def set_extra_properties(subscription, quantity: int, *, actor=None, now=None,
                         expected_amount: Decimal | None = None) -> Quote:
    """ADD-1, ADD-2: buy extra properties at once (prorated) or fewer from the period end."""
    now = terms.clock(now)
    with transaction.atomic():
        sub = subscription_lock_current(subscription)
        quote, lines = quotes.addon_change(sub, quantity, now)
        payment_means_guard(sub.account, "change your extra properties")
        quotes.check_expected(quote, expected_amount)
        if not lines:
            before = terms.snapshot(sub)
            lifecycle.change_apply(sub, PendingChange(ChangeKind.ADD_ON_SCHEDULED, quantity=quantity), None,
                                   now=now).save()
            audit(account=sub.account, actor=actor, action="add_on.scheduled", obj=sub, before=before,
                  after=terms.snapshot(sub), now=now)
            events.emit("add_on.changed", sub.account_id, now=now, subscription_id=sub.pk, quantity=quantity,
                        invoice_id=None, amount="0.00", effective_at=sub.current_period_end.isoformat())
            return quote
        period = (now, max(line.period_end for line in lines))  # PAY-4: the span the lines charge (ADD-1)
        step = charges.charge_begin(sub, kind=InvoiceKind.ADD_ON, lines=lines,
                                    pending=PendingChange(ChangeKind.ADD_ON, quantity=quantity),
                                    currency=sub.plan.currency,
                                    period=period, actor=actor, now=now)
    return quote.with_invoice(charges.charge_finish(step, actor=actor, now=now))


# --- the billing time zone (D-1, D-5) -------------------------------------------------------------------


def set_billing_zone(account, zone_name: str, *, actor=None, now=None) -> ZoneChange:
    """D-5: the owner chooses the account's billing time zone (an IANA name). Dates are shown in it
    at once; the current period keeps the calendar it was computed on (its end does not move) and
    the next period is computed on the new zone's. A next period already invoiced keeps the bounds
    its invoice states: the change then applies from the period after it. Audited (ACC-3)."""
    now = terms.clock(now)
    zone_name = zones.current_name(zone_name)
    if not zones.is_zone(zone_name):
        raise InvalidChange(f"{zone_name!r} is not a time zone we know. Choose one from the list, like "
                            "Europe/Berlin or America/New_York.")
    with transaction.atomic():
        if Subscription.objects.filter(account=account).exists():
            sub = account_subscription_lock(account)
            account = sub.account
        else:
            sub, account = None, account_lock(account.pk)
        if account.timezone == zone_name:
            return ZoneChange(account, terms.zone_effective_at(sub))
        if sub is not None and not sub.next_timezone and terms.next_period_invoiced(sub):
            before = terms.snapshot(sub)
            sub.next_timezone = terms.next_zone(sub)  # the invoiced period keeps its calendar (PAY-4)
            sub.save(update_fields=["next_timezone", "updated_at"])
            audit(account=account, actor=actor, action="subscription.next_period_zone_kept", obj=sub, before=before,
                  after={**terms.snapshot(sub), "next_timezone": sub.next_timezone}, now=now)
        effective_at = terms.zone_effective_at(sub)
        account = preferences.billing_zone_update(
            account, zone_name, actor=actor, now=now,
            reason=f"periods from {terms.iso(effective_at)} follow it" if effective_at else "")
        return ZoneChange(account, effective_at)
