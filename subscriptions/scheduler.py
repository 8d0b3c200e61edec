"""What runs while nobody is looking: `run(now)` does everything due at `now`.

Steps, in order: settle unknown payments (PAY-2), trial reminders (TRI-7), trial conversions
(TRI-3), yearly renewal reminders (REN-5), renewals 24 hours before the period end (REN-1, REN-2,
DWN-2), period roll-overs with scheduled downgrades and cancellations (DWN-3, CAN-2, ADD-2,
ADD-3), dunning retries and suspension (DUN-2, DUN-3), and the previous month's overage invoices
(USE-3).

The work itself lives below: renewals and roll-overs in `renewals`, dunning retries in `dunning`,
overage in `overage`, money in `charges`, state in `lifecycle`; what is due in `selectors`.

Exactly once (REN-3): every item is claimed under a row lock (`SELECT … FOR UPDATE SKIP LOCKED` on
PostgreSQL, so several workers share the work; one run at a time under a lock row on SQLite),
its due condition is re-checked after the claim, the invoice carries a unique `dedupe_key`
(renewal:<subscription>:<period start>), and every charge has an idempotency key: an interrupted
run leaves an `unknown` payment that the next run settles with the gateway before anything else.
"""

import contextlib
import gc
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from accounts.audit import audit
from accounts.models import Account, SuspensionReason
from core import events
from core.broker import task_enqueue
from core.clock import clock
from core.money import ZERO, format_money
from invoices.models import Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus

from . import charges, dunning, lifecycle, overage, renewals, selectors, terms
from .locks import subscription_claim
from .models import BillingRunLock, Status
from .statement import credit_balance

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


# --- the run --------------------------------------------------------------------------------------


def run(now: datetime | None = None, *, dry_run: bool = False, fan_out: bool | None = None) -> RunReport:
    """Everything due at `now`. In-process by default; with a django-q2 cluster (`fan_out`), the
    due subscriptions are handed to workers in chunks."""
    now = clock(now)
    report = RunReport(now=now, dry_run=dry_run)
    if dry_run:
        return plan_run(now, report)
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
        report.add("settle", len(charges.payments_settle_unknown(now=now)))
        for step, selector in SELECTORS:
            ids = list(selector(now).order_by("pk").values_list("pk", flat=True))
            if fan_out and len(ids) > settings.BILLING_RUN_CHUNK_SIZE:
                _fan_out(step, ids, now, report)
            else:
                report.merge(run_chunk(step, ids, now))
        overage.overage_run(now, report)
    finally:
        if use_lock:
            _release(holder)
    return report


SELECTORS = (("trial_reminders", selectors.due_trial_reminders), ("trials", selectors.due_trials),
             ("renewal_reminders", selectors.due_renewal_reminders), ("renewals", selectors.due_renewals),
             ("rollovers", selectors.due_rollovers), ("retries", selectors.due_retries))


def anything_due(now) -> bool:
    grace = timedelta(seconds=settings.BILLING_SETTLE_GRACE_SECONDS)
    subscriptions = selectors.due_trial_reminders(now)
    for _step, selector in SELECTORS[1:]:
        subscriptions = subscriptions | selector(now)
    return (subscriptions.exists()
            or Payment.objects.filter(status=PaymentStatus.UNKNOWN, attempted_at__lte=now - grace).exists()
            or overage.overage_owed(overage.previous_month(now)).exists())


def run_chunk(step: str, ids: list[int], now, token: str = "") -> RunReport:
    """Process one step for these subscriptions; safe to run on several workers at once. `token`:
    a fanned-out chunk's name, claimed first (`chunk_claim`): a chunk the run took back is skipped."""
    if isinstance(now, str):
        now = datetime.fromisoformat(now)
    report = RunReport(now=now)
    if token and not chunk_claim(token, "worker"):
        report.skipped = CHUNK_TAKEN_BACK
        return report
    if step in renewals.CHUNK_HANDLERS:  # set-wise: a few statements per chunk
        with _collector_skips_the_process():
            renewals.CHUNK_HANDLERS[step](ids, now, report)
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


