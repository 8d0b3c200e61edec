"""What runs while nobody is looking: `run(now)` does everything due at `now`.

Steps, in order: settle unknown payments (PAY-2), trial reminders (TRI-7), trial conversions
(TRI-3), yearly renewal reminders (REN-5), renewals 24 hours before the period end (REN-1, REN-2,
DWN-2), period roll-overs with scheduled downgrades and cancellations (DWN-3, CAN-2, ADD-2,
ADD-3), dunning retries and suspension (DUN-2, DUN-3), and the previous month's overage invoices
(USE-3).

Exactly once (REN-3): every item is claimed under a row lock (`SELECT … FOR UPDATE SKIP LOCKED` on
PostgreSQL, so several workers share the work; one run at a time under a lock row on SQLite),
its due condition is re-checked after the claim, the invoice carries a unique `dedupe_key`
(renewal:<subscription>:<period start>), and every charge has an idempotency key: an interrupted
run leaves an `unknown` payment that the next run settles with the gateway before anything else.
"""

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from accounts.models import Account, AccountStatus, SuspensionReason, UsageMonth
from accounts.services import audit, pause_excess
from invoices import services as ledger
from invoices.models import Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus
from plans.models import Cycle

from . import events, pricing
from .billing import (
    _addon_price,
    _charge_begin,
    _charge_finish,
    _lift,
    _limit,
    _suspend,
    move_to_free,
    payment_settle,
    payments_settle_unknown,
    period_bounds,
    snapshot,
)
from .models import BillingRunLock, Status, Subscription
from .pricing import ZERO, format_money

log = logging.getLogger(__name__)

STEPS = ("settle", "trial_reminders", "trials", "renewal_reminders", "renewals", "rollovers", "retries", "overage")


@dataclass
class RunReport:
    now: datetime
    dry_run: bool = False
    counts: dict = field(default_factory=lambda: {step: 0 for step in STEPS})
    planned: list = field(default_factory=list)  # dry run: what would happen, with amounts
    failures: list = field(default_factory=list)  # (step, subscription/account id, message)
    skipped: str = ""

    def add(self, step: str, n: int = 1) -> None:
        self.counts[step] = self.counts.get(step, 0) + n

    def merge(self, other: "RunReport") -> None:
        for step, n in other.counts.items():
            self.add(step, n)
        self.planned += other.planned
        self.failures += other.failures

    def __str__(self) -> str:
        head = f"Billing run at {self.now.isoformat()}{' (dry run: nothing changed)' if self.dry_run else ''}"
        if self.skipped:
            return f"{head}\n  skipped: {self.skipped}"
        lines = [head] + [f"  {step:<18} {n}" for step, n in self.counts.items()]
        lines += [f"  would {what}" for what in self.planned]
        lines += [f"  FAILED {step} #{ref}: {msg}" for step, ref, msg in self.failures]
        return "\n".join(lines)


# --- due items --------------------------------------------------------------------------------


def _lead() -> timedelta:
    return timedelta(hours=settings.BILLING_RENEWAL_LEAD_HOURS)


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
                                        current_period_end__lte=now + _lead(), current_price__gt=0)
            .exclude(scheduled_plan__monthly_price=0, scheduled_plan__yearly_price__isnull=True)
            .exclude(renewal_invoiced_for=F("current_period_end")))


def due_rollovers(now):
    return Subscription.objects.filter(status__in=[Status.ACTIVE, Status.PAST_DUE], current_period_end__lte=now,
                                       current_price__gt=0)


def due_retries(now):
    return Subscription.objects.filter(status=Status.PAST_DUE, next_retry_at__lte=now)


# --- the run --------------------------------------------------------------------------------------


