"""Every status change of a subscription and of an account, checked against one transition table
each, and the state changes a paid charge makes. The diagram is in docs/billing-engine.md; the
tables here are the rules (a test walks them).

Callers hold the locks (subscriptions.locks: account, then subscription, then invoices) and the
transaction; every change here writes its audit row (ACC-3) and announces itself through the
events outbox (core.events).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from accounts.audit import audit
from accounts.models import Account, AccountStatus, SuspensionReason
from accounts.services import pause_excess, unpause_within_limit
from core import events, zones
from core.money import ZERO
from invoices import services as ledger
from invoices.models import CreditNoteKind, Invoice, InvoiceKind, InvoiceStatus, RefundRequest, RefundRequestStatus
from invoices.selectors import last_paid_invoice
from plans.models import Plan

from . import pricing, terms
from .changes import CHARGED, ChangeKind, PendingChange
from .errors import InvalidChange
from .locks import invoices_lock, refund_request_lock
from .models import Status, Subscription

# --- the transition tables ------------------------------------------------------------------------

# (from, to) -> when it happens. A subscription is created trialing (TRI-1) or active (Free, a
# first paid period); `None` stands for "not created yet".
SUBSCRIPTION_TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, Status.TRIALING): "a free trial starts (TRI-1)",
    (None, Status.ACTIVE): "a Free subscription, or a first paid period (REN-4, UPG-6)",
    (Status.TRIALING, Status.ACTIVE): "the trial ends and converts (TRI-3)",
    (Status.TRIALING, Status.CANCELED): "the owner cancels the trial (TRI-4), or it ends on a move to Free",
    (Status.CANCELED, Status.TRIALING): "a cancelled trial is reactivated before its end date (TRI-5)",
    (Status.ACTIVE, Status.PAST_DUE): "a renewal, conversion or overage charge fails (DUN-1)",
    (Status.PAST_DUE, Status.ACTIVE): "the open invoices are paid (DUN-2, DUN-4), or a cancellation voids them",
    (Status.PAST_DUE, Status.SUSPENDED): "the last retry fails (DUN-3)",
    (Status.SUSPENDED, Status.ACTIVE): "a full new period is paid after a new card (DUN-3)",
    (Status.ACTIVE, Status.CANCELED): "it ends: at period end (CAN-2), on a move to Free (DWN-1), a refund (REF-2), "
                                      "or a new subscription replaces it",
    (Status.PAST_DUE, Status.CANCELED): "it ends while an overage invoice is still open",
    (Status.SUSPENDED, Status.CANCELED): "it ends by a refund while suspended for non-payment (REF-2)",
}

# (from, to) -> when. A suspended account may be suspended again for a new reason.
ACCOUNT_TRANSITIONS: dict[tuple[str, str], str] = {
    (AccountStatus.ACTIVE, AccountStatus.SUSPENDED): "non-payment (DUN-3), a policy violation (SUS-2), "
                                                     "a cancelled trial (TRI-4)",
    (AccountStatus.SUSPENDED, AccountStatus.SUSPENDED): "a new reason while suspended (the last retry fails "
                                                        "during a policy suspension)",
    (AccountStatus.SUSPENDED, AccountStatus.ACTIVE): "paid (DUN-3), lifted by staff (SUS-2), trial reactivated "
                                                     "(TRI-5) or expired",
}


class TransitionNotAllowed(RuntimeError):
    """A status change that the transition table does not have: a bug, never a customer's error."""


def subscription_status_set(sub: Subscription, to: str) -> None:
    """Give `sub` the status `to` (the caller saves it). Staying in the same status is no change."""
    if sub.status == to and sub.pk is not None:
        return
    frm = sub.status if sub.pk is not None else None
    if (frm, to) not in SUBSCRIPTION_TRANSITIONS:
        raise TransitionNotAllowed(f"A subscription cannot go from {frm or 'nothing'} to {to}.")
    sub.status = to


