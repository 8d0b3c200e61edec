"""The engine's staff and request functions: refund requests and decisions (REF-2..5), restore-days
requests (UPG-3), policy suspensions (SUS-2), immediate downgrades with a credit note (DWN-4),
period extensions and one-invoice refunds for a system failure (REF-4), custom plans (CAT-3).

Same contract as the rest of the engine (subscriptions.billing): each function is atomic, takes
`actor` and `now` (D-4), writes an audit row with before/after and the reason (ACC-3), and emits
the domain event the notifications app turns into the owner's e-mail. Staff functions check the
actor's permission themselves (ACC-2), so an admin view, a shell or a command cannot skip it.
There is deliberately no function that cancels a subscription on a customer's behalf (CAN-1).
"""

# Imported first and as a module: see the note at the end of this file.
from . import billing as _engine  # isort: skip

import re
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q

from accounts.models import Account, AccountFlag, FlagKind, SuspensionReason
from accounts.services import audit
from invoices import services as ledger
from invoices.gateways import GatewayError, GatewayUnavailable
from invoices.models import (
    CreditNoteKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    RefundRequest,
    RefundRequestStatus,
)
from plans.models import Cycle, Plan

from . import events, pricing
from .billing import (
    BillingError,
    InvalidChange,
    LimitExceeded,
    NotEligible,
    _downgrade_now,
    _is_upgrade,
    _lift,
    _lock,
    _now,
    _plan,
    _suspend,
    current_period,
    fit_problem,
    local_date,
    move_to_free,
    period_bounds,
    snapshot,
)
from .models import RequestStatus, RestoreRequest, Status, Subscription