def run(now: datetime | None = None, *, dry_run: bool = False, fan_out: bool | None = None) -> RunReport:
    """Everything due at `now`. In-process by default; with a django-q2 cluster (`fan_out`), the
    due subscriptions are handed to workers in chunks."""
    now = now or timezone.now()
    report = RunReport(now=now, dry_run=dry_run)
    if dry_run:
        return _plan(now, report)
    if not anything_due(now):  # the common case every 15 minutes: three cheap queries, no lock
        return report
    holder = f"{socket.gethostname()}:{os.getpid()}"
    use_lock = connection.vendor != "postgresql"
    if use_lock and not _acquire(holder):
        report.skipped = "another billing run holds the run lock"
        return report
    try:
        if fan_out is None:
            fan_out = cluster_available()
        report.add("settle", len(payments_settle_unknown(now=now)))
        for step, selector in SELECTORS:
            ids = list(selector(now).order_by("pk").values_list("pk", flat=True))
            if fan_out and len(ids) > settings.BILLING_RUN_CHUNK_SIZE:
                _fan_out(step, ids, now, report)
            else:
                report.merge(run_chunk(step, ids, now))
        report.merge(overage_run(now))
    finally:
        if use_lock:
            _release(holder)
    return report


SELECTORS = (("trial_reminders", due_trial_reminders), ("trials", due_trials),
             ("renewal_reminders", due_renewal_reminders), ("renewals", due_renewals),
             ("rollovers", due_rollovers), ("retries", due_retries))


def anything_due(now) -> bool:
    grace = timedelta(seconds=settings.BILLING_SETTLE_GRACE_SECONDS)
    subscriptions = due_trial_reminders(now)
    for _step, selector in SELECTORS[1:]:
        subscriptions = subscriptions | selector(now)
    return (subscriptions.exists()
            or Payment.objects.filter(status=PaymentStatus.UNKNOWN, attempted_at__lte=now - grace).exists()
            or overage_owed(previous_month(now)).exists())


def run_chunk(step: str, ids: list[int], now) -> RunReport:
    """Process one step for these subscriptions; safe to run on several workers at once."""
    if isinstance(now, str):
        now = datetime.fromisoformat(now)
    report = RunReport(now=now)
    from .renewals import CHUNK_HANDLERS

    if step in CHUNK_HANDLERS:  # set-wise: a few statements per chunk
        CHUNK_HANDLERS[step](ids, now, report)
        return report
    handler = HANDLERS[step]
    for pk in ids:
        try:
            if handler(pk, now):
                report.add(step)
        except Exception as exc:  # one bad subscription never stops the run; it is reported
            log.exception("billing run: %s failed for subscription %s", step, pk)
            report.failures.append((step, pk, f"{type(exc).__name__}: {exc}"))
    return report


def _fan_out(step, ids, now, report) -> None:
    from django_q.tasks import async_task, result_group

    size = settings.BILLING_RUN_CHUNK_SIZE
    group = f"billing-{step}-{now.isoformat()}-{os.getpid()}"
    chunks = [ids[i:i + size] for i in range(0, len(ids), size)]
    for chunk in chunks:
        async_task("subscriptions.scheduler.run_chunk", step, chunk, now.isoformat(), group=group)
    results = result_group(group, failures=True, wait=settings.BILLING_RUN_WAIT_MS, count=len(chunks)) or []
    for result in results:
        if isinstance(result, RunReport):
            report.merge(result)
    if len(results) < len(chunks):
        report.failures.append((step, "-", f"{len(chunks) - len(results)} chunk(s) still running on workers"))


def cluster_available() -> bool:
    """A django-q2 cluster is running with a shared broker (Redis): fan out to it."""
    if "redis" not in settings.Q_CLUSTER or settings.Q_CLUSTER.get("sync"):
        return False
    try:
        from django_q.status import Stat

        return bool(Stat.get_all())
    except Exception:
        return False


def _acquire(holder: str) -> bool:
    real_now = timezone.now()
    BillingRunLock.objects.get_or_create(name="billing_run")
    return bool(BillingRunLock.objects.filter(name="billing_run").filter(
        Q(expires_at__isnull=True) | Q(expires_at__lt=real_now)
    ).update(holder=holder, expires_at=real_now + timedelta(minutes=30)))


def _release(holder: str) -> None:
    BillingRunLock.objects.filter(name="billing_run", holder=holder).update(holder="", expires_at=None)


