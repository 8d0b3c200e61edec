"""Staff decisions, made in the admin (ACC-2): refund requests (REF-2, REF-5), restore-days requests
(UPG-3), policy suspensions (SUS-2), immediate downgrades with a credit note (DWN-4), period
extensions and one-invoice refunds for a system failure (REF-4), custom plans (CAT-3).

Same contract as the customer commands (subscriptions.billing): each function takes `actor` and
`now` (D-4), locks in the one order (`locks`), writes an audit row with before/after and the reason
(ACC-3), and announces what the owner is e-mailed through the events outbox. Refunds move money
in three steps (`charges`): never inside an open transaction. Staff functions check the actor's
permission themselves (ACC-2), so an admin view, a shell or a command cannot skip it. There is
deliberately no function that cancels a subscription on a customer's behalf (CAN-1).
"""

import re
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from accounts.audit import audit
from accounts.models import Account, SuspensionReason
from core import events
from core.clock import clock
from invoices.models import (
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Refund,
    RefundRequest,
    RefundRequestStatus,
    RefundStatus,
)
from plans.models import Cycle, Plan

from . import charges, lifecycle, pricing, terms
from .errors import BillingError, InvalidChange, LimitExceeded, NotPermitted
from .locks import account_lock, invoice_lock, refund_request_lock, restore_request_lock, subscription_lock_current
from .models import RequestStatus, RestoreRequest, Status, Subscription

__all__ = [
    "create_custom_plan", "decide_refund", "decide_restore", "downgrade_credit", "downgrade_now", "extend_period",
    "lift_suspension", "refund_invoice", "refund_request_complete", "refunds_settle", "suspend_account",
]

# ACC-2: what each staff function needs. The groups (accounts.groups) hand these out.
PERMISSION_LABELS = {
    "invoices.approve_refund": "approve refunds",
    "invoices.review_refund": "review refunds",
    "invoices.refund_invoice": "refund an invoice",
    "subscriptions.decide_restore": "decide restore-days requests",
    "subscriptions.downgrade_now": "downgrade at once",
    "subscriptions.extend_period": "extend a period",
    "accounts.suspend_account": "suspend accounts",
    "plans.create_custom_plan": "create custom plans",
}
MAX_EXTENSION_DAYS = 366
_BASE = object()  # create_custom_plan: "as on the base plan"

REFUND_PENDING = ("The payment provider did not confirm the refund yet. It is recorded and is finished with the "
                  "provider by the reconciliation (reconcile_payments); do not refund again.")


def _require(actor, *perms: str) -> None:
    """The actor must be active staff holding one of `perms`."""
    if actor is not None and actor.is_active and actor.is_staff and any(actor.has_perm(p) for p in perms):
        return
    label = " or ".join(f"“{PERMISSION_LABELS.get(p, p)}”" for p in perms)
    raise NotPermitted(f"You need the {label} permission to do this.")