def _account_status_set(account: Account, to: str) -> None:
    if (account.status, to) not in ACCOUNT_TRANSITIONS:
        raise TransitionNotAllowed(f"An account cannot go from {account.status} to {to}.")
    account.status = to


# --- accounts: suspension (SUS-1, SUS-2, DUN-3, TRI-4) ----------------------------------------------


def account_suspend(account: Account, reason: str, note: str, *, actor, now, notify=True) -> None:
    """Tracking stops (SUS-1). The caller holds the account's lock."""
    before = {"status": account.status, "suspension_reason": account.suspension_reason}
    _account_status_set(account, AccountStatus.SUSPENDED)
    account.suspension_reason, account.suspension_note, account.suspended_at = reason, note, now
    account.save(update_fields=["status", "suspension_reason", "suspension_note", "suspended_at"])
    audit(account=account, actor=actor, action="account.suspended", obj=account, before=before,
          after={"status": "suspended", "suspension_reason": reason}, reason=note, now=now)
    if notify:
        events.emit("account.suspended", account.pk, now=now, reason=reason, note=note)


def account_lift(account: Account, note: str, *, actor, now, notify=True) -> None:
    """Tracking resumes. The caller holds the account's lock."""
    previous = account.suspension_reason
    _account_status_set(account, AccountStatus.ACTIVE)
    account.suspension_reason, account.suspension_note, account.suspended_at = "", "", None
    account.save(update_fields=["status", "suspension_reason", "suspension_note", "suspended_at"])
    audit(account=account, actor=actor, action="account.reactivated", obj=account,
          before={"status": "suspended", "suspension_reason": previous}, after={"status": "active"}, reason=note,
          now=now)
    if notify:
        events.emit("account.reactivated", account.pk, now=now, previous_reason=previous, note=note)


def account_lift_if(account: Account, reason: str, note: str, *, actor, now, notify=True) -> bool:
    """Lift the suspension only if it is for `reason`; returns whether it did."""
    account.refresh_from_db(fields=["status", "suspension_reason", "suspension_note", "suspended_at"])
    if account.status != AccountStatus.SUSPENDED or account.suspension_reason != reason:
        return False
    account_lift(account, note, actor=actor, now=now, notify=notify)
    return True


# --- starting and ending subscriptions ---------------------------------------------------------------


def subscription_create(account, plan: Plan, status: str, *, now, **fields) -> Subscription:
    """A new subscription; its periods are counted on the account's zone unless `timezone` says
    on which zone its first period was computed."""
    fields.setdefault("timezone", account.timezone)
    sub = Subscription(account=account, plan=plan, created_at=now, **fields)
    subscription_status_set(sub, status)
    sub.save()
    return sub


def subscription_start_free(account, *, actor, now) -> Subscription:
    """Put the account on the Free plan (no card, no periods to charge)."""
    plan = Plan.objects.filter(code="free").first()
    if plan is None:
        raise InvalidChange("The catalog has no 'free' plan: run `manage.py load_catalog` first.")
    sub = subscription_create(account, plan, Status.ACTIVE, now=now, current_period_start=now)
    audit(account=account, actor=actor, action="subscription.started_free", obj=sub, after={"plan": plan.code},
          now=now)
    return sub


def subscription_end(sub: Subscription, now) -> None:
    """The subscription stops being the current one (it stays as history)."""
    subscription_status_set(sub, Status.CANCELED)
    sub.ended_at, sub.is_current = sub.ended_at or now, False
    sub.save(update_fields=["status", "ended_at", "is_current", "updated_at"])


def subscription_move_to_free(sub: Subscription, *, now, actor=None) -> Subscription:
    """End `sub` and put the account on Free; excess properties are paused, never deleted (CAN-2)."""
    subscription_end(sub, now)
    free = subscription_start_free(sub.account, actor=actor, now=now)
    pause_excess(sub.account, free.property_limit, now=now)
    return free