def _claim(pk: int, queryset):
    """Lock one due subscription; None if another worker has it or it is no longer due."""
    return (queryset.select_for_update(skip_locked=True, of=("self",))
            .select_related("plan", "account", "scheduled_plan").filter(pk=pk).first())


# --- step handlers: each returns True when it did something ---------------------------------------


def trial_reminder(pk, now) -> bool:
    with transaction.atomic():
        sub = _claim(pk, due_trial_reminders(now))
        if sub is None:
            return False
        sub.trial_reminded_at = now
        sub.save(update_fields=["trial_reminded_at", "updated_at"])
        price = sub.plan.price_for(sub.cycle) or ZERO
        events.emit("trial.ending_soon", sub.account_id, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    trial_end=sub.trial_end.isoformat(), amount=str(price))
        return True


def trial_end(pk, now) -> bool:
    """TRI-3: charge the first period at the trial end; it starts then. TRI-5: a cancelled trial
    past its end date moves to Free."""
    with transaction.atomic():
        sub = _claim(pk, due_trials(now))
        if sub is None:
            return False
        account = sub.account
        if sub.status == Status.CANCELED:  # cancelled trial, end date passed: Free, suspension lifted
            before = snapshot(sub)
            move_to_free(sub, now=now)
            if account.suspension_reason == SuspensionReason.CANCELLED_TRIAL:
                _lift(account, "Cancelled trial reached its end date; moved to Free", actor=None, now=now,
                      notify=False)
            audit(account=account, actor=None, action="trial.expired", obj=sub, before=before, after=snapshot(sub),
                  now=now)
            return True
        if sub.scheduled_plan_id and sub.scheduled_plan.is_free:  # a downgrade to Free during the trial
            paused = [p.name for p in _to_free(sub, now)]
            events.emit("downgrade.applied", account.pk, now=now, subscription_id=sub.pk, from_plan=sub.plan.code,
                        to_plan="free", paused_properties=paused)
            return True
        before = snapshot(sub)
        price = sub.plan.price_for(sub.cycle)
        start, end = period_bounds(sub.trial_end, sub.cycle, 0)
        sub.status, sub.anchor_at, sub.period_index = Status.ACTIVE, start, 0
        sub.current_period_start, sub.current_period_end, sub.current_price = start, end, price
        sub.save()
        audit(account=account, actor=None, action="trial.ended", obj=sub, before=before, after=snapshot(sub), now=now)
        line = ledger.Line(f"{sub.plan.name} ({sub.cycle}), {start:%Y-%m-%d} to {end:%Y-%m-%d}", price,
                           f"first {'month' if sub.cycle == Cycle.MONTHLY else 'year'} after the free trial")
        payment = _issue_and_begin(sub, InvoiceKind.TRIAL_CONVERSION, [line], (start, end),
                                   f"trial:{sub.pk}", now)
    _send(payment, now)
    return True


def _to_free(sub, now):
    before = snapshot(sub)
    free = move_to_free(sub, now=now)
    audit(account=sub.account, actor=None, action="downgrade.applied", obj=free, before=before,
          after=snapshot(free), now=now)
    return list(sub.account.properties.live().filter(status="paused"))


def renewal_reminder(pk, now) -> bool:
    with transaction.atomic():
        sub = _claim(pk, due_renewal_reminders(now))
        if sub is None:
            return False
        plan, cycle, extra, *_ = _next_terms(sub)
        amount = (plan.price_for(cycle) or ZERO) + _addon_price(plan, cycle, extra)
        sub.renewal_reminded_for = sub.current_period_end
        sub.save(update_fields=["renewal_reminded_for", "updated_at"])
        events.emit("renewal.upcoming", sub.account_id, now=now, subscription_id=sub.pk, plan=plan.code,
                    amount=str(amount), renews_at=sub.current_period_end.isoformat())
        return True