def _reason(reason: str, what: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidChange(f"Give a reason {what}.")
    return text[:2000]


def _refunds_to_begin(invoice: Invoice, refunds) -> list:
    """(payment, amount) for what is left to refund on `invoice`, leaving out payments that already
    have a refund succeeded or under way in `refunds` (a queryset)."""
    busy = set(refunds.exclude(status=RefundStatus.FAILED).values_list("payment_id", flat=True))
    return [(payment, payment.amount - payment.refunded_amount)
            for payment in terms.refundable_payments(invoice) if payment.pk not in busy]


def _refund_failures(refunds) -> str:
    return "; ".join(refund.failure_message for refund in refunds if refund.status == RefundStatus.FAILED)


# --- refunds of a trial conversion (REF-2..5) ------------------------------------------------------


def decide_refund(request, *, approve: bool, reason: str = "", actor, now=None) -> RefundRequest:
    """Staff decide a pending refund request (REF-2, REF-5).

    Approving needs "approve refunds": the charge is refunded in full through the gateway (one
    idempotency key per request, attempt and payment; recorded before the call, settled after it),
    a refund credit note is issued, the subscription the charge paid for ends and the account moves
    to Free. Rejecting needs a reason; support staff ("review refunds") may reject. Either way who,
    when and why are recorded and the owner is e-mailed."""
    now = clock(now)
    if approve:
        _require(actor, "invoices.approve_refund")
        reason = (reason or "").strip()[:2000] or "Refund approved."
    else:
        _require(actor, "invoices.review_refund", "invoices.approve_refund")
        reason = _reason(reason, "for rejecting the refund")
    with transaction.atomic():
        invoice = invoice_lock(RefundRequest.objects.values_list("invoice_id", flat=True).get(pk=request.pk))
        req = refund_request_lock(request.pk)
        if req.status != RefundRequestStatus.PENDING:
            raise InvalidChange(f"This request was already decided: {req.get_status_display().lower()}.")
        req.decided_by, req.decided_at, req.decision_reason = actor, now, reason
        if not approve:
            req.status = RefundRequestStatus.REJECTED
            req.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
            audit(account=invoice.account, actor=actor, action="refund.rejected", obj=req,
                  before={"status": "pending"}, after={"status": req.status, "invoice": invoice.number},
                  reason=reason, now=now)
            events.emit("refund.decided", invoice.account_id, now=now, refund_request_id=req.pk, approved=False,
                        amount=str(invoice.total), reason=reason)
            return req
        to_refund = _refunds_to_begin(invoice, req.refunds.all())
        if not to_refund and not req.refunds.filter(status=RefundStatus.UNKNOWN).exists():
            raise InvalidChange("Nothing is left to refund on this invoice.")
        req.status = RefundRequestStatus.APPROVED  # approved, the refund being made
        req.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        charges.refunds_begin(to_refund, key_prefix=f"refund-request-{req.pk}-a{req.refunds.count() + 1}",
                              reason=f"Trial refund approved: {reason}", actor=actor, now=now, request=req)
    charges.refunds_send_and_record(list(req.refunds.filter(status=RefundStatus.UNKNOWN).order_by("pk")), now=now)
    req = refund_request_complete(req, now=now)
    if req.status == RefundRequestStatus.PENDING:
        raise BillingError(f"The payment provider refused the refund: {req.refusal_reason} Nothing more was "
                           "refunded; the request is pending again.")
    if req.status == RefundRequestStatus.APPROVED:
        raise BillingError(REFUND_PENDING)
    return req


def refund_request_complete(request, *, now) -> RefundRequest:
    """Finish an approved request once its refunds are settled: all succeeded → refunded, the
    subscription ends (REF-2), the owner is e-mailed; one refused by the gateway → pending again,
    for staff to decide anew (what was refunded stays refunded); some still unknown → unchanged
    (the reconciliation settles them, then calls this again)."""
    with transaction.atomic():
        invoice = invoice_lock(request.invoice_id)
        req = refund_request_lock(request.pk)
        if req.status != RefundRequestStatus.APPROVED:
            return req
        refunds = list(req.refunds.order_by("pk"))
        if any(refund.status == RefundStatus.UNKNOWN for refund in refunds):
            return req
        account = invoice.account
        failures = _refund_failures(refunds)
        if failures:
            req.status, req.refusal_reason = RefundRequestStatus.PENDING, failures[:2000]
            req.save(update_fields=["status", "refusal_reason"])
            audit(account=account, actor=req.decided_by, action="refund.failed", obj=req,
                  before={"status": "approved"}, after={"status": req.status}, reason=failures, now=now)
            return req
        succeeded = [refund for refund in refunds if refund.status == RefundStatus.SUCCEEDED]
        amount = sum((refund.amount for refund in succeeded), Decimal("0"))
        req.status, req.refund = RefundRequestStatus.REFUNDED, succeeded[0]
        req.save(update_fields=["status", "refund"])
        ended = _end_refunded_subscription(invoice, actor=req.decided_by, reason=req.decision_reason, now=now)
        audit(account=account, actor=req.decided_by, action="refund.approved", obj=req, before={"status": "pending"},
              after={"status": req.status, "invoice": invoice.number, "amount": str(amount),
                     "credit_notes": [refund.credit_note.number for refund in succeeded],
                     "gateway_references": [refund.gateway_reference for refund in succeeded],
                     "subscription_ended": ended.pk if ended else None},
              reason=req.decision_reason, now=now)
        events.emit("refund.decided", account.pk, now=now, refund_request_id=req.pk, approved=True,
                    amount=str(amount), reason=req.decision_reason)
        return req


def _end_refunded_subscription(invoice: Invoice, *, actor, reason, now) -> Subscription | None:
    """REF-2: the subscription the refunded charge paid for ends; the account moves to Free. The
    caller holds the invoice's locks (its account and subscription)."""
    current = Subscription.objects.current_of(invoice.account_id)
    if current is None or current.pk != invoice.subscription_id or current.status == Status.CANCELED:
        return None  # it already ended (or the account moved on to another subscription)
    sub = Subscription.objects.select_related("plan", "account", "scheduled_plan").get(pk=current.pk)
    if not sub.is_paid:
        return None
    before = terms.snapshot(sub)
    lifecycle.renewals_void_open(sub, now=now)  # no renewal is owed for a period the customer will not have
    free = lifecycle.subscription_move_to_free(sub, now=now, actor=actor)
    lifecycle.account_lift_if(sub.account, SuspensionReason.NON_PAYMENT, "Nothing is owed after the trial refund",
                              actor=actor, now=now, notify=False)
    audit(account=sub.account, actor=actor, action="subscription.ended_by_refund", obj=sub, before=before,
          after=terms.snapshot(free), reason=reason, now=now)
    return sub


def refunds_settle(*, now=None) -> list:
    """Settle refunds whose outcome is unknown (sent again with their key, which the gateway never
    refunds twice) and finish the requests they carry out. `reconcile_payments` runs it."""
    now = clock(now)
    settled = charges.refunds_settle_unknown(now=now)
    for req in RefundRequest.objects.filter(status=RefundRequestStatus.APPROVED).order_by("pk"):
        refund_request_complete(req, now=now)
    return settled


# --- restore forfeited days (UPG-3) -----------------------------------------------------------------


def decide_restore(request, *, approve: bool, reason: str = "", actor, now=None) -> RestoreRequest:
    """UPG-3: approving moves the yearly period end out by the forfeited days (the anchor moves, so
    later periods follow); rejecting needs a reason. The owner is e-mailed the outcome."""
    now = clock(now)
    _require(actor, "subscriptions.decide_restore")
    reason = (reason or "").strip()[:2000] if approve else _reason(reason, "for rejecting the request")
    with transaction.atomic():
        sub = subscription_lock_current(
            Subscription(pk=RestoreRequest.objects.values_list("subscription_id", flat=True).get(pk=request.pk)))
        req = restore_request_lock(request.pk)
        if req.status != RequestStatus.PENDING:
            raise InvalidChange(f"This request was already decided: {req.get_status_display().lower()}.")
        account = sub.account
        req.decided_by, req.decided_at, req.decision_reason = actor, now, reason
        if approve:
            if sub.cycle != Cycle.YEARLY or sub.status == Status.CANCELED or sub.anchor_at is None:
                raise InvalidChange("The subscription is no longer on the yearly period the upgrade started.")
            before = terms.snapshot(sub)
            sub.anchor_at, sub.current_period_end = terms.anchor_moved(sub, req.days)
            sub.save()
            req.status = RequestStatus.APPROVED
            audit(account=account, actor=actor, action="restore.approved", obj=sub, before=before,
                  after={**terms.snapshot(sub), "restore_request": req.pk, "days": req.days}, reason=reason, now=now)
        else:
            req.status = RequestStatus.REJECTED
            audit(account=account, actor=actor, action="restore.rejected", obj=req, before={"status": "pending"},
                  after={"status": req.status, "days": req.days}, reason=reason, now=now)
        req.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
        events.emit("restore.decided", account.pk, now=now, restore_request_id=req.pk, approved=approve,
                    days=req.days, period_end=sub.current_period_end.isoformat(), reason=reason)
        return req


# --- suspension for a policy violation (SUS-2) ---------------------------------------------------


def suspend_account(account, *, reason: str, actor, now=None) -> Account:
    """SUS-2: suspend for a policy violation; tracking stops (SUS-1) and the owner is e-mailed."""
    now = clock(now)
    _require(actor, "accounts.suspend_account")
    reason = _reason(reason, "for the suspension")
    with transaction.atomic():
        account = account_lock(account.pk)
        if account.is_suspended:
            raise InvalidChange(f"The account is already suspended ({account.get_suspension_reason_display()}).")
        lifecycle.account_suspend(account, SuspensionReason.POLICY_VIOLATION, reason, actor=actor, now=now)
        return account


def lift_suspension(account, *, reason: str, actor, now=None) -> Account:
    """SUS-2: lift a policy suspension. Other suspensions end on their own terms: paying the open
    invoice (non-payment, DUN-3) or reactivating the trial (TRI-5)."""
    now = clock(now)
    _require(actor, "accounts.suspend_account")
    reason = _reason(reason, "for lifting the suspension")
    with transaction.atomic():
        account = account_lock(account.pk)
        if not account.is_suspended:
            raise InvalidChange("The account is not suspended.")
        if account.suspension_reason != SuspensionReason.POLICY_VIOLATION:
            raise InvalidChange(f"The account is suspended for {account.get_suspension_reason_display().lower()}; "
                                "that suspension ends when the owner pays or reactivates, not from the admin.")
        lifecycle.account_lift(account, reason, actor=actor, now=now)
        return account


# --- immediate downgrade with a credit note (DWN-4) -----------------------------------------------


def downgrade_credit(sub: Subscription, plan: Plan, now) -> pricing.QuoteLine:
    """DWN-4: the unused value `(old − new) × remaining_days / total_days` of moving `sub` to
    `plan` at `now`, the credit the downgrade issues (the admin shows it before staff confirm)."""
    new_price = plan.price_for(sub.cycle)
    if new_price is None:
        raise InvalidChange(f"{plan.name} is not offered {sub.cycle}.")
    line = pricing.unused_credit_line(sub.current_price, new_price, terms.current_period(sub),
                                      terms.local_date(sub.account, now), plan.currency)
    ahead = terms.invoiced_ahead(sub)
    if ahead is not None and ahead.cycle == sub.cycle:  # REN-1: the next period is bought at its price too
        paid = terms.plan_price(ahead.plan, ahead.cycle)
        if paid > new_price:
            period = terms.ahead_period(ahead)
            bought = pricing.unused_credit_line(paid, new_price, period, period.start, plan.currency)
            line = pricing.QuoteLine(f"{line.description}; {bought.description}", line.amount + bought.amount,
                                     f"{line.computation} + {bought.computation}")
    return line


def downgrade_now(subscription, plan_code: str, *, reason: str, actor, now=None) -> Subscription:
    """DWN-4: staff move an active paid subscription to a lower paid plan at once, same cycle; the
    unused value becomes a credit note applied to the next invoices (never paid out). The account
    must fit the target (DWN-3)."""
    now = clock(now)
    _require(actor, "subscriptions.downgrade_now")
    reason = _reason(reason, "for the downgrade")
    with transaction.atomic():
        sub = subscription_lock_current(subscription)
        account = sub.account
        if sub.status != Status.ACTIVE or not sub.is_paid or sub.current_period_end is None:
            raise InvalidChange("Only an active paid subscription can be downgraded at once "
                                "(not a trial, not past due, not Free).")
        plan = terms.plan_for(account, plan_code)
        if plan.is_free:
            raise InvalidChange("Moving to Free ends the paid subscription, which only the owner can do (CAN-1). "
                                "Choose a lower paid plan.")
        credit = downgrade_credit(sub, plan, now)
        if terms.is_upgrade(sub, plan, sub.cycle) is not False:
            raise InvalidChange(f"{plan.name} ({sub.cycle}) is not a downgrade from {sub.plan.name}.")
        problem = terms.fit_problem(account, plan, sub.extra_properties)
        if problem:
            raise LimitExceeded(problem)
        lifecycle.downgrade_apply_now(sub, plan, credit, actor=actor, reason=reason, now=now, by_staff=True)
        return sub


# --- system failures (REF-4) ------------------------------------------------------------------------


def extend_period(subscription, days: int, *, reason: str, actor, now=None) -> Subscription:
    """REF-4: add `days` to the current period at no charge. A paid period's anchor moves by the
    days, so the renewal and every later period follow (D-1); a trial's end date moves."""
    now = clock(now)
    _require(actor, "subscriptions.extend_period")
    reason = _reason(reason, "for the extension")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise InvalidChange(f"Extend by 1 to {MAX_EXTENSION_DAYS} days.")
    with transaction.atomic():
        sub = subscription_lock_current(subscription)
        before = terms.snapshot(sub)
        if sub.status == Status.TRIALING:
            sub.trial_end = terms.days_later(sub, sub.trial_end, days)  # local days (D-2)
            sub.current_period_end = sub.trial_end
        elif sub.status == Status.ACTIVE and sub.is_paid and sub.anchor_at is not None:
            if Invoice.objects.filter(subscription=sub, kind=InvoiceKind.RENEWAL,
                                      period_start__gte=sub.current_period_end).exclude(
                                          status=InvoiceStatus.VOID).exists():
                raise InvalidChange("The next period is already invoiced; extend it after it has started.")
            sub.anchor_at, sub.current_period_end = terms.anchor_moved(sub, days)
        else:
            raise InvalidChange("Only an active paid subscription or a trial has a period to extend.")
        sub.save()
        audit(account=sub.account, actor=actor, action="period.extended", obj=sub, before=before,
              after={**terms.snapshot(sub), "days": days}, reason=reason, now=now)
        events.emit("period.extended", sub.account_id, now=now, subscription_id=sub.pk, days=days,
                    period_end=sub.current_period_end.isoformat(), reason=reason)
        return sub


def refund_invoice(invoice, *, reason: str, actor, now=None) -> list:
    """REF-4: refund what was paid on one invoice, through the gateway, for a system failure. Each
    refund issues a refund credit note naming the invoice (INV-2), e-mailed to the owner. The
    refunds are recorded before the gateway is called and settled after it. Returns the Refund rows."""
    now = clock(now)
    _require(actor, "invoices.refund_invoice")
    reason = _reason(reason, "for the refund")
    with transaction.atomic():
        invoice = invoice_lock(invoice.pk)
        if not invoice.number or invoice.status != InvoiceStatus.PAID:
            raise InvalidChange("Only a paid invoice can be refunded.")
        own = Refund.objects.filter(payment__invoice=invoice, refund_request__isnull=True)
        to_refund = _refunds_to_begin(invoice, own)
        if not to_refund:
            raise InvalidChange("Nothing paid by card is left to refund on this invoice.")
        refunded_before = sum((payment.refunded_amount for payment, _amount in to_refund), Decimal("0"))
        refunds = charges.refunds_begin(to_refund, key_prefix=f"staff-refund-inv{invoice.pk}-a{own.count() + 1}",
                                        reason=f"Refund for a system failure: {reason}", actor=actor, now=now)
    refunds = charges.refunds_send_and_record(refunds, now=now)
    succeeded = [refund for refund in refunds if refund.status == RefundStatus.SUCCEEDED]
    if succeeded:
        total = sum((refund.amount for refund in succeeded), Decimal("0"))
        with transaction.atomic():
            audit(account=invoice.account, actor=actor, action="invoice.refunded", obj=invoice,
                  before={"refunded": str(refunded_before)},
                  after={"refunded": str(refunded_before + total), "amount": str(total),
                         "credit_notes": [refund.credit_note.number for refund in succeeded]},
                  reason=reason, now=now)
    failures = _refund_failures(refunds)
    if failures:
        raise BillingError(f"The payment provider refused the refund: {failures} Nothing more was changed.")
    if len(succeeded) < len(refunds):
        raise BillingError(REFUND_PENDING)
    return succeeded


# --- custom plans (CAT-3) ------------------------------------------------------------------------------


def _money_or_none(value, what: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float | bool):
        raise InvalidChange(f"{what}: give an amount like 19.00, not {value!r}.")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidChange(f"{what}: {value!r} is not an amount.") from None
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise InvalidChange(f"{what}: give a positive amount in whole cents.")
    if amount > settings.BILLING_MAX_UNIT_PRICE:
        raise InvalidChange(f"{what}: {amount} is more than the largest price allowed.")
    return amount


def _count_or_none(value, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidChange(f"{what}: give a whole number of zero or more, or leave it empty for unlimited.")
    return value


def create_custom_plan(account, *, base_plan_code: str, code: str, name: str, monthly_price, yearly_price,
                       limit_properties=_BASE, limit_sessions=_BASE, limit_integrations=_BASE,
                       overage_per_1000=_BASE, extra_property_monthly=_BASE, trial_days=_BASE,
                       actor, now=None) -> Plan:
    """CAT-3: a private plan for one account, made from an existing plan with its own prices and
    limits. Omitted limits are the base plan's; None means unlimited (or, for overage, a hard cap).
    It has the base plan's rank, so moving to it is an upgrade or downgrade as for the base plan."""
    now = clock(now)
    _require(actor, "plans.create_custom_plan")
    base = Plan.objects.filter(code=base_plan_code).filter(Q(public=True) | Q(account=account)).first()
    if base is None:
        raise InvalidChange(f"There is no plan called {base_plan_code!r} to start from.")
    code = (code or "").strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{1,49}", code):
        raise InvalidChange("The code is 2 to 50 lower-case letters, digits, - or _, like acme-advanced.")
    name = (name or "").strip()[:100]
    if not name:
        raise InvalidChange("Give the plan a name.")
    monthly = _money_or_none(monthly_price, "Monthly price")
    yearly = _money_or_none(yearly_price, "Yearly price")
    if not monthly and not yearly:
        raise InvalidChange("A custom plan needs a monthly or a yearly price above zero.")

    def pick(value, field):
        return getattr(base, field) if value is _BASE else value

    values = {
        "limit_properties": _count_or_none(pick(limit_properties, "limit_properties"), "Properties"),
        "limit_sessions": _count_or_none(pick(limit_sessions, "limit_sessions"), "Sessions per month"),
        "limit_integrations": _count_or_none(pick(limit_integrations, "limit_integrations"), "Integrations"),
        "overage_per_1000": _money_or_none(pick(overage_per_1000, "overage_per_1000"), "Overage per 1,000"),
        "extra_property_monthly": _money_or_none(pick(extra_property_monthly, "extra_property_monthly"),
                                                 "Extra property per month"),
        "trial_days": _count_or_none(pick(trial_days, "trial_days"), "Trial days") or 0,
    }
    with transaction.atomic():
        if Plan.objects.filter(code=code).exists():
            raise InvalidChange(f"A plan with the code {code!r} already exists; choose another code.")
        plan = Plan.objects.create(code=code, name=name, rank=base.rank, currency=base.currency,
                                   monthly_price=monthly, yearly_price=yearly, public=False, account=account,
                                   based_on=base, **values)
        audit(account=account, actor=actor, action="plan.custom_created", obj=plan,
              after={"code": code, "name": name, "based_on": base.code, "monthly_price": str(monthly),
                     "yearly_price": str(yearly), **{k: str(v) if v is not None else None for k, v in values.items()}},
              reason=f"Custom plan based on {base.name}", now=now)
        return plan