def subscription_cancel_now(sub: Subscription, reason: str, *, reason_code: str, actor, now) -> Subscription:
    """CAN-6: cancelled while the period in force was never paid: nothing was bought beyond the
    last paid period, so the subscription ends at once and the account moves to Free (excess
    properties paused, never deleted, as CAN-2 at period end). The caller voided the open renewal
    and holds the locks. Returns the Free subscription."""
    before = terms.snapshot(sub)
    sub.canceled_at, sub.cancel_reason, sub.cancel_reason_code = now, reason[:2000], reason_code
    sub.scheduled_plan, sub.scheduled_cycle, sub.scheduled_extra_properties = None, "", None
    sub.save()
    subscription_end(sub, now)
    free = subscription_start_free(sub.account, actor=actor, now=now)
    paused = pause_excess(sub.account, free.property_limit, now=now)
    audit(account=sub.account, actor=actor, action="cancellation.effective", obj=sub, before=before,
          after={**terms.snapshot(free), "cancel_reason_code": reason_code, "unpaid_period": True}, reason=reason,
          now=now)
    events.emit("cancellation.effective", sub.account_id, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                paused_properties=[p.name for p in paused])
    return free


def trial_start(sub: Subscription, plan: Plan, cycle: str, *, actor, now) -> Subscription:
    """TRI-1: a free trial of `plan` replaces `sub` (Free, or an ended subscription). The caller
    checked the eligibility (TRI-2) and holds the account's lock."""
    account = sub.account
    before = terms.snapshot(sub)
    subscription_end(sub, now)
    new = change_apply(sub, PendingChange(ChangeKind.START_TRIAL, plan.code, cycle, start=now), plan, now=now)
    new.save()
    account.trial_used_at = now
    account.save(update_fields=["trial_used_at"])
    unpause_within_limit(account, actor=actor, now=now)
    audit(account=account, actor=actor, action="trial.started", obj=new, before=before, after=terms.snapshot(new),
          now=now)
    events.emit("trial.started", account.pk, now=now, subscription_id=new.pk, plan=plan.code,
                trial_end=new.trial_end.isoformat())
    return new


def trial_cancel(sub: Subscription, reason: str, *, actor, now, reason_code: str = "") -> None:
    """TRI-4: the trial is cancelled at once and the account suspended; nothing is charged. The
    owner's reason (CAN-5) is kept for staff."""
    before = terms.snapshot(sub)
    subscription_status_set(sub, Status.CANCELED)
    sub.canceled_at, sub.cancel_reason, sub.cancel_reason_code = now, reason[:2000], reason_code
    sub.scheduled_plan, sub.scheduled_cycle = None, ""
    sub.save()
    account_suspend(sub.account, SuspensionReason.CANCELLED_TRIAL, "You cancelled your trial.", actor=actor, now=now,
                    notify=False)
    audit(account=sub.account, actor=actor, action="trial.canceled", obj=sub, before=before,
          after={**terms.snapshot(sub), "cancel_reason_code": reason_code}, reason=reason, now=now)
    events.emit("trial.canceled", sub.account_id, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                trial_end=sub.trial_end.isoformat())


def trial_reactivate(sub: Subscription, *, actor, now) -> None:
    """TRI-5: a cancelled trial resumes with the days that remain (the end date does not move)."""
    subscription_status_set(sub, Status.TRIALING)
    sub.canceled_at, sub.cancel_reason, sub.cancel_reason_code = None, "", ""
    sub.save()
    account_lift_if(sub.account, SuspensionReason.CANCELLED_TRIAL, "Trial reactivated", actor=actor, now=now,
                    notify=False)