def _next_terms(sub):
    """The next period's plan, cycle, extra properties and bounds (REN-2, DWN-2, ADD-2, ADD-3)."""
    plan = sub.scheduled_plan or sub.plan
    cycle = sub.scheduled_cycle or sub.cycle
    extra = sub.extra_properties if sub.scheduled_extra_properties is None else sub.scheduled_extra_properties
    if plan.extra_property_monthly is None:
        extra = 0
    if cycle != sub.cycle or sub.anchor_at is None:
        anchor, index = sub.current_period_end, 0
    else:
        anchor, index = sub.anchor_at, sub.period_index + 1
    start, end = period_bounds(anchor, cycle, index)
    return plan, cycle, extra, anchor, index, start, end


def renew(pk, now) -> bool:
    """REN-1: the renewal invoice for the next period, charged 24 hours before the period ends."""
    with transaction.atomic():
        sub = _claim(pk, due_renewals(now))
        if sub is None:
            return False
        plan, cycle, extra, _anchor, _index, start, end = _next_terms(sub)
        key = renewal_key(sub, start)
        Subscription.objects.filter(pk=sub.pk).update(renewal_invoiced_for=F("current_period_end"))
        if Invoice.objects.filter(dedupe_key=key).exists():
            return False
        payment = _issue_and_begin(sub, InvoiceKind.RENEWAL, renewal_lines(plan, cycle, extra, start, end),
                                   (start, end), key, now)
    _send(payment, now)
    return True


def renewal_key(sub, start) -> str:
    return f"renewal:{sub.pk}:{start.isoformat()}"


def renewal_lines(plan, cycle, extra, start, end) -> list[ledger.Line]:
    """The renewal invoice's lines: the plan for the period, and the extra properties (ADD-2)."""
    price = plan.price_for(cycle)
    currency = plan.currency
    lines = [ledger.Line(f"{plan.name} ({cycle}), {start:%Y-%m-%d} to {end:%Y-%m-%d}", price,
                         f"{'monthly' if cycle == Cycle.MONTHLY else 'yearly'} price "
                         f"{format_money(price, currency)}")]
    if extra:
        unit = plan.extra_property_monthly * (12 if cycle == Cycle.YEARLY else 1)
        lines.append(ledger.Line(f"{extra} extra properties, {start:%Y-%m-%d} to {end:%Y-%m-%d}",
                                 _addon_price(plan, cycle, extra),
                                 f"{extra} × {format_money(unit, currency)}",
                                 quantity=Decimal(extra), unit_price=unit))
    return lines


def _issue_and_begin(sub, kind, lines, period, key, now):
    """An issued invoice (numbered, INV-1) and its first payment attempt, inside the claim."""
    try:
        with transaction.atomic():
            invoice = ledger.invoice_create(account=sub.account, subscription=sub, kind=kind, lines=lines,
                                            currency=sub.plan.currency, now=now, period_start=period[0],
                                            period_end=period[1], dedupe_key=key)
    except IntegrityError:
        return None  # REN-3: someone else created this invoice first
    ledger.invoice_issue(invoice, now=now)
    audit(account=sub.account, actor=None, action="invoice.issued", obj=invoice,
          after={"number": invoice.number, "kind": kind, "total": str(invoice.total)}, now=now)
    if invoice.status == InvoiceStatus.PAID:  # covered by credit (INV-5)
        _collected(invoice, None, sub, now)
        return None
    method = ledger.default_payment_method(sub.account)
    if method is None:
        _failed(invoice, sub, "No payment method on file.", now, emit=True)
        return None
    return ledger.payment_begin(invoice, method, now=now)


def _send(payment, now) -> None:
    if payment is None:
        return
    result = ledger.payment_send(payment)
    if result is not None:
        payment_settle(payment, result, now=now)


