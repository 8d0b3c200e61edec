"""The billing engine's public API. Views, admin actions, commands and other systems call only
these functions to change billing state (see docs/billing-engine.md).

Every mutating call takes `actor` (the acting user; None means the system) and `now` (D-4), is
transactional, and writes an audit row (ACC-3). Money moves through the three-step charge of
invoices.services (PAY-2); the maths is subscriptions.pricing.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Account, AccountFlag, AccountStatus, FlagKind, SuspensionReason
from accounts.services import audit, pause_excess, unpause_within_limit
from invoices import services as ledger
from invoices.gateways import CardDeclined, ChargeResult, GatewayError, GatewayUnavailable, get_gateway
from invoices.models import (
    CreditNoteKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    PaymentStatus,
)
from plans.models import Cycle, Plan

from . import events, pricing
from .models import Status, Subscription
from .pricing import ZERO, Quote, QuoteLine, format_money


class BillingError(Exception):
    """A refused billing request. The message is fit to show a customer."""


class LimitExceeded(BillingError):
    """The account does not fit the target plan's limits (DWN-3)."""


class PaymentDeclined(BillingError):
    """The charge was declined; nothing changed (UPG-4)."""

    def __init__(self, message: str, code: str = "card_declined"):
        super().__init__(message)
        self.code = code


class NotEligible(BillingError):
    """Not allowed for this account now (TRI-2, UPG-7, no payment method, ...)."""


class InvalidChange(BillingError):
    """The request makes no sense for the subscription as it is."""


class QuoteChanged(InvalidChange):
    """PAY-3: the amount due now differs from the one the customer confirmed; nothing changed."""

    def __init__(self, message: str, quote: Quote):
        super().__init__(message)
        self.quote = quote


def _check_expected(quote: Quote, expected_amount) -> None:
    if expected_amount is not None and quote.amount_due != expected_amount:
        raise QuoteChanged(f"The amount has changed since you saw it: {format_money(quote.amount_due, quote.currency)} "
                           f"instead of {format_money(expected_amount, quote.currency)}. Nothing was charged.", quote)


class PaymentPending(BillingError):
    """The gateway's answer was lost and it cannot tell yet; settled later, never charged twice."""


# Kinds whose payment applies a change the customer asked for (and is undone by a decline).
IMMEDIATE_KINDS = {InvoiceKind.UPGRADE, InvoiceKind.SUBSCRIPTION, InvoiceKind.ADD_ON, InvoiceKind.REACTIVATION}