def trial_convert(sub: Subscription, *, now) -> tuple[datetime, datetime]:
    """TRI-3: the trial ends; the first period starts at the trial end, on the calendar the owner
    chose (D-5). Returns its bounds."""
    before = terms.snapshot(sub)
    first = terms.trial_terms(sub)
    start, end, timezone_name = first.start, first.end, first.timezone
    subscription_status_set(sub, Status.ACTIVE)
    sub.timezone, sub.next_timezone = timezone_name, ""
    sub.anchor_at, sub.period_index = start, 0
    sub.current_period_start, sub.current_period_end = start, end
    sub.current_price = terms.plan_price(sub.plan, sub.cycle)
    sub.save()
    audit(account=sub.account, actor=None, action="trial.ended", obj=sub, before=before, after=terms.snapshot(sub),
          now=now)
    return start, end


def renewals_void_open(sub: Subscription, *, now) -> list[Invoice]:
    """Void the open renewal (or trial conversion) invoices of `sub`: no renewal is owed for a
    period the customer will not have (a cancellation while past due, a refund, DUN-3)."""
    voided = []
    for invoice in invoices_lock(Invoice.objects.filter(
        subscription=sub, status=InvoiceStatus.OPEN, kind__in=[InvoiceKind.RENEWAL, InvoiceKind.TRIAL_CONVERSION]
    )):
        ledger.invoice_void(invoice, now=now)
        audit(account=sub.account, actor=None, action="invoice.voided", obj=invoice,
              before={"status": "open"}, after={"status": "void"}, now=now)
        voided.append(invoice)
    return voided


# --- dunning (DUN-1..4) -------------------------------------------------------------------------------


def dunning_failed(invoice: Invoice, sub: Subscription | None, message: str, now, *, emit: bool,
                   payment=None) -> None:
    """DUN-1..3: the invoice stays open; past due; retries 1, 3, 5, 7 days after the first failure;
    suspension when the last one fails. `emit` False: the gateway never saw the attempt, so it is
    tried again on the next run and nobody is told of a decline that did not happen."""
    if sub is None:
        return
    before = terms.snapshot(sub)
    days = settings.BILLING_RETRY_DAYS
    if not emit:
        sub.next_retry_at = now
        if sub.status == Status.ACTIVE:
            subscription_status_set(sub, Status.PAST_DUE)
            sub.past_due_since = now
        sub.save()
        return
    if sub.status != Status.PAST_DUE or sub.past_due_since is None:
        subscription_status_set(sub, Status.PAST_DUE)
        sub.past_due_since, sub.retry_count = now, 0
    else:
        sub.retry_count += 1
    suspend = sub.retry_count >= len(days)
    sub.next_retry_at = None if suspend else sub.past_due_since + timedelta(days=days[sub.retry_count])
    if suspend:
        subscription_status_set(sub, Status.SUSPENDED)
    sub.save()
    audit(account=sub.account, actor=None, action="payment.failed", obj=invoice, before=before,
          after={**terms.snapshot(sub), "decline": message}, now=now)
    events.emit("payment.failed", sub.account_id, now=now, invoice_id=invoice.pk,
                payment_id=payment.pk if payment else None, amount=str(invoice.amount_due),
                decline_message=message, next_retry_at=terms.iso(sub.next_retry_at))
    if suspend:
        account_suspend(sub.account, SuspensionReason.NON_PAYMENT,
                        f"The last payment retry for invoice {invoice.number} failed: {message}", actor=None, now=now)


def dunning_collected(invoice: Invoice, payment, sub: Subscription | None, now) -> None:
    """A renewal, conversion or overage invoice was paid: past due ends once nothing is open, and
    the receipt is announced."""
    account = invoice.account
    if sub is not None and sub.status == Status.PAST_DUE and not Invoice.objects.filter(
        account=account, status=InvoiceStatus.OPEN
    ).exists():
        dunning_abandon(sub, now, action="subscription.paid_up")
    if invoice.kind == InvoiceKind.TRIAL_CONVERSION:
        events.emit("trial.converted", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    invoice_id=invoice.pk, amount=str(invoice.total))
    else:  # REN-5: a receipt after every renewal, one paid wholly by credit (INV-5, no payment) too
        events.emit("payment.succeeded", account.pk, now=now, invoice_id=invoice.pk,
                    payment_id=payment.pk if payment is not None else None,
                    amount=str(payment.amount if payment is not None else invoice.total))


