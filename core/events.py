"""Domain events and their outbox: the only way an announcement leaves a transaction.

The engine says what happened; other parts (notifications, the entitlement cache, the month's
quota) listen. `emit()` writes the event as a row (`PendingEvent`) in the caller's transaction,
and after the commit a django-q2 task (`drain`, inline when q2 runs sync) delivers the rows to
the subscribers and deletes them. So a rolled-back change announces nothing, a crash between the
commit and the delivery loses nothing (the e-mail retry schedule drains what is left), and a
failing subscriber is logged and never undoes or blocks the billing action (NOT-3).

Every event carries `account_id` and a `data` dict of JSON-safe values (ids, amounts as strings,
datetimes as ISO-8601 strings). The keys per kind are listed in KINDS.

An event also carries `facts`: what its announcement states about the account at the moment it
happened (NOT-4), taken in the caller's transaction by the snapshot function a listener registers
(`snapshot_with`; notifications registers the e-mails' in its AppConfig.ready, core never imports
it). A delivery hours later reads the facts, never the account as it is then. A set-wise caller
(the billing run's receipts) hands the facts it already knows to `emit_many`, so the snapshot does
not work out thousands of statements inside the run's transaction.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from django.db import transaction

from . import sql
from .broker import task_enqueue
from .clock import clock
from .models import PendingEvent

log = logging.getLogger(__name__)

# kind -> the data keys it carries (besides account_id)
KINDS: dict[str, tuple[str, ...]] = {
    "trial.started": ("subscription_id", "plan", "trial_end"),
    "trial.ending_soon": ("subscription_id", "plan", "trial_end", "amount"),  # 3 days before (TRI-7)
    "trial.converted": ("subscription_id", "plan", "invoice_id", "amount"),  # with the receipt
    "trial.canceled": ("subscription_id", "plan", "trial_end"),  # TRI-4: account suspended
    "subscription.started": ("subscription_id", "plan", "cycle", "invoice_id", "amount"),  # REN-4
    "subscription.upgraded": ("subscription_id", "from_plan", "to_plan", "cycle", "invoice_id", "amount"),
    "subscription.trial_plan_changed": ("subscription_id", "from_plan", "to_plan", "trial_end"),  # TRI-6
    "downgrade.scheduled": ("subscription_id", "from_plan", "to_plan", "to_cycle", "effective_at"),
    # DWN-3; applied: absent at the period end (as scheduled), "now" (the owner, DWN-4 immediate) or
    # "now_by_staff" (DWN-4 from the admin)
    "downgrade.applied": ("subscription_id", "from_plan", "to_plan", "paused_properties", "applied"),
    "cancellation.scheduled": ("subscription_id", "plan", "effective_at"),
    "cancellation.effective": ("subscription_id", "plan", "paused_properties"),  # CAN-2
    "subscription.resumed": ("subscription_id", "plan", "what"),  # what: cancellation|downgrade|trial
    "add_on.changed": ("subscription_id", "quantity", "invoice_id", "amount", "effective_at"),
    "payment.succeeded": ("invoice_id", "payment_id", "amount"),  # receipt with the PDF (REN-5)
    "payment.failed": ("invoice_id", "payment_id", "amount", "decline_message", "next_retry_at"),  # DUN-1/2
    "account.suspended": ("reason", "note"),  # SUS-1, SUS-2
    "account.reactivated": ("previous_reason", "note"),
    "renewal.upcoming": ("subscription_id", "plan", "amount", "renews_at"),  # yearly, 7 days before (REN-5)
    "refund.decided": ("refund_request_id", "approved", "amount", "reason"),  # REF-5
    "restore.decided": ("restore_request_id", "approved", "days", "period_end", "reason"),  # UPG-3
    "credit_note.issued": ("credit_note_id", "amount", "reason"),
    "usage.alert": ("threshold", "month", "sessions", "sessions_included"),  # USE-6: 80 or 100
    "period.extended": ("subscription_id", "days", "period_end", "reason"),  # REF-4
}


@dataclass(frozen=True)
class Event:
    kind: str
    account_id: int
    data: dict = field(default_factory=dict)
    occurred_at: datetime = field(default_factory=clock)
    facts: dict = field(default_factory=dict)  # the account's state the announcement states (NOT-4)


Handler = Callable[[Event], None]
_subscribers: dict[str, list[Handler]] = defaultdict(list)

# Events (with the facts their caller already knows) -> each one's facts, JSON-safe. Called in the
# emitting transaction, so it reads the state the event's own change left.
Snapshot = Callable[[list[Event]], list[dict]]
_snapshots: list[Snapshot] = []


def snapshot_with(function: Snapshot) -> None:
    """Register the function that fixes an event's facts when it is emitted (NOT-4). Idempotent; with
    several, each one's facts are merged in registration order."""
    if function not in _snapshots:
        _snapshots.append(function)


def snapshot_without(function: Snapshot) -> None:
    if function in _snapshots:
        _snapshots.remove(function)


def snapshot(events: list[Event]) -> list[dict]:
    """The facts of `events` as the registered snapshot functions read them now (the caller's facts
    first, the functions' on top of them only where the caller gave none)."""
    facts = [dict(event.facts) for event in events]
    for function in _snapshots:
        for known, taken in zip(facts, function(events), strict=True):
            for key, value in taken.items():
                known.setdefault(key, value)
    return facts