@contextlib.contextmanager
def _collector_skips_the_process():
    """During a set-wise chunk, the objects the process already held (Django's, the modules') are
    left out of the garbage collector's full passes: each batch of 500 keeps enough objects alive
    to set off such a pass, and scanning the whole process took about 85 ms a pass, 14 % of a
    worker's CPU over 10,000 renewals (issue 17). They are put back after the chunk. Nothing is
    done when something else froze objects already (a pre-forking server): not ours to thaw."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


CHUNK_TAKEN_BACK = "taken back by the run: no worker had started it"
CHUNK_POLL_SECONDS = 0.5


def chunk_claim(token: str, by: str) -> bool:
    """Who runs a fanned-out chunk: the first of a worker starting it and the run taking it back
    (an atomic add in the shared cache, which a fan-out has: Redis). With the cache down both may
    run it, which is harmless: every item is claimed with SKIP LOCKED and re-checked (REN-3)."""
    from django.core.cache import cache

    try:
        return cache.add(f"billing-chunk:{token}", by, timeout=2 * settings.BILLING_RUN_WAIT_MS // 1000 + 60)
    except Exception as exc:
        log.warning("billing run: chunk %s claimed without the cache (%s); its rows' claims decide",
                    token, type(exc).__name__)
        return True


def _fan_out(step, ids, now, report) -> None:
    size = settings.BILLING_RUN_CHUNK_SIZE
    group = f"billing-{step}-{now.isoformat()}-{os.getpid()}"
    queued = {}
    for start in range(0, len(ids), size):
        chunk = ids[start:start + size]
        token = f"{group}:{start}"
        if task_enqueue("subscriptions.scheduler.run_chunk", step, chunk, now.isoformat(), token, group=group):
            queued[token] = chunk
        else:  # the broker is down: this process runs what the workers cannot be given
            report.merge(run_chunk(step, chunk, now))
    if queued:
        _chunks_wait(step, group, queued, now, report)


def _chunks_wait(step, group, queued: dict, now, report) -> None:
    """The workers' reports, waited for up to BILLING_RUN_WAIT_MS. A chunk no worker has started
    within BILLING_RUN_CHUNK_START_MS is taken back and run here: a broker that lost its queue (Redis
    restarted without saving) costs the run that grace, not the whole wait with nothing renewed."""
    from django_q.tasks import result_group

    started = time.monotonic()
    expected, unchecked = len(queued), dict(queued)
    results = []
    while True:
        results = [r for r in result_group(group, failures=True) or []
                   if not (isinstance(r, RunReport) and r.skipped == CHUNK_TAKEN_BACK)]
        waited_ms = (time.monotonic() - started) * 1000
        if len(results) >= expected or waited_ms >= settings.BILLING_RUN_WAIT_MS:
            break
        if unchecked and waited_ms >= settings.BILLING_RUN_CHUNK_START_MS:
            for token, chunk in unchecked.items():
                if chunk_claim(token, "run"):  # no worker started it: lost with the queue, or not reached yet
                    log.warning("billing run: %s chunk %s not started by a worker within %s ms; run here",
                                step, token, settings.BILLING_RUN_CHUNK_START_MS)
                    report.merge(run_chunk(step, chunk, now))
                    expected -= 1
            unchecked = {}
            continue
        time.sleep(CHUNK_POLL_SECONDS)
    for result in results:
        if isinstance(result, RunReport):
            report.merge(result)
    if len(results) < expected:
        report.failures.append((step, "-", f"{expected - len(results)} chunk(s) still running on workers"))


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
    real_now = clock()  # the lock expires on the wall clock, whatever `now` a run is given
    BillingRunLock.objects.get_or_create(name="billing_run")
    return bool(BillingRunLock.objects.filter(name="billing_run").filter(
        Q(expires_at__isnull=True) | Q(expires_at__lt=real_now)
    ).update(holder=holder, expires_at=real_now + timedelta(minutes=30)))


def _release(holder: str) -> None:
    BillingRunLock.objects.filter(name="billing_run", holder=holder).update(holder="", expires_at=None)


# --- step handlers: each returns True when it did something ---------------------------------------


def trial_reminder(pk, now) -> bool:
    """TRI-7: three days before a trial ends, the owner is told what will be charged."""
    with transaction.atomic():
        sub = subscription_claim(pk, selectors.due_trial_reminders(now))
        if sub is None:
            return False
        sub.trial_reminded_at = now
        sub.save(update_fields=["trial_reminded_at", "updated_at"])
        events.emit("trial.ending_soon", sub.account_id, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                    trial_end=sub.trial_end.isoformat(), amount=str(terms.period_price(sub.plan, sub.cycle)))
        return True


def trial_end(pk, now) -> bool:
    """TRI-3: charge the first period at the trial end; it starts then. TRI-5: a cancelled trial
    past its end date moves to Free."""
    with transaction.atomic():
        sub = subscription_claim(pk, selectors.due_trials(now))
        if sub is None:
            return False
        account = sub.account
        if sub.status == Status.CANCELED:  # cancelled trial, end date passed: Free, suspension lifted
            before = terms.snapshot(sub)
            lifecycle.subscription_move_to_free(sub, now=now)
            lifecycle.account_lift_if(account, SuspensionReason.CANCELLED_TRIAL,
                                      "Cancelled trial reached its end date; moved to Free", actor=None, now=now,
                                      notify=False)
            audit(account=account, actor=None, action="trial.expired", obj=sub, before=before,
                  after=terms.snapshot(sub), now=now)
            return True
        if sub.scheduled_plan_id and sub.scheduled_plan.is_free:  # a downgrade to Free during the trial
            renewals.to_free(sub, now)
            return True
        first = terms.trial_terms(sub)
        lifecycle.trial_convert(sub, now=now)
        payment = charges.invoice_issue_and_begin(sub, InvoiceKind.TRIAL_CONVERSION, first.lines(),
                                                  (first.start, first.end), f"trial:{sub.pk}", now)
    charges.payment_send_and_settle(payment, now)
    return True


def renewal_reminder(pk, now) -> bool:
    """REN-5: seven days before a yearly renewal, the owner is told its date and amount."""
    with transaction.atomic():
        sub = subscription_claim(pk, selectors.due_renewal_reminders(now))
        if sub is None:
            return False
        upcoming = terms.next_terms(sub)
        sub.renewal_reminded_for = sub.current_period_end
        sub.save(update_fields=["renewal_reminded_for", "updated_at"])
        events.emit("renewal.upcoming", sub.account_id, now=now, subscription_id=sub.pk, plan=upcoming.plan.code,
                    amount=str(upcoming.amount), renews_at=sub.current_period_end.isoformat())
        return True


HANDLERS = {
    "trial_reminders": trial_reminder,
    "trials": trial_end,
    "renewal_reminders": renewal_reminder,
    "renewals": renewals.renew,
    "rollovers": renewals.rollover,
    "retries": dunning.retry,
}


# --- dry run ----------------------------------------------------------------------------------------


def _charge_words(charge: terms.NextCharge, account) -> str:
    """What the run will charge, from the computation the charge itself uses (PAY-4): the period's
    lines and tax, less the account's credit; and whether the account can be charged at all."""
    money = format_money(charge.total, charge.currency)
    if charge.credit:
        gross = format_money(charge.subtotal + charge.tax, charge.currency)
        money += f" ({gross} less {format_money(charge.credit, charge.currency)} of credit)"
    if charge.total > 0 and not selectors.can_be_charged(account):
        money += " -- NO CARD ON FILE: the charge will fail and dunning starts (DUN-1)"
    return money