# --- time and periods ---------------------------------------------------------------------


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def account_tz(account) -> ZoneInfo:
    try:
        return ZoneInfo(account.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_date(account, moment: datetime):
    """D-2: days are counted on dates in the account's billing time zone."""
    return moment.astimezone(account_tz(account)).date()


def current_period(subscription) -> pricing.Period:
    account = subscription.account
    return pricing.Period(local_date(account, subscription.current_period_start),
                          local_date(account, subscription.current_period_end))


def period_bounds(anchor: datetime, cycle: str, index: int) -> tuple[datetime, datetime]:
    return pricing.period_bounds(anchor, cycle, index)


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def snapshot(sub: Subscription) -> dict:
    """The audited state of a subscription (ACC-3 before/after)."""
    return {
        "plan": sub.plan.code, "cycle": sub.cycle, "status": sub.status,
        "period_start": _iso(sub.current_period_start), "period_end": _iso(sub.current_period_end),
        "trial_end": _iso(sub.trial_end), "cancel_at_period_end": sub.cancel_at_period_end,
        "scheduled_plan": sub.scheduled_plan.code if sub.scheduled_plan_id else None,
        "scheduled_cycle": sub.scheduled_cycle or None, "extra_properties": sub.extra_properties,
        "scheduled_extra_properties": sub.scheduled_extra_properties,
    }


def _lock(subscription) -> Subscription:
    """Lock the subscription row and re-read it; refuse if it is no longer the current one."""
    sub = (Subscription.objects.select_for_update(of=("self",))
           .select_related("plan", "account", "scheduled_plan").get(pk=subscription.pk))
    if Subscription.objects.filter(account_id=sub.account_id, pk__gt=sub.pk).exists():
        raise InvalidChange("Your subscription has changed in the meantime. Reload the page and try again.")
    return sub


def _lock_account_subscription(account) -> Subscription:
    current = Subscription.objects.filter(account=account).order_by("-id").first()
    if current is None:
        raise InvalidChange("This account has no subscription.")
    return _lock(current)


def _plan(account, code: str) -> Plan:
    plan = Plan.objects.filter(code=code).filter(Q(public=True) | Q(account=account)).first()
    if plan is None:
        raise InvalidChange(f"There is no plan called {code!r}.")
    return plan


def _price(plan: Plan, cycle: str) -> Decimal:
    if cycle not in Cycle.values:
        raise InvalidChange(f"Unknown billing cycle {cycle!r}: choose monthly or yearly.")
    price = plan.price_for(cycle)
    if price is None:
        raise InvalidChange(f"{plan.name} is not offered {cycle}.")
    return price


def _money(amount, currency) -> str:
    return format_money(Decimal(amount), currency)


# --- limits (DWN-3) ---------------------------------------------------------------------------


def fit_problem(account, plan: Plan, extra_properties: int = 0) -> str | None:
    """Why the account does not fit `plan`, in DWN-3's words, or None."""
    if plan.limit_properties is not None:
        allowed = plan.limit_properties + (extra_properties if plan.extra_property_monthly is not None else 0)
        have = account.properties.live().count()
        if have > allowed:
            remove = have - allowed
            return (f"{plan.name} allows {allowed} propert{'y' if allowed == 1 else 'ies'}; you have {have}. "
                    f"Delete {remove} propert{'y' if remove == 1 else 'ies'} to downgrade.")
    if plan.limit_integrations is not None:
        have = account.integrations.filter(disconnected_at__isnull=True).count()
        if have > plan.limit_integrations:
            remove = have - plan.limit_integrations
            return (f"{plan.name} allows {plan.limit_integrations} integration"
                    f"{'' if plan.limit_integrations == 1 else 's'}; you have {have}. "
                    f"Disconnect {remove} integration{'' if remove == 1 else 's'} to downgrade.")
    return None


def _paid_status_guard(sub: Subscription) -> None:
    """UPG-7 and SUS-2: no plan change while money is owed or the account is suspended."""
    account = sub.account
    if sub.status in (Status.PAST_DUE, Status.SUSPENDED) or (
        account.is_suspended and account.suspension_reason == SuspensionReason.NON_PAYMENT
    ):
        raise NotEligible("Your last payment failed. Update your payment method and pay the open invoice "
                          "before changing plans.")
    if account.is_suspended and account.suspension_reason == SuspensionReason.POLICY_VIOLATION:
        raise NotEligible("Your account is suspended for a policy violation. Contact support.")


# --- trials (TRI) -----------------------------------------------------------------------------


def trial_refusal(account) -> tuple[str, Account | None] | None:
    """TRI-2: why the account may not start a trial (and the matching account), or None."""
    if account.trial_used_at:
        return "This account has already had a free trial. You can still subscribe without a trial.", None
    others = Account.objects.exclude(pk=account.pk).filter(trial_used_at__isnull=False)
    if account.identity_email:
        match = others.filter(identity_email=account.identity_email).first()
        if match:
            return ("A free trial was already used with this e-mail address. "
                    "You can still subscribe without a trial.", match)
    method = ledger.default_payment_method(account)
    if method is not None:
        match = others.filter(payment_methods__fingerprint=method.fingerprint).first()
        if match:
            return "A free trial was already used with this card. You can still subscribe without a trial.", match
    return None


def _flag_trial_abuse(account, match, *, now) -> None:
    if match is None:
        return
    if not AccountFlag.objects.filter(account=account, kind=FlagKind.TRIAL_ABUSE, matched_account=match).exists():
        flag = AccountFlag.objects.create(
            account=account, kind=FlagKind.TRIAL_ABUSE, matched_account=match, created_at=now,
            detail=f"Card fingerprint or owner e-mail matches account #{match.pk} ({match.name}), which had a trial.",
        )
        audit(account=account, actor=None, action="account.flagged", obj=flag, after={"kind": flag.kind}, now=now)


def trial_eligible(account) -> bool:
    return trial_refusal(account) is None and ledger.default_payment_method(account) is not None


def start_trial(account, plan_code: str, cycle: str = "monthly", *, actor=None, now=None) -> Subscription:
    """TRI-1: a free trial of a paid plan; needs a card on file; one per account (TRI-2)."""
    now = _now(now)
    try:
        with transaction.atomic():
            sub = _lock_account_subscription(account)
            plan = _plan(account, plan_code)
            return _start_trial_locked(sub, plan, cycle, actor=actor, now=now)
    except NotEligible as exc:
        if getattr(exc, "matched_account", None) is not None:  # staff see the match (TRI-2)
            with transaction.atomic():
                _flag_trial_abuse(account, exc.matched_account, now=now)
        raise


def _start_trial_locked(sub: Subscription, plan: Plan, cycle: str, *, actor, now) -> Subscription:
    account = sub.account
    _price(plan, cycle)
    if plan.is_free or not plan.trial_days:
        raise InvalidChange(f"{plan.name} has no free trial.")
    if sub.status == Status.TRIALING or (sub.is_paid and sub.status != Status.CANCELED):
        raise InvalidChange("You already have a subscription; change its plan instead.")
    _paid_status_guard(sub)
    refusal = trial_refusal(account)
    if refusal:
        exc = NotEligible(refusal[0])
        exc.matched_account = refusal[1]
        raise exc
    if ledger.default_payment_method(account) is None:
        raise NotEligible("Add a payment method to start your free trial. You will not be charged until it ends.")
    trial_end = now + timedelta(days=plan.trial_days)
    before = snapshot(sub)
    _end(sub, now)
    new = Subscription.objects.create(
        account=account, plan=plan, cycle=cycle, status=Status.TRIALING, trial_start=now, trial_end=trial_end,
        current_period_start=now, current_period_end=trial_end, current_price=ZERO, created_at=now,
    )
    Account.objects.filter(pk=account.pk).update(trial_used_at=now)
    account.trial_used_at = now
    unpause_within_limit(account, actor=actor, now=now)
    audit(account=account, actor=actor, action="trial.started", obj=new, before=before, after=snapshot(new), now=now)
    events.emit("trial.started", account.pk, now=now, subscription_id=new.pk, plan=plan.code,
                trial_end=trial_end.isoformat())
    return new


def _end(sub: Subscription, now) -> None:
    """The subscription stops being the current one (it stays as history)."""
    if sub.status != Status.CANCELED:
        sub.status = Status.CANCELED
    sub.ended_at = sub.ended_at or now
    sub.save(update_fields=["status", "ended_at", "updated_at"])


# --- quotes (PAY-3) -----------------------------------------------------------------------------


@dataclass
class _Change:
    """What a plan change will do; `mode` picks how change_plan applies it."""

    mode: str  # trial_change | start_trial | subscribe | upgrade | schedule | downgrade_now
    quote: Quote
    plan: Plan
    cycle: str
    lines: list = field(default_factory=list)
    period: tuple | None = None  # (start, end) of what is charged
    credit: QuoteLine | None = None


def _is_upgrade(sub: Subscription, plan: Plan, cycle: str) -> bool | None:
    """True: upgrade (UPG-1); False: downgrade (DWN-1); None: the same plan and cycle."""
    if plan.pk == sub.plan_id and cycle == sub.cycle:
        return None
    if plan.is_free:
        return False
    if sub.cycle == Cycle.YEARLY and cycle == Cycle.MONTHLY:
        return False  # yearly -> monthly is a downgrade whatever the plan (DWN-1)
    if plan.rank != sub.plan.rank:
        return plan.rank > sub.plan.rank
    if cycle != sub.cycle:
        return cycle == Cycle.YEARLY
    return _price(plan, cycle) > sub.current_price


def preview_change(subscription, plan_code: str, cycle: str = "monthly", *, now=None) -> Quote:
    """The quote for a plan change; changes nothing."""
    now = _now(now)
    sub = Subscription.objects.select_related("plan", "account", "scheduled_plan").get(pk=subscription.pk)
    return _plan_change(sub, _plan(sub.account, plan_code), cycle, now).quote


def _plan_change(sub: Subscription, plan: Plan, cycle: str, now) -> _Change:
    account = sub.account
    currency = plan.currency
    if cycle not in Cycle.values:
        raise InvalidChange(f"Unknown billing cycle {cycle!r}: choose monthly or yearly.")
    # From Free or from an ended subscription: a trial if eligible, else pay now (UPG-6).
    if sub.status == Status.CANCELED or (sub.plan.is_free and sub.status == Status.ACTIVE):
        if plan.is_free:
            if sub.status == Status.CANCELED and sub.trial_end and sub.trial_end > now:
                raise InvalidChange("To keep your trial, reactivate it; to use Free, wait for the trial's end date.")
            raise InvalidChange("You are already on the Free plan.")
        _paid_status_guard(sub)
        price = _price(plan, cycle)
        problem = fit_problem(account, plan)
        if problem:
            raise LimitExceeded(problem.replace("to downgrade", "to subscribe to this plan"))
        if plan.trial_days and trial_eligible(account):
            trial_end = now + timedelta(days=plan.trial_days)
            quote = Quote(
                kind="new", amount_due=ZERO, effective_at=now, currency=currency,
                lines=(QuoteLine(f"{plan.trial_days}-day free trial of {plan.name}", ZERO,
                                 f"free until {trial_end:%Y-%m-%d}"),),
                at_period_end=(f"Your trial ends on {trial_end:%Y-%m-%d}; then {plan.name} is charged "
                               f"{format_money(price, currency)} per {cycle[:-2] if cycle == 'monthly' else 'year'}, "
                               "unless you cancel before."),
            )
            return _Change("start_trial", quote, plan, cycle)
        start, end = period_bounds(now, cycle, 0)
        line = QuoteLine(f"{plan.name} ({cycle}), {start:%Y-%m-%d} to {end:%Y-%m-%d}", price,
                         f"full {'month' if cycle == Cycle.MONTHLY else 'year'} = {format_money(price, currency)}")
        notes = ()
        refusal = trial_refusal(account) if plan.trial_days else None
        if refusal:
            notes = (refusal[0],)
        elif plan.trial_days and ledger.default_payment_method(account) is None:
            notes = ("Add a payment method to start a free trial instead.",)
        quote = Quote(kind="new", amount_due=price, effective_at=now, currency=currency, lines=(line,), notes=notes,
                      at_period_end=f"Renews on {end:%Y-%m-%d} at {format_money(price, currency)}.")
        return _Change("subscribe", quote, plan, cycle, lines=[line], period=(start, end))

    if sub.status == Status.TRIALING:  # TRI-6: switch the trial's plan, no charge, same end date
        if plan.is_free:
            quote = Quote(kind="downgrade", amount_due=ZERO, effective_at=sub.trial_end, currency=currency,
                          at_period_end=f"Your trial ends on {sub.trial_end:%Y-%m-%d}; then you move to Free "
                                        "and nothing is charged.")
            return _Change("schedule", quote, plan, cycle)
        _price(plan, cycle)
        if plan.pk == sub.plan_id and cycle == sub.cycle:
            raise InvalidChange("That is your current plan.")
        problem = fit_problem(account, plan)
        if problem:
            raise LimitExceeded(problem)
        quote = Quote(kind="trial_change", amount_due=ZERO, effective_at=now, currency=currency,
                      lines=(QuoteLine(f"Trial switched to {plan.name}", ZERO, "no charge during the trial"),),
                      at_period_end=f"Your trial still ends on {sub.trial_end:%Y-%m-%d}; then {plan.name} is "
                                    f"charged {format_money(_price(plan, cycle), currency)}.")
        return _Change("trial_change", quote, plan, cycle)

    _paid_status_guard(sub)
    direction = _is_upgrade(sub, plan, cycle)
    if direction is None:
        raise InvalidChange("That is your current plan.")
    period = current_period(sub)
    today = local_date(account, now)
    if direction:
        new_price = _price(plan, cycle)
        if cycle == sub.cycle:  # UPG-2: same cycle, anchor kept, pay the difference for the days left
            line = pricing.upgrade_difference_line(sub.current_price, new_price, period, today, currency,
                                                   old_name=sub.plan.name, new_name=plan.name)
            lines = [line]
            renewal = new_price + _addon_price(plan, cycle, sub.extra_properties)
            quote = Quote(kind="upgrade", amount_due=line.amount, effective_at=now, currency=currency, lines=(line,),
                          at_period_end=f"Renews on {sub.current_period_end:%Y-%m-%d} at "
                                        f"{format_money(renewal, currency)}.")
            return _Change("upgrade", quote, plan, cycle, lines=lines,
                           period=(sub.current_period_start, sub.current_period_end))
        # UPG-3: monthly -> yearly starts a new yearly period today; the monthly days left are forfeited.
        start, end = period_bounds(now, Cycle.YEARLY, 0)
        _, forfeited, _ = pricing.day_split(period, today)
        line = QuoteLine(f"{plan.name} (yearly), {start:%Y-%m-%d} to {end:%Y-%m-%d}", new_price,
                         f"full year = {format_money(new_price, currency)}")
        lines = [line]
        addon = _addon_price(plan, Cycle.YEARLY, sub.extra_properties)
        if addon:
            unit = format_money(plan.extra_property_monthly * 12, currency)
            lines.append(QuoteLine(f"{sub.extra_properties} extra properties for the year", addon,
                                   f"{sub.extra_properties} × {unit} = {format_money(addon, currency)}"))
        restore_by = pricing.restore_deadline(today, settings.BILLING_RESTORE_WORKING_DAYS)
        notice = (f"The {forfeited} unused days of your monthly period are forfeited. You can ask for them to be "
                  f"added to your yearly period until {restore_by:%A %Y-%m-%d} "
                  f"({settings.BILLING_RESTORE_WORKING_DAYS} working days).")
        quote = Quote(kind="upgrade", amount_due=sum((ln.amount for ln in lines), ZERO), effective_at=now,
                      currency=currency, lines=tuple(lines), notes=(notice,) if forfeited else (),
                      forfeited_days=forfeited,
                      at_period_end=f"Renews on {end:%Y-%m-%d} at "
                                    f"{format_money(new_price + addon, currency)}.")
        return _Change("upgrade", quote, plan, cycle, lines=lines, period=(start, end))

    # Downgrades (DWN-1..4): refused unless the account fits (DWN-3).
    keep_extra = sub.extra_properties if plan.extra_property_monthly is not None else 0
    problem = fit_problem(account, plan, keep_extra)
    if problem:
        raise LimitExceeded(problem)
    immediate = settings.BILLING_DOWNGRADE_TIMING == "immediate" and cycle == sub.cycle and not plan.is_free
    if immediate:  # DWN-4: at once, the unused difference becomes credit
        credit = pricing.unused_credit_line(sub.current_price, _price(plan, cycle), period, today, currency)
        quote = Quote(kind="downgrade", amount_due=ZERO, effective_at=now, currency=currency, lines=(credit,),
                      at_period_end=f"Renews on {sub.current_period_end:%Y-%m-%d} at "
                                    f"{format_money(_price(plan, cycle), currency)}, less your credit.")
        return _Change("downgrade_now", quote, plan, cycle, credit=credit)
    target = "Free" if plan.is_free else f"{plan.name} ({cycle})"
    then = ("nothing is charged" if plan.is_free
            else f"it renews at {format_money(_price(plan, cycle) + _addon_price(plan, cycle, keep_extra), currency)}")
    quote = Quote(kind="downgrade", amount_due=ZERO, effective_at=sub.current_period_end, currency=currency,
                  at_period_end=f"You keep {sub.plan.name} until {sub.current_period_end:%Y-%m-%d}; "
                                f"then you move to {target} and {then}. No refund for the current period.")
    return _Change("schedule", quote, plan, cycle)


def _addon_price(plan: Plan, cycle: str, quantity: int) -> Decimal:
    """Extra properties for one whole period: 12x the monthly price per year (ADD-1)."""
    if not quantity or plan.extra_property_monthly is None:
        return ZERO
    unit = plan.extra_property_monthly * (12 if cycle == Cycle.YEARLY else 1)
    return pricing.cents(unit * quantity)


# --- plan changes ------------------------------------------------------------------------------


def change_plan(subscription, plan_code: str, cycle: str = "monthly", *, actor=None, now=None,
                expected_amount: Decimal | None = None) -> Quote:
    """Apply a plan change after the customer confirmed its quote: UPG-*, DWN-*, TRI-6, UPG-6.
    With `expected_amount` (what the customer saw), a different amount due raises QuoteChanged."""
    now = _now(now)
    with transaction.atomic():
        sub = _lock(subscription)
        plan = _plan(sub.account, plan_code)
        change = _plan_change(sub, plan, cycle, now)
        _check_expected(change.quote, expected_amount)
        before = snapshot(sub)
        if change.mode == "start_trial":
            _start_trial_locked(sub, plan, cycle, actor=actor, now=now)
            return change.quote
        if change.mode == "trial_change":
            from_plan = sub.plan.code
            sub.plan, sub.cycle = plan, cycle
            sub.scheduled_plan, sub.scheduled_cycle = None, ""
            sub.save()
            unpause_within_limit(sub.account, actor=actor, now=now)
            audit(account=sub.account, actor=actor, action="trial.plan_changed", obj=sub, before=before,
                  after=snapshot(sub), now=now)
            events.emit("subscription.trial_plan_changed", sub.account_id, now=now, subscription_id=sub.pk,
                        from_plan=from_plan, to_plan=plan.code, trial_end=sub.trial_end.isoformat())
            return change.quote
        if change.mode == "schedule":
            sub.scheduled_plan, sub.scheduled_cycle = plan, cycle
            sub.cancel_at_period_end = False
            sub.save()
            audit(account=sub.account, actor=actor, action="downgrade.scheduled", obj=sub, before=before,
                  after=snapshot(sub), now=now)
            events.emit("downgrade.scheduled", sub.account_id, now=now, subscription_id=sub.pk,
                        from_plan=sub.plan.code, to_plan=plan.code, to_cycle=cycle,
                        effective_at=_iso(sub.trial_end if sub.status == Status.TRIALING else sub.current_period_end))
            return change.quote
        if change.mode == "downgrade_now":
            _downgrade_now(sub, plan, change.credit, actor=actor, reason="Downgrade at once (BILLING_DOWNGRADE_TIMING)",
                           now=now)
            return change.quote
        if change.mode == "subscribe":
            refusal = trial_refusal(sub.account) if plan.trial_days else None
            if refusal:
                _flag_trial_abuse(sub.account, refusal[1], now=now)
            kind = InvoiceKind.SUBSCRIPTION
            pending = {"action": "subscribe", "plan": plan.code, "cycle": cycle,
                       "start": change.period[0].isoformat(), "from_subscription": sub.pk}
        else:
            kind = InvoiceKind.UPGRADE
            pending = {"action": "upgrade", "plan": plan.code, "cycle": cycle, "from_plan": sub.plan.code,
                       "from_cycle": sub.cycle, "period_start": _iso(sub.current_period_start),
                       "new_start": change.period[0].isoformat(), "forfeited_days": change.quote.forfeited_days}
        lines = [ledger.Line.from_quote(line, *change.period) for line in change.lines]
        step = _charge_begin(sub, kind=kind, lines=lines, pending=pending, currency=plan.currency,
                             period=change.period, notes=" ".join(change.quote.notes), actor=actor, now=now)
    invoice = _charge_finish(step, actor=actor, now=now)
    return change.quote.with_invoice(invoice)


def _downgrade_now(sub, plan, credit: QuoteLine, *, actor, reason, now) -> None:
    """DWN-4: the plan changes at once; the unused difference is a credit note (never paid out)."""
    before = snapshot(sub)
    from_plan = sub.plan
    invoice = (Invoice.objects.filter(subscription=sub, status=InvoiceStatus.PAID, number__isnull=False)
               .order_by("-issued_at", "-id").first())
    if credit.amount > 0 and invoice is not None:
        note = ledger.credit_note_issue(account=sub.account, invoice=invoice, kind=CreditNoteKind.DOWNGRADE,
                                        amount=credit.amount, reason=f"{reason}: {from_plan.name} to {plan.name}",
                                        computation=credit.computation, now=now, issued_by=actor)
        audit(account=sub.account, actor=actor, action="credit_note.issued", obj=note,
              after={"number": note.number, "amount": str(note.amount)}, reason=reason, now=now)
        events.emit("credit_note.issued", sub.account_id, now=now, credit_note_id=note.pk,
                    amount=str(note.amount), reason=note.reason)
    sub.plan = plan
    sub.current_price = plan.price_for(sub.cycle) or ZERO
    sub.scheduled_plan, sub.scheduled_cycle = None, ""
    if plan.extra_property_monthly is None:
        sub.extra_properties, sub.scheduled_extra_properties = 0, None  # ADD-3
    sub.save()
    paused = pause_excess(sub.account, _limit(plan, sub.extra_properties), now=now)
    audit(account=sub.account, actor=actor, action="downgrade.applied", obj=sub, before=before,
          after=snapshot(sub), reason=reason, now=now)
    events.emit("downgrade.applied", sub.account_id, now=now, subscription_id=sub.pk, from_plan=from_plan.code,
                to_plan=plan.code, paused_properties=[p.name for p in paused])


def _limit(plan: Plan, extra: int) -> int | None:
    if plan.limit_properties is None:
        return None
    return plan.limit_properties + (extra if plan.extra_property_monthly is not None else 0)


# --- immediate charges (UPG-4, PAY-2) ----------------------------------------------------------


def _charge_begin(sub, *, kind, lines, pending, currency, period, notes="", actor, now):
    """Step 1 inside the caller's transaction: a draft invoice and an `unknown` payment, committed
    before the gateway is called. Returns the Payment, or the paid Invoice when nothing is due."""
    if sub.charge_in_flight_id:
        payment = Payment.objects.get(pk=sub.charge_in_flight_id)
        if payment.status == PaymentStatus.UNKNOWN:
            raise InvalidChange("A payment for your subscription is still being processed. "
                                "Try again in a minute.")
    method = ledger.default_payment_method(sub.account)
    invoice = ledger.invoice_create(account=sub.account, subscription=sub, kind=kind, lines=lines,
                                    currency=currency, now=now, period_start=period[0], period_end=period[1],
                                    notes=notes, pending_change={**pending, "actor_id": getattr(actor, "pk", None)})
    if invoice.amount_due <= 0:  # INV-5: covered by credit (or free): paid without a charge
        ledger.invoice_issue(invoice, now=now)
        _apply_pending(invoice, actor=actor, now=now)
        return invoice
    if method is None:
        raise NotEligible("Add a payment method first.")
    payment = ledger.payment_begin(invoice, method, now=now)
    sub.charge_in_flight = payment
    sub.save(update_fields=["charge_in_flight", "updated_at"])
    return payment


def _charge_finish(step, *, actor, now) -> Invoice:
    """Steps 2 and 3: call the gateway outside any transaction, then record the outcome."""
    if isinstance(step, Invoice):
        return step
    result = ledger.payment_send(step)
    return payment_settle(step, result, actor=actor, now=now)


def payment_settle(payment: Payment, result: ChargeResult | None, *, actor=None, now=None) -> Invoice:
    """Apply a gateway outcome to a payment whose status is unknown; idempotent (PAY-2).

    For an upgrade, subscription, add-on or reactivation the change applies on success and
    nothing changes on a decline (UPG-4: PaymentDeclined is raised). For a renewal, trial
    conversion or overage a decline starts or continues dunning (DUN-1..3)."""
    now = _now(now)
    if result is None:
        raise PaymentPending("We could not confirm your payment with the bank yet. You will not be charged twice; "
                             "we will finish this within minutes.")
    declined = None
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().get(pk=payment.invoice_id)
        sub = (Subscription.objects.select_for_update(of=("self",)).select_related("plan", "account")
               .get(pk=invoice.subscription_id)) if invoice.subscription_id else None
        if not ledger.payment_record(payment, result, now=now):
            invoice.refresh_from_db()
            return invoice  # settled already (a webhook, a reconcile or another worker)
        payment.refresh_from_db()
        if sub is not None and sub.charge_in_flight_id == payment.pk:
            sub.charge_in_flight = None
            sub.save(update_fields=["charge_in_flight", "updated_at"])
        invoice.refresh_from_db()
        if invoice.kind in IMMEDIATE_KINDS:
            if result.succeeded:
                ledger.invoice_issue(invoice, now=now)
                _apply_pending(invoice, actor=actor, now=now)
                _emit_receipt(invoice, payment, now)
            else:
                ledger.credit_release(invoice)  # the draft is never issued: nothing changed (UPG-4)
                audit(account=invoice.account, actor=actor, action="charge.declined", obj=payment,
                      after={"invoice_kind": invoice.kind, "amount": str(payment.amount),
                             "decline_code": payment.decline_code}, now=now)
                declined = PaymentDeclined(_decline_text(payment), payment.decline_code or "card_declined")
        else:
            from .scheduler import collection_settled

            collection_settled(invoice, payment, sub, now=now)
    if declined:
        raise declined
    invoice.refresh_from_db()
    return invoice


def _decline_text(payment: Payment) -> str:
    reason = payment.decline_message or "Your card was declined."
    return f"{reason} Nothing was charged and your plan is unchanged."


def _emit_receipt(invoice: Invoice, payment: Payment, now) -> None:
    events.emit("payment.succeeded", invoice.account_id, now=now, invoice_id=invoice.pk, payment_id=payment.pk,
                amount=str(payment.amount))


def _apply_pending(invoice: Invoice, *, actor, now) -> None:
    """Make the paid change real. Called once, inside the transaction that records the payment."""
    change = invoice.pending_change or {}
    action = change.get("action")
    sub = (Subscription.objects.select_for_update(of=("self",)).select_related("plan", "account")
           .get(pk=invoice.subscription_id))
    account = sub.account
    before = snapshot(sub)
    if action == "subscribe":  # REN-4 / UPG-6: the first period starts on the payment date
        plan = Plan.objects.get(code=change["plan"])
        start = datetime.fromisoformat(change["start"])
        _end(sub, now)
        start, end = period_bounds(start, change["cycle"], 0)
        new = Subscription.objects.create(
            account=account, plan=plan, cycle=change["cycle"], status=Status.ACTIVE, anchor_at=start,
            period_index=0, current_period_start=start, current_period_end=end,
            current_price=plan.price_for(change["cycle"]), created_at=now,
        )
        Invoice.objects.filter(pk=invoice.pk).update(subscription=new)
        unpause_within_limit(account, actor=actor, now=now)
        audit(account=account, actor=actor, action="subscription.started", obj=new, before=before,
              after=snapshot(new), now=now)
        events.emit("subscription.started", account.pk, now=now, subscription_id=new.pk, plan=plan.code,
                    cycle=new.cycle, invoice_id=invoice.pk, amount=str(invoice.total))
        return
    if action == "upgrade":
        plan = Plan.objects.get(code=change["plan"])
        from_plan = sub.plan.code
        if change["cycle"] != change["from_cycle"]:  # UPG-3: a new yearly period from today
            start = datetime.fromisoformat(change["new_start"])
            sub.anchor_at, sub.period_index = start, 0
            sub.current_period_start, sub.current_period_end = period_bounds(start, change["cycle"], 0)
            sub.cycle = change["cycle"]
        sub.plan = plan
        sub.current_price = plan.price_for(sub.cycle)
        # UPG-5: an upgrade clears a scheduled downgrade or cancellation.
        sub.scheduled_plan, sub.scheduled_cycle, sub.cancel_at_period_end = None, "", False
        sub.save()
        unpause_within_limit(account, actor=actor, now=now)
        audit(account=account, actor=actor, action="subscription.upgraded", obj=sub, before=before,
              after=snapshot(sub), now=now)
        events.emit("subscription.upgraded", account.pk, now=now, subscription_id=sub.pk, from_plan=from_plan,
                    to_plan=plan.code, cycle=sub.cycle, invoice_id=invoice.pk, amount=str(invoice.total))
        return
    if action == "add_on":
        sub.extra_properties = change["quantity"]
        sub.scheduled_extra_properties = None
        sub.save()
        unpause_within_limit(account, actor=actor, now=now)
        audit(account=account, actor=actor, action="add_on.changed", obj=sub, before=before, after=snapshot(sub),
              now=now)
        events.emit("add_on.changed", account.pk, now=now, subscription_id=sub.pk, quantity=sub.extra_properties,
                    invoice_id=invoice.pk, amount=str(invoice.total), effective_at=now.isoformat())
        return
    if action == "reactivate":  # DUN-3: a full new period from the payment date
        from .scheduler import reactivate_after_payment

        reactivate_after_payment(sub, invoice, actor=actor, now=now)
        return
    raise InvalidChange(f"Unknown pending change {action!r} on invoice {invoice.pk}.")


# --- cancel and resume (CAN, TRI-4, TRI-5) --------------------------------------------------------


def cancel(subscription, *, reason: str = "", actor=None, now=None) -> Subscription:
    """CAN-2: a paid subscription cancels at period end; TRI-4: a trial is cancelled at once and the
    account suspended. Only the owner may call this, from the billing page (CAN-1)."""
    now = _now(now)
    with transaction.atomic():
        sub = _lock(subscription)
        before = snapshot(sub)
        account = sub.account
        if sub.status == Status.TRIALING:
            sub.status, sub.canceled_at, sub.cancel_reason = Status.CANCELED, now, reason[:2000]
            sub.scheduled_plan, sub.scheduled_cycle = None, ""
            sub.save()
            _suspend(account, SuspensionReason.CANCELLED_TRIAL, "You cancelled your trial.", actor=actor, now=now,
                     notify=False)
            audit(account=account, actor=actor, action="trial.canceled", obj=sub, before=before,
                  after=snapshot(sub), reason=reason, now=now)
            events.emit("trial.canceled", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                        trial_end=sub.trial_end.isoformat())
            return sub
        if not sub.is_paid or sub.status == Status.CANCELED:
            raise InvalidChange("There is no paid subscription to cancel.")
        if sub.cancel_at_period_end:
            raise InvalidChange(f"Your subscription already ends on {sub.current_period_end:%Y-%m-%d}.")
        if sub.status == Status.SUSPENDED:
            raise InvalidChange("Your subscription is suspended for non-payment; there is nothing left to cancel.")
        if sub.status == Status.PAST_DUE:
            # The open renewal is for a period the customer will not have: void it; the paid period runs out.
            from .scheduler import void_open_renewals

            void_open_renewals(sub, now=now)
            sub.status, sub.past_due_since, sub.next_retry_at, sub.retry_count = Status.ACTIVE, None, None, 0
        sub.cancel_at_period_end, sub.canceled_at, sub.cancel_reason = True, now, reason[:2000]
        sub.scheduled_plan, sub.scheduled_cycle, sub.scheduled_extra_properties = None, "", None
        sub.save()
        audit(account=account, actor=actor, action="cancellation.scheduled", obj=sub, before=before,
              after=snapshot(sub), reason=reason, now=now)
        events.emit("cancellation.scheduled", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    effective_at=sub.current_period_end.isoformat())
        return sub


def resume(subscription, *, actor=None, now=None) -> Subscription:
    """Undo a scheduled cancellation or downgrade (CAN-3, DWN-1); reactivate a cancelled trial
    until its original end date (TRI-5)."""
    now = _now(now)
    with transaction.atomic():
        sub = _lock(subscription)
        before = snapshot(sub)
        account = sub.account
        if sub.status == Status.CANCELED and sub.trial_end and sub.trial_start and not sub.current_price:
            if sub.trial_end <= now:
                raise NotEligible(f"Your trial ended on {sub.trial_end:%Y-%m-%d}. "
                                  "You can subscribe to a paid plan instead.")
            if sub.ended_at:
                raise NotEligible("This trial has ended. You can subscribe to a paid plan instead.")
            sub.status, sub.canceled_at, sub.cancel_reason = Status.TRIALING, None, ""
            sub.save()
            if account.suspension_reason == SuspensionReason.CANCELLED_TRIAL:
                _lift(account, "Trial reactivated", actor=actor, now=now, notify=False)
            what = "trial"
        elif sub.cancel_at_period_end:
            sub.cancel_at_period_end, sub.canceled_at, sub.cancel_reason = False, None, ""
            sub.save()
            what = "cancellation"
        elif sub.scheduled_plan_id or sub.scheduled_extra_properties is not None:
            sub.scheduled_plan, sub.scheduled_cycle, sub.scheduled_extra_properties = None, "", None
            sub.save()
            what = "downgrade"
        else:
            raise InvalidChange("There is no pending change to undo.")
        audit(account=account, actor=actor, action=f"{what}.undone", obj=sub, before=before, after=snapshot(sub),
              now=now)
        events.emit("subscription.resumed", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    what=what)
        return sub


# --- add-ons (ADD) ---------------------------------------------------------------------------------


def preview_extra_properties(subscription, quantity: int, *, now=None) -> Quote:
    now = _now(now)
    sub = Subscription.objects.select_related("plan", "account").get(pk=subscription.pk)
    return _addon_quote(sub, quantity, now)[0]


def _addon_quote(sub: Subscription, quantity: int, now) -> tuple[Quote, list]:
    plan = sub.plan
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0 or quantity > 1000:
        raise InvalidChange("Choose a number of extra properties between 0 and 1,000.")
    if plan.extra_property_monthly is None:
        raise InvalidChange(f"{plan.name} does not offer extra properties.")
    if sub.status == Status.TRIALING:
        raise NotEligible("Extra properties can be bought once your trial has converted to a paid plan.")
    if sub.status != Status.ACTIVE:
        _paid_status_guard(sub)
        raise InvalidChange("There is no active subscription to add properties to.")
    _paid_status_guard(sub)
    currency = plan.currency
    if quantity == sub.extra_properties and sub.scheduled_extra_properties is None:
        raise InvalidChange(f"You already have {quantity} extra properties.")
    if quantity > sub.extra_properties:  # ADD-1: at once, prorated like UPG-2
        line = pricing.addon_line(quantity - sub.extra_properties, plan.extra_property_monthly, sub.cycle,
                                  current_period(sub), local_date(sub.account, now), currency)
        quote = Quote(kind="add_on", amount_due=line.amount, effective_at=now, currency=currency, lines=(line,),
                      at_period_end=f"Renews on {sub.current_period_end:%Y-%m-%d} with {quantity} extra properties "
                                    f"at {format_money(_addon_price(plan, sub.cycle, quantity), currency)}.")
        return quote, [line]
    # ADD-2: fewer extra properties from the period end, no refund, only if the properties fit.
    allowed = (plan.limit_properties or 0) + quantity
    have = sub.account.properties.live().count()
    if plan.limit_properties is not None and have > allowed:
        remove = have - allowed
        raise LimitExceeded(f"{plan.name} with {quantity} extra properties allows {allowed} properties; you have "
                            f"{have}. Delete {remove} propert{'y' if remove == 1 else 'ies'} first.")
    quote = Quote(kind="add_on", amount_due=ZERO, effective_at=sub.current_period_end, currency=currency,
                  at_period_end=f"From {sub.current_period_end:%Y-%m-%d} you have {quantity} extra properties; "
                                "no refund for the current period.")
    return quote, []


def set_extra_properties(subscription, quantity: int, *, actor=None, now=None,
                         expected_amount: Decimal | None = None) -> Quote:
    """ADD-1, ADD-2: buy extra properties at once (prorated) or fewer from the period end."""
    now = _now(now)
    with transaction.atomic():
        sub = _lock(subscription)
        quote, lines = _addon_quote(sub, quantity, now)
        _check_expected(quote, expected_amount)
        if not lines:
            before = snapshot(sub)
            sub.scheduled_extra_properties = quantity if quantity != sub.extra_properties else None
            sub.save()
            audit(account=sub.account, actor=actor, action="add_on.scheduled", obj=sub, before=before,
                  after=snapshot(sub), now=now)
            events.emit("add_on.changed", sub.account_id, now=now, subscription_id=sub.pk, quantity=quantity,
                        invoice_id=None, amount="0.00", effective_at=sub.current_period_end.isoformat())
            return quote
        period = (sub.current_period_start, sub.current_period_end)
        step = _charge_begin(sub, kind=InvoiceKind.ADD_ON, lines=[ledger.Line.from_quote(ln, *period) for ln in lines],
                             pending={"action": "add_on", "quantity": quantity}, currency=sub.plan.currency,
                             period=period, actor=actor, now=now)
    return quote.with_invoice(_charge_finish(step, actor=actor, now=now))


# --- payment methods (PAY-1, DUN-3, DUN-4) ---------------------------------------------------------


def set_payment_method(account, token: str, *, actor=None, now=None) -> PaymentMethod:
    """Attach a card from a gateway token and make it the default (PAY-1). While past due the
    open invoice is retried at once (DUN-4); after a suspension for non-payment a full new period
    is charged from today (DUN-3). A decline of that retry keeps the new card and raises."""
    now = _now(now)
    token = (token or "").strip()
    if not token:
        raise InvalidChange("Enter a payment method token.")
    gateway = get_gateway()
    try:
        customer_id = gateway.ensure_customer(account)
        details = gateway.attach(customer_id, token)
    except CardDeclined as exc:
        raise PaymentDeclined(str(exc), exc.code) from None
    except GatewayUnavailable:
        raise BillingError("The payment provider did not answer. Nothing was changed; please try again.") from None
    except GatewayError as exc:
        raise BillingError(str(exc)) from None
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        if account.gateway_customer_id != customer_id:
            account.gateway_customer_id = customer_id
            account.save(update_fields=["gateway_customer_id"])
        old = list(PaymentMethod.objects.filter(account=account, is_default=True))
        PaymentMethod.objects.filter(account=account, is_default=True).update(is_default=False)
        # The same card saved twice (the card form and a webhook racing) is one row, made the default.
        method, _created = PaymentMethod.objects.update_or_create(
            account=account, gateway=gateway.name, gateway_id=details.gateway_id,
            defaults={"brand": details.brand, "last4": details.last4, "exp_month": details.exp_month,
                      "exp_year": details.exp_year, "fingerprint": details.fingerprint, "is_default": True,
                      "detached_at": None},
            create_defaults={"brand": details.brand, "last4": details.last4, "exp_month": details.exp_month,
                             "exp_year": details.exp_year, "fingerprint": details.fingerprint, "is_default": True,
                             "created_at": now},
        )
        audit(account=account, actor=actor, action="payment_method.set", obj=method,
              before={"default": str(old[0]) if old else None}, after={"default": str(method)}, now=now)
    from .scheduler import collect_after_new_payment_method

    collect_after_new_payment_method(account, actor=actor, now=now)
    return method


def payment_method_detached(account, gateway_id: str, *, now=None) -> None:
    """A card removed at the gateway. Never a cancellation (CAN-1): renewals will fail into dunning."""
    now = _now(now)
    with transaction.atomic():
        for method in PaymentMethod.objects.select_for_update().filter(account=account, gateway_id=gateway_id,
                                                                       detached_at__isnull=True):
            method.detached_at, method.is_default = now, False
            method.save(update_fields=["detached_at", "is_default"])
            audit(account=account, actor=None, action="payment_method.detached", obj=method, now=now)


def payments_settle_unknown(*, since=None, now=None, older_than: timedelta | None = None) -> list[Payment]:
    """PAY-2: ask the gateway about every payment whose outcome is unknown and settle it."""
    now = _now(now)
    grace = older_than if older_than is not None else timedelta(seconds=settings.BILLING_SETTLE_GRACE_SECONDS)
    pending = Payment.objects.filter(status=PaymentStatus.UNKNOWN, attempted_at__lte=now - grace)
    if since:
        pending = pending.filter(attempted_at__gte=since)
    settled = []
    for payment in pending.select_related("invoice", "account", "payment_method").order_by("id"):
        result = ledger.payment_lookup(payment)
        if result is None:
            continue
        try:
            payment_settle(payment, result, now=now)
        except PaymentDeclined:
            pass  # recorded; the customer who asked has long gone
        payment.refresh_from_db()
        settled.append(payment)
    return settled


def payment_record_external_refund(payment: Payment, amount: Decimal, reference: str, *, now=None):
    """A refund made at the gateway outside Prorata: record it once (Refund + refund credit note)."""
    from invoices.models import Refund

    now = _now(now)
    with transaction.atomic():
        existing = Refund.objects.filter(Q(gateway_reference=reference) | Q(idempotency_key=f"external-{reference}"))
        if existing.exists():
            return existing.first()
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        note = ledger.credit_note_issue(account=payment.account, invoice=payment.invoice, kind=CreditNoteKind.REFUND,
                                        amount=amount, remaining=ZERO, reason="Refund made at the payment provider",
                                        now=now)
        payment.refunded_amount += amount
        payment.save(update_fields=["refunded_amount"])
        refund = Refund.objects.create(payment=payment, amount=amount, idempotency_key=f"external-{reference}",
                                       gateway_reference=reference, credit_note=note,
                                       reason="Refund made at the payment provider", created_at=now)
        audit(account=payment.account, actor=None, action="refund.recorded", obj=refund,
              after={"amount": str(amount), "reference": reference}, now=now)
        return refund


# --- suspension (SUS) ---------------------------------------------------------------------------


def _suspend(account, reason: str, note: str, *, actor, now, notify=True) -> None:
    before = {"status": account.status, "suspension_reason": account.suspension_reason}
    Account.objects.filter(pk=account.pk).update(status=AccountStatus.SUSPENDED, suspension_reason=reason,
                                                 suspension_note=note, suspended_at=now)
    account.status, account.suspension_reason, account.suspension_note = AccountStatus.SUSPENDED, reason, note
    audit(account=account, actor=actor, action="account.suspended", obj=account, before=before,
          after={"status": "suspended", "suspension_reason": reason}, reason=note, now=now)
    if notify:
        events.emit("account.suspended", account.pk, now=now, reason=reason, note=note)


def _lift(account, note: str, *, actor, now, notify=True) -> None:
    previous = account.suspension_reason
    Account.objects.filter(pk=account.pk).update(status=AccountStatus.ACTIVE, suspension_reason="",
                                                 suspension_note="", suspended_at=None)
    account.status, account.suspension_reason = AccountStatus.ACTIVE, ""
    audit(account=account, actor=actor, action="account.reactivated", obj=account,
          before={"status": "suspended", "suspension_reason": previous}, after={"status": "active"}, reason=note,
          now=now)
    if notify:
        events.emit("account.reactivated", account.pk, now=now, previous_reason=previous, note=note)


def start_free(account, *, actor=None, now=None) -> Subscription:
    """Put a new account on the Free plan (no card, no periods to charge)."""
    now = _now(now)
    with transaction.atomic():
        plan = Plan.objects.filter(code="free").first()
        if plan is None:
            raise InvalidChange("The catalog has no 'free' plan: run `manage.py load_catalog` first.")
        subscription = Subscription.objects.create(account=account, plan=plan, status=Status.ACTIVE,
                                                   current_period_start=now, created_at=now)
        audit(account=account, actor=actor, action="subscription.started_free", obj=subscription,
              after={"plan": plan.code}, now=now)
        return subscription


def move_to_free(sub: Subscription, *, now, actor=None) -> Subscription:
    """End `sub` and put the account on Free; excess properties are paused, never deleted (CAN-2)."""
    _end(sub, now)
    free = start_free(sub.account, actor=actor, now=now)
    pause_excess(sub.account, _limit(free.plan, 0), now=now)
    return free


__all__ = [
    "BillingError", "InvalidChange", "LimitExceeded", "NotEligible", "PaymentDeclined", "PaymentPending",
    "QuoteChanged",
    "Quote", "cancel", "change_plan", "payment_method_detached", "payment_record_external_refund",
    "payment_settle", "payments_settle_unknown", "preview_change", "preview_extra_properties", "resume",
    "set_extra_properties", "set_payment_method", "start_free", "start_trial", "subscribe", "trial_eligible",
]


def subscribe(account, plan_code: str, cycle: str = "monthly", *, actor=None, now=None) -> Subscription:
    """A paid subscription at once, no trial (REN-4): the first period starts on the payment date."""
    now = _now(now)
    with transaction.atomic():
        sub = _lock_account_subscription(account)
        plan = _plan(account, plan_code)
        price = _price(plan, cycle)
        if plan.is_free:
            raise InvalidChange("The Free plan needs no subscription.")
        if sub.is_paid and sub.status != Status.CANCELED:
            raise InvalidChange("You already have a subscription; change its plan instead.")
        _paid_status_guard(sub)
        problem = fit_problem(account, plan)
        if problem:
            raise LimitExceeded(problem.replace("to downgrade", "to subscribe to this plan"))
        start, end = period_bounds(now, cycle, 0)
        line = QuoteLine(f"{plan.name} ({cycle}), {start:%Y-%m-%d} to {end:%Y-%m-%d}", price,
                         f"full {'month' if cycle == Cycle.MONTHLY else 'year'} = {format_money(price, plan.currency)}")
        step = _charge_begin(sub, kind=InvoiceKind.SUBSCRIPTION, lines=[ledger.Line.from_quote(line, start, end)],
                             pending={"action": "subscribe", "plan": plan.code, "cycle": cycle,
                                      "start": start.isoformat(), "from_subscription": sub.pk},
                             currency=plan.currency, period=(start, end), actor=actor, now=now)
    _charge_finish(step, actor=actor, now=now)
    return Subscription.objects.filter(account=account).order_by("-id").select_related("plan").first()


# The staff actions and customer requests (REF, UPG-3, SUS-2, DWN-4, REF-4, CAT-3) are part of this API.
from .staff import *  # noqa: E402,F403