def dunning_abandon(sub: Subscription, now, *, action: str) -> None:
    """Past due ends: the open invoices were paid, or voided by a cancellation (CAN-2)."""
    before = terms.snapshot(sub)
    subscription_status_set(sub, Status.ACTIVE)
    sub.past_due_since, sub.retry_count, sub.next_retry_at = None, 0, None
    sub.save()
    audit(account=sub.account, actor=None, action=action, obj=sub, before=before, after=terms.snapshot(sub), now=now)


# --- what a paid charge changes (UPG, ADD-1, REN-4, DUN-3) ----------------------------------------


def quoted_zone(change: PendingChange) -> str:
    """The zone a charged change's new period was computed on when it was quoted and invoiced, so
    that the period applied is the one the invoice states (PAY-4). A change recorded before the
    billing calendar followed the account's zone (issue 15) was computed on UTC's."""
    return change.timezone or zones.DEFAULT


def change_apply(sub: Subscription, change: PendingChange, plan: Plan | None, *, now) -> Subscription:
    """The subscription as `change` leaves it (`plan`: the plan it names); saves nothing. Written on
    `sub`, or, for a change that starts a new subscription (a trial, a first paid period), on a new
    unsaved one that is returned. A quote passes an unsaved copy, "what the change would leave",
    whose next charge it states (PAY-4); the engine saves what it returns, so both read one rule."""
    kind = change.kind
    if kind in (ChangeKind.START_TRIAL, ChangeKind.SUBSCRIBE):
        new = Subscription(account=sub.account, plan=plan, cycle=change.cycle, created_at=now, current_price=ZERO,
                           timezone=sub.account.timezone)
        if kind == ChangeKind.START_TRIAL:  # TRI-1: the trial is the first period
            new.trial_start = new.current_period_start = change.start or now
            new.trial_end = new.current_period_end = terms.trial_end_at(sub.account, plan, new.trial_start)
            subscription_status_set(new, Status.TRIALING)
            return new
        _series_start(new, change, change.cycle)  # REN-4, UPG-6
        new.current_price = terms.plan_price(plan, change.cycle)
        subscription_status_set(new, Status.ACTIVE)
        return new
    if kind == ChangeKind.TRIAL_CHANGE:  # TRI-6: the end date is kept
        sub.plan, sub.cycle, sub.scheduled_plan, sub.scheduled_cycle = plan, change.cycle, None, ""
    elif kind == ChangeKind.SCHEDULE:  # DWN-1: from the period's end; it replaces a cancellation
        sub.scheduled_plan, sub.scheduled_cycle, sub.cancel_at_period_end = plan, change.cycle, False
    elif kind == ChangeKind.DOWNGRADE_NOW:  # DWN-4
        sub.plan, sub.current_price = plan, plan.price_for(sub.cycle) or ZERO
        sub.scheduled_plan, sub.scheduled_cycle = None, ""
        if plan.extra_property_monthly is None:
            sub.extra_properties, sub.scheduled_extra_properties = 0, None  # ADD-3
    elif kind == ChangeKind.UPGRADE:
        if change.new_series:  # UPG-3: a new yearly period from the payment date
            _series_start(sub, change, change.cycle)
            sub.cycle = change.cycle
        sub.plan = plan
        sub.current_price = terms.plan_price(plan, sub.cycle)
        # UPG-5: an upgrade clears a scheduled downgrade or cancellation.
        sub.scheduled_plan, sub.scheduled_cycle, sub.cancel_at_period_end = None, "", False
    elif kind == ChangeKind.ADD_ON:  # ADD-1: at once
        sub.extra_properties, sub.scheduled_extra_properties = change.quantity, None
    elif kind == ChangeKind.ADD_ON_SCHEDULED:  # ADD-2: from the period end
        sub.scheduled_extra_properties = change.quantity if change.quantity != sub.extra_properties else None
    elif kind == ChangeKind.REACTIVATE:  # DUN-3: a full new period from the payment date
        subscription_status_set(sub, Status.ACTIVE)
        _series_start(sub, change, sub.cycle)
        sub.current_price = terms.plan_price(sub.plan, sub.cycle)
        sub.past_due_since, sub.retry_count, sub.next_retry_at = None, 0, None
    return sub