def plan_run(now, report: RunReport) -> RunReport:
    """What a run at `now` would do, with the amounts it will charge; changes nothing."""
    for sub in selectors.due_trials(now).select_related("plan", "account"):
        report.add("trials")
        if sub.status == Status.TRIALING:
            charge = terms.next_charge_of(terms.trial_terms(sub), kind="trial_conversion", at=sub.trial_end,
                                          credit=credit_balance(sub.account, sub.plan.currency))
            report.planned.append(f"convert trial of {sub.account} to {sub.plan.name}: charge "
                                  f"{_charge_words(charge, sub.account)}")
        else:
            report.planned.append(f"move {sub.account} (cancelled trial) to Free")
    for sub in selectors.due_renewals(now).select_related("plan", "account", "scheduled_plan"):
        upcoming = terms.next_terms(sub)
        if Invoice.objects.filter(dedupe_key=terms.renewal_key(sub, upcoming.start)).exists():
            continue
        report.add("renewals")
        charge = terms.next_charge_of(upcoming, credit=credit_balance(sub.account, upcoming.plan.currency))
        report.planned.append(f"renew {sub.account} on {upcoming.plan.name} ({upcoming.cycle}) "
                              f"{terms.span(upcoming.start, upcoming.end, upcoming.zone)}: "
                              f"charge {_charge_words(charge, sub.account)}")
    for sub in selectors.due_rollovers(now).select_related("plan", "account", "scheduled_plan"):
        report.add("rollovers")
        what = ("end (cancelled) and move to Free" if terms.cancellation_due(sub) else
                f"start the next period on {(sub.scheduled_plan or sub.plan).name}")
        report.planned.append(f"{sub.account}: {what}")
    for sub in selectors.due_retries(now).select_related("plan", "account"):
        report.add("retries")
        owed = sum((i.amount_due for i in Invoice.objects.filter(account=sub.account, status=InvoiceStatus.OPEN)),
                   ZERO)
        flag = "" if selectors.can_be_charged(sub.account) else " -- NO CARD ON FILE: the retry will fail"
        report.planned.append(f"retry {sub.account}: {format_money(owed, sub.plan.currency)} "
                              f"(attempt {sub.retry_count + 2}){flag}")
    month = overage.previous_month(now)
    for account in Account.objects.filter(pk__in=overage.overage_candidates(month)).order_by("pk"):
        owed = overage.overage_terms(account, month)
        if owed:
            report.add("overage")
            flag = "" if selectors.can_be_charged(account) else " -- NO CARD ON FILE: the charge will fail"
            report.planned.append(f"invoice overage to {account} for {month:%B %Y}: "
                                  + "; ".join(line.computation for line in owed.lines) + flag)
    report.add("settle", Payment.objects.filter(status=PaymentStatus.UNKNOWN).count())
    return report
