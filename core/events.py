"""Domain events and their outbox: the only way an announcement leaves a transaction.

The engine says what happened; other parts (notifications, the entitlement cache, the month's
quota) listen. `emit()` writes the event as a row (`PendingEvent`) in the caller's transaction,
and after the commit a django-q2 task (`drain`, inline when q2 runs sync) delivers the rows to
the subscribers and deletes them. So a rolled-back change announces nothing, a crash between the
commit and the delivery loses nothing (the e-mail retry schedule drains what is left), and a
failing subscriber is logged and never undoes or blocks the billing action (NOT-3).

Every event carries `account_id` and a `data` dict of JSON-safe values (ids, amounts as strings,
datetimes as ISO-8601 strings). The keys per kind are listed in KINDS.
"""

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from . import sql
from .broker import task_enqueue
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
    "downgrade.applied": ("subscription_id", "from_plan", "to_plan", "paused_properties"),  # DWN-3
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
    occurred_at: datetime = field(default_factory=timezone.now)


Handler = Callable[[Event], None]
_subscribers: dict[str, list[Handler]] = defaultdict(list)


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
    """Announce one event: a row in the caller's transaction, delivered after the commit."""
    event = Event(kind, account_id, data, now or timezone.now())
    _write(kind, [(account_id, data)], event.occurred_at)
    return event


def emit_many(kind: str, items: list[tuple[int, dict]], *, now: datetime) -> None:
    """Announce many events of one kind (account id, data) in one insert: the billing run's
    thousands of receipts cost it one statement, not thousands of renders."""
    _write(kind, items, now)


def _write(kind: str, items: list[tuple[int, dict]], now: datetime) -> None:
    if kind not in KINDS:
        raise ValueError(f"Unknown event kind {kind!r}")
    if not items:
        return
    ids = []
    for chunk in sql.chunks(items, 2):  # one insert, no model instance per event
        source, params = sql.rows_from({"account_id": "id", "data": "json"}, chunk)
        ids += [row[0] for row in sql.run(
            f"INSERT INTO {PendingEvent._meta.db_table} (kind, account_id, data, occurred_at) "
            f"SELECT %s, account_id, data, %s FROM {source} RETURNING id", [kind, now, *params])]
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
                dispatch(Event(row.kind, row.account_id, row.data, row.occurred_at))
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