def subscribe(kind: str, handler: Handler) -> None:
    """Register `handler` for `kind` ("*" for every kind). Idempotent."""
    if kind != "*" and kind not in KINDS:
        raise ValueError(f"Unknown event kind {kind!r}")
    if handler not in _subscribers[kind]:
        _subscribers[kind].append(handler)


def unsubscribe(kind: str, handler: Handler) -> None:
    if handler in _subscribers[kind]:
        _subscribers[kind].remove(handler)


def emit(kind: str, account_id: int, *, now: datetime | None = None, **data) -> Event:
    """Announce one event: a row in the caller's transaction, with its facts as they are now,
    delivered after the commit."""
    _check(kind)
    event = Event(kind, account_id, data, clock(now))
    event = replace(event, facts=snapshot([event])[0])
    _write(kind, [(account_id, data, event.facts)], event.occurred_at)
    return event


def emit_many(kind: str, items: list[tuple[int, dict]], *, now: datetime, facts: list[dict] | None = None) -> None:
    """Announce many events of one kind (account id, data) in one insert: the billing run's
    thousands of receipts cost it one statement, not thousands of renders. `facts`, one dict per
    item, are what the caller already knows of each event's facts (the snapshot adds the rest)."""
    _check(kind)
    known = facts if facts is not None else [{}] * len(items)
    events = [Event(kind, account_id, data, now, given) for (account_id, data), given in zip(items, known, strict=True)]
    _write(kind, [(event.account_id, event.data, taken) for event, taken in zip(events, snapshot(events), strict=True)],
           now)


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown event kind {kind!r}")


def _write(kind: str, items: list[tuple[int, dict, dict]], now: datetime) -> None:
    if not items:
        return
    ids = []
    for chunk in sql.chunks(items, 3):  # one insert, no model instance per event
        source, params = sql.rows_from({"account_id": "id", "data": "json", "facts": "json"}, chunk)
        ids += [row[0] for row in sql.run(
            f"INSERT INTO {PendingEvent._meta.db_table} (kind, account_id, data, facts, occurred_at) "
            f"SELECT %s, account_id, data, facts, %s FROM {source} RETURNING id", [kind, now, *params])]
    transaction.on_commit(lambda: deliver_soon(ids))


def dispatch(event: Event) -> None:
    """Call every subscriber, each in its own savepoint, so that a failing one undoes only its own
    writes and never the delivery of the others (NOT-3)."""
    for handler in [*_subscribers[event.kind], *_subscribers["*"]]:
        try:
            with transaction.atomic():
                handler(event)
        except Exception:  # NOT-3: a listener's failure never undoes a billing action
            log.exception("Event handler %r failed for %s", handler, event.kind)


def deliver_soon(ids: list[int] | None = None) -> None:
    """Hand the delivery of these rows (None: every pending row) to django-q2, inline when sync.
    Never raises. When the broker cannot take it, a transaction's few events (up to INLINE_MAX) are
    delivered here and now; the rest stay for the next `drain` (the e-mail retry schedule calls it
    every 10 minutes)."""
    if task_enqueue("core.events.deliver", ids, group="events"):
        return
    if ids is None or len(ids) > INLINE_MAX:
        log.warning("Outbox delivery not queued; the scheduled drain delivers %s events",
                    "the pending" if ids is None else len(ids))
        return
    try:
        deliver(ids, max_seconds=None)
    except Exception:  # NOT-3: the action has committed; the rows stay for the drain
        log.warning("Outbox delivery failed in process; the scheduled drain delivers it", exc_info=True)


INLINE_MAX = 50  # more than one request's events: a billing run's thousands wait for the drain

DRAIN_SECONDS = 20.0


def deliver(ids: list[int] | None = None, batch: int = 200, max_seconds: float | None = DRAIN_SECONDS) -> int:
    """Deliver the pending events `ids` (one transaction's announcements; None: all of them), oldest
    first, and delete them; returns how many. Safe on several workers at once: each claims its rows
    with SKIP LOCKED (PostgreSQL) and an event is deleted in the transaction that delivered it, so a
    row is delivered once whichever task reaches it first.

    After `max_seconds` (None: no limit) it stops between batches and queues another delivery for
    the rest, so that one task never holds a worker for the whole backlog of a large billing run:
    a cluster that is told to stop finishes within seconds, and q2's task timeout is never hit."""
    started = time.monotonic()
    delivered = 0
    offset = 0
    while True:
        rows_of = PendingEvent.objects.select_for_update(skip_locked=True).order_by("id")
        if ids is not None:
            rows_of = rows_of.filter(pk__in=ids[offset:offset + batch])
            offset += batch
        with transaction.atomic():
            rows = list(rows_of[:batch])
            for row in rows:
                dispatch(Event(row.kind, row.account_id, row.data, row.occurred_at, row.facts))
            PendingEvent.objects.filter(pk__in=[row.pk for row in rows]).delete()
        delivered += len(rows)
        if (ids is None and len(rows) < batch) or (ids is not None and offset >= len(ids)):
            return delivered
        if max_seconds is not None and time.monotonic() - started >= max_seconds:
            deliver_soon(None if ids is None else ids[offset:])
            return delivered


def drain(batch: int = 200, max_seconds: float | None = DRAIN_SECONDS) -> int:
    """Deliver every pending event (the scheduled drain: what a lost delivery task left behind)."""
    return deliver(None, batch, max_seconds)