def rollover(pk, now) -> bool:
    """At the period end: cancellations and downgrades take effect, the next period starts."""
    with transaction.atomic():
        sub = _claim(pk, due_rollovers(now))
        if sub is None:
            return False
        account = sub.account
        before = snapshot(sub)
        if sub.cancel_at_period_end:  # CAN-2: the subscription ends; the account moves to Free
            free = move_to_free(sub, now=now)
            paused = list(account.properties.live().filter(status="paused").values_list("name", flat=True))
            audit(account=account, actor=None, action="cancellation.effective", obj=sub, before=before,
                  after=snapshot(free), now=now)
            events.emit("cancellation.effective", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                        paused_properties=paused)
            return True
        if sub.scheduled_plan_id and sub.scheduled_plan.is_free:  # DWN-1 to Free
            from_plan = sub.plan.code
            paused = [p.name for p in _to_free(sub, now)]
            events.emit("downgrade.applied", account.pk, now=now, subscription_id=sub.pk, from_plan=from_plan,
                        to_plan="free", paused_properties=paused)
            return True
        plan, cycle, extra, anchor, index, start, end = _next_terms(sub)
        invoice = Invoice.objects.filter(dedupe_key=renewal_key(sub, start)).first()
        if invoice is None or invoice.status == InvoiceStatus.VOID:
            return False  # the renewal step has not run for it yet; next run
        from_plan = sub.plan
        sub.plan, sub.cycle, sub.anchor_at, sub.period_index = plan, cycle, anchor, index
        sub.current_period_start, sub.current_period_end = start, end
        sub.current_price = plan.price_for(cycle)
        sub.extra_properties, sub.scheduled_extra_properties = extra, None
        sub.scheduled_plan, sub.scheduled_cycle = None, ""
        sub.save()
        paused = pause_excess(account, _limit(plan, extra), now=now)  # DWN-3 at effect time: pause, never delete
        audit(account=account, actor=None, action="period.started", obj=sub, before=before, after=snapshot(sub),
              now=now)
        if from_plan.pk != plan.pk or before["cycle"] != cycle:
            events.emit("downgrade.applied", account.pk, now=now, subscription_id=sub.pk, from_plan=from_plan.code,
                        to_plan=plan.code, paused_properties=[p.name for p in paused])
        return True


def retry(pk, now) -> bool:
    """DUN-2: retry the open invoices of a past-due subscription."""
    payments = []
    with transaction.atomic():
        sub = _claim(pk, due_retries(now))
        if sub is None:
            return False
        sub.next_retry_at = None  # claimed: the outcome sets the next one
        sub.save(update_fields=["next_retry_at", "updated_at"])
        method = ledger.default_payment_method(sub.account)
        for invoice in _open_invoices(sub.account):
            if method is None:
                _failed(invoice, sub, "No payment method on file.", now, emit=True)
                break
            payments.append(ledger.payment_begin(invoice, method, now=now))
    for payment in payments:
        _send(payment, now)
    return True


def _open_invoices(account):
    return list(Invoice.objects.select_for_update().filter(account=account, status=InvoiceStatus.OPEN)
                .exclude(payments__status=PaymentStatus.UNKNOWN).order_by("issued_at", "id"))


# --- outcomes of collection (called by billing.payment_settle) -----------------------------------


def collection_settled(invoice, payment, sub, *, now) -> None:
    if payment.status == PaymentStatus.SUCCEEDED:
        invoice.refresh_from_db()
        _collected(invoice, payment, sub, now)
    else:
        _failed(invoice, sub, payment.decline_message or "Your card was declined.", now,
                emit=payment.decline_code != "not_sent", payment=payment)


def _collected(invoice, payment, sub, now) -> None:
    account = invoice.account
    if sub is not None and sub.status == Status.PAST_DUE and not Invoice.objects.filter(
        account=account, status=InvoiceStatus.OPEN
    ).exists():
        before = snapshot(sub)
        sub.status, sub.past_due_since, sub.retry_count, sub.next_retry_at = Status.ACTIVE, None, 0, None
        sub.save()
        audit(account=account, actor=None, action="subscription.paid_up", obj=sub, before=before,
              after=snapshot(sub), now=now)
    if invoice.kind == InvoiceKind.TRIAL_CONVERSION:
        events.emit("trial.converted", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    invoice_id=invoice.pk, amount=str(invoice.total))
    elif payment is not None:
        events.emit("payment.succeeded", account.pk, now=now, invoice_id=invoice.pk, payment_id=payment.pk,
                    amount=str(payment.amount))