def _series_start(sub: Subscription, change: PendingChange, cycle: str) -> None:
    """A new series of periods from `change.start`, on the calendar it was quoted on (PAY-4, D-5)."""
    sub.timezone, sub.next_timezone = quoted_zone(change), ""
    sub.anchor_at, sub.period_index = change.start, 0
    sub.current_period_start, sub.current_period_end = pricing.period_bounds(change.start, cycle, 0, sub.zone)


def paid_change_apply(invoice: Invoice, *, actor, now) -> None:
    """Make the change an immediate charge paid for real. Called once, inside the transaction that
    records the payment, with the subscription locked."""
    try:
        change = PendingChange.from_json(invoice.pending_change)
    except ValueError:
        change = None
    if change is None or change.kind not in CHARGED:
        action = (invoice.pending_change or {}).get("action")
        raise InvalidChange(f"Unknown pending change {action!r} on invoice {invoice.pk}.")
    sub = Subscription.objects.select_related("plan", "account", "scheduled_plan").get(pk=invoice.subscription_id)
    before = terms.snapshot(sub)
    plan = Plan.objects.get(code=change.plan) if change.plan else None
    PAID_APPLIED[change.kind](sub, change, plan, invoice, before, actor=actor, now=now)
    if invoice.total > 0:
        refund_requests_close(invoice, now=now)


def _paid_subscribe(sub, change, plan, invoice, before, *, actor, now) -> None:
    """REN-4 / UPG-6: the first period starts on the payment date."""
    account = sub.account
    subscription_end(sub, now)
    new = change_apply(sub, change, plan, now=now)
    new.save()
    Invoice.objects.filter(pk=invoice.pk).update(subscription=new)
    unpause_within_limit(account, actor=actor, now=now)
    audit(account=account, actor=actor, action="subscription.started", obj=new, before=before,
          after=terms.snapshot(new), now=now)
    events.emit("subscription.started", account.pk, now=now, subscription_id=new.pk, plan=plan.code,
                cycle=new.cycle, invoice_id=invoice.pk, amount=str(invoice.total))


def _paid_upgrade(sub, change, plan, invoice, before, *, actor, now) -> None:
    from_plan = sub.plan.code
    change_apply(sub, change, plan, now=now).save()
    unpause_within_limit(sub.account, actor=actor, now=now)
    audit(account=sub.account, actor=actor, action="subscription.upgraded", obj=sub, before=before,
          after=terms.snapshot(sub), now=now)
    events.emit("subscription.upgraded", sub.account_id, now=now, subscription_id=sub.pk, from_plan=from_plan,
                to_plan=plan.code, cycle=sub.cycle, invoice_id=invoice.pk, amount=str(invoice.total))


def _paid_add_on(sub, change, plan, invoice, before, *, actor, now) -> None:
    change_apply(sub, change, plan, now=now).save()
    unpause_within_limit(sub.account, actor=actor, now=now)
    audit(account=sub.account, actor=actor, action="add_on.changed", obj=sub, before=before,
          after=terms.snapshot(sub), now=now)
    events.emit("add_on.changed", sub.account_id, now=now, subscription_id=sub.pk, quantity=sub.extra_properties,
                invoice_id=invoice.pk, amount=str(invoice.total), effective_at=now.isoformat())


def _paid_reactivate(sub, change, plan, invoice, before, *, actor, now) -> None:
    """DUN-3: the receipt (payment.succeeded) is announced by charges.payment_settle, once."""
    change_apply(sub, change, plan, now=now).save()
    audit(account=sub.account, actor=actor, action="subscription.reactivated", obj=sub, before=before,
          after=terms.snapshot(sub), now=now)
    account_lift_if(sub.account, SuspensionReason.NON_PAYMENT, f"Paid invoice {invoice.number}", actor=actor,
                    now=now)