__all__ = [
    "NotPermitted", "create_custom_plan", "decide_refund", "decide_restore", "downgrade_now", "extend_period",
    "lift_suspension", "refund_invoice", "refund_refusal", "request_refund", "request_restore_days",
    "restore_refusal", "suspend_account",
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


class NotPermitted(BillingError, PermissionDenied):
    """The acting staff user lacks the permission for this decision (REF-5, ACC-2)."""


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


def _gateway_failure(exc: GatewayError) -> BillingError:
    if isinstance(exc, GatewayUnavailable):
        return BillingError("The payment provider did not answer. Nothing was refunded or changed; try again.")
    return BillingError(f"The payment provider refused the refund: {exc}. Nothing was changed.")


def _refundable_payments(invoice: Invoice) -> list[Payment]:
    return [p for p in Payment.objects.filter(invoice=invoice, status=PaymentStatus.SUCCEEDED).order_by("id")
            if p.amount > p.refunded_amount]


def _charged_at(invoice: Invoice) -> datetime | None:
    if invoice.paid_at:
        return invoice.paid_at
    payment = (Payment.objects.filter(invoice=invoice, status=PaymentStatus.SUCCEEDED)
               .order_by("settled_at").first())
    return payment.settled_at if payment else None


# --- refunds (REF-2..5) ------------------------------------------------------------------------


def refund_refusal(invoice, now=None) -> str | None:
    """Why the owner may not ask for a refund of `invoice` now (REF-2, REF-3), or None."""
    now = _now(now)
    account = invoice.account
    if invoice.kind != InvoiceKind.TRIAL_CONVERSION:
        return "Only the charge made when your free trial ended can be refunded; other payments are final."
    if invoice.status != InvoiceStatus.PAID or not Payment.objects.filter(
        invoice=invoice, status=PaymentStatus.SUCCEEDED
    ).exists():
        return "This invoice was not paid by card, so there is nothing to refund."
    refunded = invoice.credit_notes.filter(kind=CreditNoteKind.REFUND).exists() or Payment.objects.filter(
        invoice=invoice, refunded_amount__gt=0
    ).exists()
    if refunded:
        return "This charge was already refunded."
    earlier = (RefundRequest.objects.filter(invoice=invoice).exclude(status=RefundRequestStatus.REFUSED)
               .order_by("requested_at", "id").first())
    if earlier is not None:
        return (f"A refund of this charge was already requested on {local_date(account, earlier.requested_at)} "
                f"({earlier.get_status_display().lower()}).")
    if AccountFlag.objects.filter(account=account, kind=FlagKind.TRIAL_ABUSE, resolved_at__isnull=True).exists():
        return ("This account is flagged for review of its free trial, so the refund cannot be requested here. "
                "Please contact support.")
    charged_at = _charged_at(invoice)
    charged_on = local_date(account, charged_at)
    last_day = charged_on + timedelta(days=settings.BILLING_REFUND_WINDOW_DAYS)
    if local_date(account, now) > last_day:
        return (f"A refund can be requested within {settings.BILLING_REFUND_WINDOW_DAYS} days of the charge. "
                f"This charge was made on {charged_on:%Y-%m-%d}, so the last day to ask was {last_day:%Y-%m-%d}.")
    return None


def request_refund(invoice, *, message: str = "", actor=None, now=None) -> RefundRequest:
    """The owner asks for the trial-conversion charge back (REF-2). An ineligible request is kept,
    refused at once with its reason (REF-3), and NotEligible is raised with that reason."""
    now = _now(now)
    with transaction.atomic():
        invoice = Invoice.objects.select_for_update().select_related("account").get(pk=invoice.pk)
        refusal = refund_refusal(invoice, now)
        request = RefundRequest.objects.create(
            account=invoice.account, invoice=invoice, message=(message or "").strip()[:5000], requested_by=actor,
            requested_at=now, status=RefundRequestStatus.REFUSED if refusal else RefundRequestStatus.PENDING,
            refusal_reason=refusal or "",
        )
        audit(account=invoice.account, actor=actor, action="refund.refused" if refusal else "refund.requested",
              obj=request, after={"invoice": invoice.number, "amount": str(invoice.total), "status": request.status},
              reason=refusal or request.message, now=now)
    if refusal:  # raised after the commit: the refused request stays on record
        exc = NotEligible(refusal)
        exc.refund_request = request
        raise exc
    return request


def decide_refund(request, *, approve: bool, reason: str = "", actor, now=None) -> RefundRequest:
    """Staff decide a pending refund request (REF-2, REF-5).

    Approving needs "approve refunds": the charge is refunded in full through the gateway (one
    idempotency key per request and payment), a refund credit note is issued, the subscription the
    charge paid for ends and the account moves to Free. Rejecting needs a reason; support staff
    ("review refunds") may reject. Either way who, when and why are recorded and the owner is e-mailed.
    """
    now = _now(now)
    if approve:
        _require(actor, "invoices.approve_refund")
        reason = (reason or "").strip()[:2000] or "Refund approved (REF-2)."
    else:
        _require(actor, "invoices.review_refund", "invoices.approve_refund")
        reason = _reason(reason, "for rejecting the refund")
    try:
        with transaction.atomic():
            req = RefundRequest.objects.select_for_update().get(pk=request.pk)
            if req.status != RefundRequestStatus.PENDING:
                raise InvalidChange(f"This request was already decided: {req.get_status_display().lower()}.")
            invoice = Invoice.objects.select_for_update().select_related("account").get(pk=req.invoice_id)
            account = invoice.account
            req.decided_by, req.decided_at, req.decision_reason = actor, now, reason
            if not approve:
                req.status = RefundRequestStatus.REJECTED
                req.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
                audit(account=account, actor=actor, action="refund.rejected", obj=req, before={"status": "pending"},
                      after={"status": req.status, "invoice": invoice.number}, reason=reason, now=now)
                events.emit("refund.decided", account.pk, now=now, refund_request_id=req.pk, approved=False,
                            amount=str(invoice.total), reason=reason)
                return req
            payments = _refundable_payments(invoice)
            if not payments:
                raise InvalidChange("Nothing is left to refund on this invoice.")
            refunds = [
                ledger.payment_refund(payment, payment.amount - payment.refunded_amount,
                                      reason=f"Trial refund approved: {reason}",
                                      key=f"refund-request-{req.pk}-p{payment.pk}", now=now, issued_by=actor)
                for payment in payments
            ]
            amount = sum((refund.amount for refund in refunds), Decimal("0"))
            req.status, req.refund = RefundRequestStatus.REFUNDED, refunds[0]
            req.save(update_fields=["status", "decided_by", "decided_at", "decision_reason", "refund"])
            for refund in refunds:
                audit(account=account, actor=actor, action="credit_note.issued", obj=refund.credit_note,
                      after={"number": refund.credit_note.number, "amount": str(refund.amount), "kind": "refund"},
                      reason=reason, now=now)
            ended = _end_refunded_subscription(invoice, actor=actor, reason=reason, now=now)
            audit(account=account, actor=actor, action="refund.approved", obj=req, before={"status": "pending"},
                  after={"status": req.status, "invoice": invoice.number, "amount": str(amount),
                         "credit_notes": [r.credit_note.number for r in refunds],
                         "gateway_references": [r.gateway_reference for r in refunds],
                         "subscription_ended": ended.pk if ended else None},
                  reason=reason, now=now)
            events.emit("refund.decided", account.pk, now=now, refund_request_id=req.pk, approved=True,
                        amount=str(amount), reason=reason)
            return req
    except GatewayError as exc:
        raise _gateway_failure(exc) from None


def _end_refunded_subscription(invoice: Invoice, *, actor, reason, now) -> Subscription | None:
    """REF-2: the subscription the refunded charge paid for ends; the account moves to Free."""
    current = Subscription.objects.filter(account_id=invoice.account_id).order_by("-id").first()
    if current is None or current.pk != invoice.subscription_id or current.status == Status.CANCELED:
        return None  # it already ended (or the account moved on to another subscription)
    sub = _lock(current)
    if not sub.is_paid:
        return None
    from .scheduler import void_open_renewals

    before = snapshot(sub)
    void_open_renewals(sub, now=now)  # no renewal is owed for a period the customer will not have
    free = move_to_free(sub, now=now, actor=actor)
    account = Account.objects.get(pk=sub.account_id)
    if account.is_suspended and account.suspension_reason == SuspensionReason.NON_PAYMENT:
        _lift(account, "Nothing is owed after the trial refund", actor=actor, now=now, notify=False)
    audit(account=account, actor=actor, action="subscription.ended_by_refund", obj=sub, before=before,
          after=snapshot(free), reason=reason, now=now)
    return sub


# --- restore forfeited days (UPG-3) -----------------------------------------------------------------


def _upgrade_invoice(sub: Subscription) -> Invoice | None:
    """The paid monthly -> yearly upgrade invoice of `sub`, newest first."""
    for invoice in (Invoice.objects.filter(subscription=sub, kind=InvoiceKind.UPGRADE, status=InvoiceStatus.PAID)
                    .order_by("-issued_at", "-id")[:20]):
        change = invoice.pending_change or {}
        if change.get("action") == "upgrade" and (change.get("from_cycle"), change.get("cycle")) == (
            Cycle.MONTHLY, Cycle.YEARLY
        ):
            return invoice
    return None


def _upgraded_on(sub: Subscription, invoice: Invoice):
    start = (invoice.pending_change or {}).get("new_start")
    moment = datetime.fromisoformat(start) if start else (invoice.paid_at or invoice.issued_at)
    return local_date(sub.account, moment)


def restore_refusal(subscription, now=None) -> str | None:
    """Why the owner may not ask now for the days a monthly -> yearly upgrade forfeited, or None."""
    now = _now(now)
    sub = Subscription.objects.select_related("account", "plan").get(pk=subscription.pk)
    invoice = _upgrade_invoice(sub)
    if invoice is None:
        return "Days can be restored only after an upgrade from a monthly to a yearly plan."
    newest = Subscription.objects.filter(account_id=sub.account_id).order_by("-id").values_list("pk", flat=True)
    if newest.first() != sub.pk or sub.status == Status.CANCELED or sub.cycle != Cycle.YEARLY:
        return "The yearly subscription this upgrade started is no longer current, so no days can be added to it."
    days = int((invoice.pending_change or {}).get("forfeited_days") or 0)
    if days <= 0:
        return "No days of your monthly period were forfeited by this upgrade."
    existing = RestoreRequest.objects.filter(invoice=invoice).first()
    if existing is not None:
        return (f"You already asked for these {existing.days} days on "
                f"{local_date(sub.account, existing.requested_at):%Y-%m-%d} ({existing.get_status_display().lower()}).")
    working_days = settings.BILLING_RESTORE_WORKING_DAYS
    upgraded_on = _upgraded_on(sub, invoice)
    today = local_date(sub.account, now)
    if not pricing.restore_window_open(upgraded_on, today, working_days):
        deadline = pricing.restore_deadline(upgraded_on, working_days)
        return (f"Forfeited days can be restored only within {working_days} working days of the upgrade. You "
                f"upgraded on {upgraded_on:%A %Y-%m-%d}, so the last day to ask was {deadline:%A %Y-%m-%d}.")
    return None


def request_restore_days(subscription, *, actor=None, now=None) -> RestoreRequest:
    """UPG-3: the owner asks for the forfeited monthly days; staff decide (decide_restore)."""
    now = _now(now)
    try:
        with transaction.atomic():
            sub = _lock(subscription)
            refusal = restore_refusal(sub, now)
            if refusal:
                raise NotEligible(refusal)
            invoice = _upgrade_invoice(sub)
            request = RestoreRequest.objects.create(
                subscription=sub, invoice=invoice, days=int(invoice.pending_change["forfeited_days"]),
                upgraded_on=_upgraded_on(sub, invoice), requested_at=now, requested_by=actor,
            )
            audit(account=sub.account, actor=actor, action="restore.requested", obj=request,
                  after={"days": request.days, "invoice": invoice.number, "status": request.status}, now=now)
            return request
    except IntegrityError:  # a concurrent request for the same upgrade won
        raise NotEligible("You already asked for these days.") from None


def decide_restore(request, *, approve: bool, reason: str = "", actor, now=None) -> RestoreRequest:
    """UPG-3: approving moves the yearly period end out by the forfeited days (the anchor moves, so
    later periods follow); rejecting needs a reason. The owner is e-mailed the outcome."""
    now = _now(now)
    _require(actor, "subscriptions.decide_restore")
    reason = (reason or "").strip()[:2000] if approve else _reason(reason, "for rejecting the request")
    with transaction.atomic():
        req = RestoreRequest.objects.select_for_update().get(pk=request.pk)
        if req.status != RequestStatus.PENDING:
            raise InvalidChange(f"This request was already decided: {req.get_status_display().lower()}.")
        sub = _lock(req.subscription)
        account = sub.account
        req.decided_by, req.decided_at, req.decision_reason = actor, now, reason
        if approve:
            if sub.cycle != Cycle.YEARLY or sub.status == Status.CANCELED or sub.anchor_at is None:
                raise InvalidChange("The subscription is no longer on the yearly period the upgrade started.")
            before = snapshot(sub)
            sub.anchor_at += timedelta(days=req.days)
            sub.current_period_end = period_bounds(sub.anchor_at, sub.cycle, sub.period_index)[1]
            sub.save()
            req.status = RequestStatus.APPROVED
            audit(account=account, actor=actor, action="restore.approved", obj=sub, before=before,
                  after={**snapshot(sub), "restore_request": req.pk, "days": req.days}, reason=reason, now=now)
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
    now = _now(now)
    _require(actor, "accounts.suspend_account")
    reason = _reason(reason, "for the suspension")
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        if account.is_suspended:
            raise InvalidChange(f"The account is already suspended ({account.get_suspension_reason_display()}).")
        _suspend(account, SuspensionReason.POLICY_VIOLATION, reason, actor=actor, now=now)
        return account


def lift_suspension(account, *, reason: str, actor, now=None) -> Account:
    """SUS-2: lift a policy suspension. Other suspensions end on their own terms: paying the open
    invoice (non-payment, DUN-3) or reactivating the trial (TRI-5)."""
    now = _now(now)
    _require(actor, "accounts.suspend_account")
    reason = _reason(reason, "for lifting the suspension")
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        if not account.is_suspended:
            raise InvalidChange("The account is not suspended.")
        if account.suspension_reason != SuspensionReason.POLICY_VIOLATION:
            raise InvalidChange(f"The account is suspended for {account.get_suspension_reason_display().lower()}; "
                                "that suspension ends when the owner pays or reactivates, not from the admin.")
        _lift(account, reason, actor=actor, now=now)
        return account


# --- immediate downgrade with a credit note (DWN-4) -----------------------------------------------


def downgrade_now(subscription, plan_code: str, *, reason: str, actor, now=None) -> Subscription:
    """DWN-4: staff move an active paid subscription to a lower paid plan at once, same cycle; the
    unused value `(old − new) × remaining_days / total_days` becomes a credit note applied to the
    next invoices (never paid out). The account must fit the target (DWN-3)."""
    now = _now(now)
    _require(actor, "subscriptions.downgrade_now")
    reason = _reason(reason, "for the downgrade")
    with transaction.atomic():
        sub = _lock(subscription)
        account = sub.account
        if sub.status != Status.ACTIVE or not sub.is_paid or sub.current_period_end is None:
            raise InvalidChange("Only an active paid subscription can be downgraded at once "
                                "(not a trial, not past due, not Free).")
        plan = _plan(account, plan_code)
        if plan.is_free:
            raise InvalidChange("Moving to Free ends the paid subscription, which only the owner can do (CAN-1). "
                                "Choose a lower paid plan.")
        new_price = plan.price_for(sub.cycle)
        if new_price is None:
            raise InvalidChange(f"{plan.name} is not offered {sub.cycle}.")
        if _is_upgrade(sub, plan, sub.cycle) is not False:
            raise InvalidChange(f"{plan.name} ({sub.cycle}) is not a downgrade from {sub.plan.name}.")
        problem = fit_problem(account, plan, sub.extra_properties if plan.extra_property_monthly is not None else 0)
        if problem:
            raise LimitExceeded(problem)
        credit = pricing.unused_credit_line(sub.current_price, new_price, current_period(sub),
                                            local_date(account, now), plan.currency)
        _downgrade_now(sub, plan, credit, actor=actor, reason=reason, now=now)
        return sub


# --- system failures (REF-4) ------------------------------------------------------------------------


def extend_period(subscription, days: int, *, reason: str, actor, now=None) -> Subscription:
    """REF-4: add `days` to the current period at no charge. A paid period's anchor moves by the
    days, so the renewal and every later period follow (D-1); a trial's end date moves."""
    now = _now(now)
    _require(actor, "subscriptions.extend_period")
    reason = _reason(reason, "for the extension")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_EXTENSION_DAYS:
        raise InvalidChange(f"Extend by 1 to {MAX_EXTENSION_DAYS} days.")
    with transaction.atomic():
        sub = _lock(subscription)
        before = snapshot(sub)
        delta = timedelta(days=days)
        if sub.status == Status.TRIALING:
            sub.trial_end += delta
            sub.current_period_end = sub.trial_end
        elif sub.status == Status.ACTIVE and sub.is_paid and sub.anchor_at is not None:
            if Invoice.objects.filter(subscription=sub, kind=InvoiceKind.RENEWAL,
                                      period_start__gte=sub.current_period_end).exclude(
                                          status=InvoiceStatus.VOID).exists():
                raise InvalidChange("The next period is already invoiced; extend it after it has started.")
            sub.anchor_at += delta
            sub.current_period_end = period_bounds(sub.anchor_at, sub.cycle, sub.period_index)[1]
        else:
            raise InvalidChange("Only an active paid subscription or a trial has a period to extend.")
        sub.save()
        audit(account=sub.account, actor=actor, action="period.extended", obj=sub, before=before,
              after={**snapshot(sub), "days": days}, reason=reason, now=now)
        events.emit("period.extended", sub.account_id, now=now, subscription_id=sub.pk, days=days,
                    period_end=sub.current_period_end.isoformat(), reason=reason)
        return sub


def refund_invoice(invoice, *, reason: str, actor, now=None) -> list:
    """REF-4: refund what was paid on one invoice, through the gateway, for a system failure. Each
    refund issues a refund credit note naming the invoice (INV-2). Returns the Refund rows."""
    now = _now(now)
    _require(actor, "invoices.refund_invoice")
    reason = _reason(reason, "for the refund")
    try:
        with transaction.atomic():
            invoice = Invoice.objects.select_for_update().select_related("account").get(pk=invoice.pk)
            if not invoice.number or invoice.status != InvoiceStatus.PAID:
                raise InvalidChange("Only a paid invoice can be refunded.")
            payments = _refundable_payments(invoice)
            if not payments:
                raise InvalidChange("Nothing paid by card is left to refund on this invoice.")
            refunded_before = sum((p.refunded_amount for p in payments), Decimal("0"))
            refunds = [
                ledger.payment_refund(payment, payment.amount - payment.refunded_amount,
                                      reason=f"Refund for a system failure: {reason}",
                                      key=f"staff-refund-inv{invoice.pk}-p{payment.pk}", now=now, issued_by=actor)
                for payment in payments
            ]
            total = sum((r.amount for r in refunds), Decimal("0"))
            audit(account=invoice.account, actor=actor, action="invoice.refunded", obj=invoice,
                  before={"refunded": str(refunded_before)},
                  after={"refunded": str(refunded_before + total), "amount": str(total),
                         "credit_notes": [r.credit_note.number for r in refunds]},
                  reason=reason, now=now)
            for refund in refunds:
                note = refund.credit_note
                events.emit("credit_note.issued", invoice.account_id, now=now, credit_note_id=note.pk,
                            amount=str(note.amount), reason=note.reason)
            return refunds
    except GatewayError as exc:
        raise _gateway_failure(exc) from None


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
    now = _now(now)
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


# billing.py re-exports this module (`from .staff import *` at its end). If this module is imported
# before billing, that star import runs while this module is still empty (billing is imported on the
# first line above); finish the re-export here so `billing.decide_refund` exists in either order.
for _name in __all__:
    setattr(_engine, _name, globals()[_name])