def _failed(invoice, sub, message, now, *, emit, payment=None) -> None:
    """DUN-1..3: the invoice stays open; past due; retries 1, 3, 5, 7 days after the first failure;
    suspension when the last one fails."""
    if sub is None:
        return
    sub = Subscription.objects.select_for_update(of=("self",)).select_related("plan", "account").get(pk=sub.pk)
    before = snapshot(sub)
    days = settings.BILLING_RETRY_DAYS
    if not emit:  # the gateway never saw the attempt: try again on the next run, no e-mail
        sub.next_retry_at = now
        if sub.status == Status.ACTIVE:
            sub.status, sub.past_due_since = Status.PAST_DUE, now
        sub.save()
        return
    if sub.status != Status.PAST_DUE or sub.past_due_since is None:
        sub.status, sub.past_due_since, sub.retry_count = Status.PAST_DUE, now, 0
    else:
        sub.retry_count += 1
    suspend = sub.retry_count >= len(days)
    sub.next_retry_at = None if suspend else sub.past_due_since + timedelta(days=days[sub.retry_count])
    if suspend:
        sub.status = Status.SUSPENDED
    sub.save()
    audit(account=sub.account, actor=None, action="payment.failed", obj=invoice, before=before,
          after={**snapshot(sub), "decline": message}, now=now)
    events.emit("payment.failed", sub.account_id, now=now, invoice_id=invoice.pk,
                payment_id=payment.pk if payment else None, amount=str(invoice.amount_due),
                decline_message=message, next_retry_at=_iso(sub.next_retry_at))
    if suspend:
        _suspend(sub.account, SuspensionReason.NON_PAYMENT,
                 f"The last payment retry for invoice {invoice.number} failed: {message}", actor=None, now=now)


def _iso(value):
    return value.isoformat() if value else None


def void_open_renewals(sub, *, now) -> list[Invoice]:
    voided = []
    for invoice in Invoice.objects.select_for_update().filter(
        subscription=sub, status=InvoiceStatus.OPEN, kind__in=[InvoiceKind.RENEWAL, InvoiceKind.TRIAL_CONVERSION]
    ):
        ledger.invoice_void(invoice, now=now)
        audit(account=sub.account, actor=None, action="invoice.voided", obj=invoice,
              before={"status": "open"}, after={"status": "void"}, now=now)
        voided.append(invoice)
    return voided


def collect_after_new_payment_method(account, *, actor, now) -> None:
    """DUN-4: past due → retry the open invoices at once. DUN-3: suspended for non-payment → void
    the open renewal and charge a full new period from today; success reactivates."""
    from .billing import PaymentDeclined

    sub = Subscription.objects.filter(account=account).order_by("-id").select_related("plan").first()
    if sub is None:
        return
    if sub.status == Status.PAST_DUE:
        payments = []
        with transaction.atomic():
            method = ledger.default_payment_method(account)
            for invoice in _open_invoices(account):
                payments.append(ledger.payment_begin(invoice, method, now=now))
        for payment in payments:
            result = ledger.payment_send(payment)
            if result is None:
                continue
            payment_settle(payment, result, actor=actor, now=now)
            payment.refresh_from_db()
            if payment.status == PaymentStatus.FAILED:
                raise PaymentDeclined(f"Your new card was saved, but the retry failed: {payment.decline_message}",
                                      payment.decline_code)
        return
    if sub.status == Status.SUSPENDED:
        with transaction.atomic():
            sub = Subscription.objects.select_for_update(of=("self",)).select_related("plan", "account").get(pk=sub.pk)
            void_open_renewals(sub, now=now)
            plan, cycle = sub.plan, sub.cycle
            start, end = period_bounds(now, cycle, 0)
            price = plan.price_for(cycle)
            lines = [ledger.Line(f"{plan.name} ({cycle}), {start:%Y-%m-%d} to {end:%Y-%m-%d}", price,
                                 "a full new period from the payment date (reactivation)")]
            if sub.extra_properties and plan.extra_property_monthly is not None:
                lines.append(ledger.Line(f"{sub.extra_properties} extra properties",
                                         _addon_price(plan, cycle, sub.extra_properties)))
            step = _charge_begin(sub, kind=InvoiceKind.REACTIVATION, lines=lines,
                                 pending={"action": "reactivate", "start": start.isoformat()},
                                 currency=plan.currency, period=(start, end), actor=actor, now=now)
        _charge_finish(step, actor=actor, now=now)