# What a paid charge applies, by kind (`changes.CHARGED`).
PAID_APPLIED = {ChangeKind.SUBSCRIBE: _paid_subscribe, ChangeKind.UPGRADE: _paid_upgrade,
                ChangeKind.ADD_ON: _paid_add_on, ChangeKind.REACTIVATE: _paid_reactivate}


def refund_requests_close(invoice: Invoice, *, now) -> None:
    """REF-6: a paid plan change or purchase after a trial conversion shows the product was used: it
    closes the account's open trial-refund requests, with that reason, and the owner is told. The
    caller holds the invoice's locks; each request is locked after them, as a leaf."""
    for pk in RefundRequest.objects.filter(account_id=invoice.account_id, status=RefundRequestStatus.PENDING,
                                           invoice__paid_at__lt=invoice.paid_at).values_list("pk", flat=True):
        request = refund_request_lock(pk)
        if request.status != RefundRequestStatus.PENDING:
            continue
        paid_on = terms.local_date(invoice.account, invoice.paid_at)
        reason = (f"Closed on {paid_on:%Y-%m-%d}: you then paid for a change to your subscription "
                  f"({invoice.get_kind_display().lower()}, invoice {invoice.number}), which shows the product was "
                  "used (REF-6).")
        request.status, request.refusal_reason, request.decided_at = RefundRequestStatus.REFUSED, reason, now
        request.save(update_fields=["status", "refusal_reason", "decided_at"])
        audit(account=invoice.account, actor=None, action="refund.closed", obj=request,
              before={"status": "pending"}, after={"status": request.status, "by_invoice": invoice.number},
              reason=reason, now=now)
        events.emit("refund.decided", invoice.account_id, now=now, refund_request_id=request.pk, approved=False,
                    amount=str(request.invoice.total), reason=reason)


# --- plan changes that apply at once without a charge (DWN-4) ------------------------------------------


@dataclass(frozen=True)
class Downgraded:
    paused: list


def downgrade_apply_now(sub: Subscription, plan: Plan, credit, *, actor, reason: str, now,
                        by_staff: bool = False) -> Downgraded:
    """DWN-4: the plan changes at once; the unused difference (`credit`, a quote line) becomes a
    credit note applied to the next invoices (never paid out). `by_staff`: staff applied it (the
    e-mail says so), else the owner asked for it."""
    before = terms.snapshot(sub)
    from_plan = sub.plan
    invoice = last_paid_invoice(sub)
    if credit.amount > 0 and invoice is not None:
        note = ledger.credit_note_issue(account=sub.account, invoice=invoice, kind=CreditNoteKind.DOWNGRADE,
                                        net_amount=credit.amount, reason=f"{reason}: {from_plan.name} to {plan.name}",
                                        computation=credit.computation, now=now, issued_by=actor)
        audit(account=sub.account, actor=actor, action="credit_note.issued", obj=note,
              after={"number": note.number, "amount": str(note.amount)}, reason=reason, now=now)
        events.emit("credit_note.issued", sub.account_id, now=now, credit_note_id=note.pk,
                    amount=str(note.amount), reason=note.reason)
    change_apply(sub, PendingChange(ChangeKind.DOWNGRADE_NOW, plan.code), plan, now=now).save()
    paused = pause_excess(sub.account, sub.property_limit, now=now)
    audit(account=sub.account, actor=actor, action="downgrade.applied", obj=sub, before=before,
          after=terms.snapshot(sub), reason=reason, now=now)
    events.emit("downgrade.applied", sub.account_id, now=now, subscription_id=sub.pk, from_plan=from_plan.code,
                to_plan=plan.code, paused_properties=[p.name for p in paused],
                applied="now_by_staff" if by_staff else "now")
    return Downgraded(paused)