def reactivate_after_payment(sub, invoice, *, actor, now) -> None:
    change = invoice.pending_change
    before = snapshot(sub)
    start = datetime.fromisoformat(change["start"])
    sub.anchor_at, sub.period_index = start, 0
    sub.current_period_start, sub.current_period_end = period_bounds(start, sub.cycle, 0)
    sub.current_price = sub.plan.price_for(sub.cycle)
    sub.status, sub.past_due_since, sub.retry_count, sub.next_retry_at = Status.ACTIVE, None, 0, None
    sub.save()
    audit(account=sub.account, actor=actor, action="subscription.reactivated", obj=sub, before=before,
          after=snapshot(sub), now=now)
    account = Account.objects.get(pk=sub.account_id)
    if account.status == AccountStatus.SUSPENDED and account.suspension_reason == SuspensionReason.NON_PAYMENT:
        _lift(account, f"Paid invoice {invoice.number}", actor=actor, now=now)
    # The receipt (payment.succeeded) is announced by billing.payment_settle, once.


# --- overage (USE-3) ----------------------------------------------------------------------------------


def previous_month(now) -> date:
    first = now.date().replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


LATE_USAGE_MONTHS = 2  # usage events are accepted 35 days late: a month grows until early in the month after next


def overage_months(month: date) -> list[date]:
    """The months the overage invoice made for `month` covers: `month` itself, and the late usage of
    the months before that may still have grown since their own invoice."""
    return [pricing.add_months(month, -back) for back in range(LATE_USAGE_MONTHS, -1, -1)]


def overage_run(now) -> RunReport:
    """On the 1st (and after, until done): one overage invoice per account for the previous month,
    with the sessions of earlier months reported after their invoice."""
    report = RunReport(now=now)
    month = previous_month(now)
    for account_id in overage_candidates(month):
        try:
            if overage_invoice(account_id, month, now):
                report.add("overage")
        except Exception as exc:
            log.exception("overage failed for account %s", account_id)
            report.failures.append(("overage", account_id, f"{type(exc).__name__}: {exc}"))
    return report


def overage_owed(month: date):
    """Usage rows with sessions over what was invoiced (or, if nothing was, over the quota) in
    `month` or in the months before it that may still grow, of accounts with no overage invoice
    made for `month` yet: a cheap query, so that the run can look every 15 minutes."""
    invoiced = Invoice.objects.filter(kind=InvoiceKind.OVERAGE, dedupe_key__endswith=f":{month:%Y-%m}")
    return (UsageMonth.objects.filter(month__in=overage_months(month))
            .filter(sessions__gt=Coalesce("sessions_billed", "sessions_included"))
            .exclude(account_id__in=invoiced.values("account_id")))


def overage_candidates(month: date) -> list[int]:
    return sorted(set(overage_owed(month).values_list("account_id", flat=True)))


@dataclass(frozen=True)
class OverageTerms:
    subscription: Subscription
    lines: list  # ledger.Line, one per month owed
    counted: dict  # UsageMonth id -> the sessions these lines bill it for


def overage_terms(account, month: date) -> OverageTerms | None:
    """What the overage invoice made for `month` bills, or None if nothing is owed. The price is
    the current plan's (a plan without overage price bills none)."""
    sub = Subscription.objects.filter(account=account).order_by("-id").select_related("plan").first()
    if sub is None:
        return None
    plan = sub.plan
    if plan.limit_sessions is None or plan.overage_per_1000 is None:
        return None
    lines, counted = [], {}
    for usage in UsageMonth.objects.filter(account=account, month__in=overage_months(month)).order_by("month"):
        included = usage.sessions_included if usage.sessions_included is not None else plan.limit_sessions
        billed = max(usage.sessions_billed or 0, included)
        if usage.sessions <= billed:
            continue
        start = datetime(usage.month.year, usage.month.month, 1, tzinfo=UTC)
        period = (start, pricing.add_months(start, 1))
        if usage.sessions_billed is None and usage.month == month:
            line = pricing.overage_line(usage.sessions, included, plan.overage_per_1000, plan.currency)
            label = f"Overage {usage.month:%B %Y}"
        else:
            line = pricing.late_overage_line(usage.sessions, billed, included, plan.overage_per_1000, plan.currency)
            label = f"Late usage {usage.month:%B %Y}"
        if line.amount > 0:
            lines.append(ledger.Line(f"{label}: {line.description}", line.amount, line.computation,
                                     period_start=period[0], period_end=period[1]))
            counted[usage.pk] = usage.sessions
    return OverageTerms(sub, lines, counted) if lines else None


def overage_invoice(account_id, month: date, now) -> bool:
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account_id)
        key = f"overage:{account.pk}:{month:%Y-%m}"
        if Invoice.objects.filter(dedupe_key=key).exists():
            return False
        terms = overage_terms(account, month)
        if terms is None:
            return False
        period = (min(line.period_start for line in terms.lines), max(line.period_end for line in terms.lines))
        payment = _issue_and_begin(terms.subscription, InvoiceKind.OVERAGE, terms.lines, period, key, now)
        for usage_id, sessions in terms.counted.items():  # the counts read, not the rows' current ones
            UsageMonth.objects.filter(pk=usage_id).update(sessions_billed=sessions)
    _send(payment, now)
    return True


# --- dry run ----------------------------------------------------------------------------------------


def _plan(now, report: RunReport) -> RunReport:
    for sub in due_trials(now).select_related("plan", "account"):
        report.add("trials")
        if sub.status == Status.TRIALING:
            price = sub.plan.price_for(sub.cycle) or ZERO
            report.planned.append(f"convert trial of {sub.account} to {sub.plan.name}: charge "
                                  f"{format_money(price, sub.plan.currency)}")
        else:
            report.planned.append(f"move {sub.account} (cancelled trial) to Free")
    for sub in due_renewals(now).select_related("plan", "account", "scheduled_plan"):
        plan, cycle, extra, *_rest, start, end = _next_terms(sub)
        if Invoice.objects.filter(dedupe_key=renewal_key(sub, start)).exists():
            continue
        report.add("renewals")
        amount = (plan.price_for(cycle) or ZERO) + _addon_price(plan, cycle, extra)
        report.planned.append(f"renew {sub.account} on {plan.name} ({cycle}) {start:%Y-%m-%d} to {end:%Y-%m-%d}: "
                              f"charge {format_money(amount, plan.currency)}")
    for sub in due_rollovers(now).select_related("plan", "account", "scheduled_plan"):
        report.add("rollovers")
        what = ("end (cancelled) and move to Free" if sub.cancel_at_period_end else
                f"start the next period on {(sub.scheduled_plan or sub.plan).name}")
        report.planned.append(f"{sub.account}: {what}")
    for sub in due_retries(now).select_related("plan", "account"):
        report.add("retries")
        owed = sum((i.amount_due for i in Invoice.objects.filter(account=sub.account, status=InvoiceStatus.OPEN)),
                   ZERO)
        report.planned.append(f"retry {sub.account}: {format_money(owed, sub.plan.currency)} "
                              f"(attempt {sub.retry_count + 2})")
    month = previous_month(now)
    for account in Account.objects.filter(pk__in=overage_candidates(month)).order_by("pk"):
        terms = overage_terms(account, month)
        if terms:
            report.add("overage")
            report.planned.append(f"invoice overage to {account} for {month:%B %Y}: "
                                  + "; ".join(line.computation for line in terms.lines))
    report.add("settle", Payment.objects.filter(status=PaymentStatus.UNKNOWN).count())
    return report


HANDLERS = {
    "trial_reminders": trial_reminder,
    "trials": trial_end,
    "renewal_reminders": renewal_reminder,
    "renewals": renew,
    "rollovers": rollover,
    "retries": retry,
}
