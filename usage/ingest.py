"""Usage metering: the ingest behind the usage API (USE-1, USE-3..6).

Ingest is built for throughput and for being run twice at once:

1. Every event is validated on its own; a bad event is rejected with a reason and the rest of
   the batch goes on (nothing is lost: the answer names each rejected event).
2. One query loads the batch's properties, one their accounts' current plans.
3. One statement inserts the new event ids, `ON CONFLICT (event_id) DO NOTHING RETURNING
   event_id`: only ids that this transaction inserted are counted (USE-1). A second batch with
   overlapping ids blocks on the unique index until the first commits, then skips them.
4. Counters are aggregated in memory per account-month and per property-day, the account-month
   rows are locked in (account, month) order (hard caps and alerts need the running total), then
   updated with F() expressions and one upsert for the days. All in one transaction.

The quota arithmetic (`accounts.months.month_included`, `usage.quota.hard_cap_room` and
`alert_thresholds_crossed`) is pure and has no ORM or clock; the overage's money is the engine's
(`subscriptions.pricing.overage_amount`).
"""

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import connection, transaction

from accounts.audit import audit
from accounts.models import Account, AccountStatus, Property, PropertyStatus, UsageDay, UsageEvent, UsageMonth
from accounts.months import month_included, month_label, month_start
from core import events
from core.clock import clock

from .entitlements import entitlement_invalidate
from .events import (
    MAX_BATCH_EVENTS,
    MAX_EVENT_AGE,
    STOP_DETAIL,
    BatchTooLarge,
    ParsedEvent,
    Reason,
    Rejection,
    event_parse,
)
from .quota import alert_thresholds_crossed, current_plans, hard_cap_room

log = logging.getLogger(__name__)


@dataclass
class IngestResult:
    accepted: int = 0  # new event ids stored: they will never be counted again (USE-1)
    counted: int = 0  # of those, counted against the month (the rest were over a hard cap)
    over_quota: int = 0  # accepted but not counted: beyond a hard-capped plan's quota (USE-4)
    duplicate: int = 0  # ids seen before, or twice in this batch: ignored
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def reject(self, rejection: Rejection) -> None:
        self.rejected += 1
        self.rejections.append(rejection)


@dataclass(frozen=True)
class _Target:
    """What the batch needs to know about a property and its account."""

    property_id: int
    account_id: int
    stop_reason: str | None
    plan_limit: int | None
    hard_capped: bool
    first_event_at: datetime | None
    usage_started_at: datetime | None


def usage_ingest(raw_events: list, *, now: datetime | None = None) -> IngestResult:
    """Record a batch of reported sessions (USE-1, USE-4, USE-5, USE-6). Safe to replay, safe to
    run concurrently with overlapping batches."""
    now = clock(now)
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise BatchTooLarge(
            f"A batch holds at most {MAX_BATCH_EVENTS:,} events; this one has {len(raw_events):,}. "
            "Split it and send each part: nothing from this batch was recorded."
        )
    result = IngestResult()
    parsed = _batch_parse(raw_events, now, result)
    if not parsed:
        return result
    targets = _targets({e.tracking_tag for e in parsed})
    storable = _storable(parsed, targets, result)
    result.rejections.sort(key=lambda r: r.index)
    if storable:
        with transaction.atomic():
            pg = connection.vendor == "postgresql"
            if pg:
                # Check the events' foreign keys as they are inserted, not at COMMIT while the
                # counter rows below are locked: concurrent batches wait less for each other.
                connection.cursor().execute("SET CONSTRAINTS ALL IMMEDIATE")
            inserted = _events_insert(storable, targets, now)
            new = [e for e in storable if e.id in inserted]
            result.duplicate += len(storable) - len(new)
            result.accepted = len(new)
            if new:
                result.counted = _count(new, targets, now)
                result.over_quota = result.accepted - result.counted
                _record_first_events(new, targets, now)
            if pg:  # the setting lasts to the end of the enclosing transaction: give the default back
                connection.cursor().execute("SET CONSTRAINTS ALL DEFERRED")
    return result




def _batch_parse(raw_events: list, now: datetime, result: IngestResult) -> list[ParsedEvent]:
    """The batch's valid events, each id once; the others counted in `result` as rejected or duplicate."""
    parsed: list[ParsedEvent] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_events):
        event = event_parse(index, raw, now)
        if isinstance(event, Rejection):
            result.reject(event)
        elif event.id in seen:
            result.duplicate += 1
        else:
            seen.add(event.id)
            parsed.append(event)
    return parsed


def _storable(parsed: list[ParsedEvent], targets: dict[str, "_Target"], result: IngestResult) -> list[ParsedEvent]:
    """The events whose property may track; the others rejected with the reason it stopped."""
    storable: list[ParsedEvent] = []
    refused: list[Rejection] = []
    for event in parsed:
        target = targets.get(event.tracking_tag)
        if target is None:
            result.reject(Rejection(event.index, event.id, Reason.UNKNOWN_TRACKING_TAG,
                                    "No property has this tracking tag."))
        elif target.stop_reason:
            refused.append(Rejection(event.index, event.id, target.stop_reason, STOP_DETAIL[target.stop_reason]))
        else:
            storable.append(event)
    if refused:
        # A replay of events accepted before the property stopped is a duplicate, not a rejection.
        known = set(UsageEvent.objects.filter(event_id__in=[r.id for r in refused]).values_list("event_id", flat=True))
        for rejection in refused:
            if rejection.id in known:
                result.duplicate += 1
            else:
                result.reject(rejection)
    return storable


def _targets(tags: set[str]) -> dict[str, _Target]:
    rows = list(
        Property.objects.filter(tracking_tag__in=tags).values_list(
            "id", "tracking_tag", "status", "deleted_at", "first_event_at",
            "account_id", "account__status", "account__usage_started_at",
        )
    )
    plans = current_plans({row[5] for row in rows})
    targets = {}
    for pid, tag, status, deleted_at, first_event_at, account_id, account_status, started_at in rows:
        plan = plans.get(account_id)
        if account_status == AccountStatus.SUSPENDED:
            stop = Reason.ACCOUNT_SUSPENDED
        elif plan is None:
            stop = Reason.NO_SUBSCRIPTION
        elif deleted_at is not None:
            stop = Reason.PROPERTY_DELETED
        elif status == PropertyStatus.PAUSED:
            stop = Reason.PROPERTY_PAUSED
        else:
            stop = None
        targets[tag] = _Target(
            property_id=pid, account_id=account_id, stop_reason=stop,
            plan_limit=plan.limit_sessions if plan else None,
            hard_capped=plan.hard_capped if plan else True,
            first_event_at=first_event_at, usage_started_at=started_at,
        )
    return targets


def _events_insert(storable: list[ParsedEvent], targets: dict[str, _Target], now: datetime) -> set[str]:
    """Insert the event ids; return those this transaction inserted (the others were seen before).

    Sorted by id so that two batches with overlapping ids take the index locks in the same order
    and cannot deadlock."""
    rows = sorted((e.id, targets[e.tracking_tag].property_id, e.occurred_at, now) for e in storable)
    returned = _insert_rows(
        UsageEvent._meta.db_table,
        {"event_id": "varchar", "property_id": "bigint", "occurred_at": "timestamptz", "received_at": "timestamptz"},
        rows, "ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    )
    return {row[0] for row in returned}


def _server_cursor():
    """A psycopg cursor with server-side parameters on Django's connection (same transaction).
    Django's own cursors bind on the client, which spells every array element out as text."""
    import psycopg

    return psycopg.Cursor(connection.connection)


def _insert_rows(table: str, columns: dict[str, str], rows: list[tuple], suffix: str) -> list[tuple]:
    """One INSERT for many rows. PostgreSQL: `SELECT … FROM unnest(typed arrays)` with server-side
    parameters, so a 1,000-row batch is one short statement and a few array parameters (Django's
    client-side binding would spell out 4,000 literals). SQLite: VALUES lists in chunks."""
    names = ", ".join(columns)
    if connection.vendor == "postgresql":
        arrays = ", ".join(f"%b::{kind}[]" for kind in columns.values())  # %b: binary, no text escaping
        with _server_cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}) {suffix}",
                           [list(column) for column in zip(*rows, strict=True)])
            return cursor.fetchall() if cursor.description else []
    adapters = {"date": connection.ops.adapt_datefield_value, "timestamptz": connection.ops.adapt_datetimefield_value}
    adapt = [adapters.get(kind) for kind in columns.values()]
    returned: list[tuple] = []
    with connection.cursor() as cursor:
        for chunk_start in range(0, len(rows), 500):
            chunk = rows[chunk_start:chunk_start + 500]
            values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(chunk))
            params = [f(v) if f else v for row in chunk for f, v in zip(adapt, row, strict=True)]
            cursor.execute(f"INSERT INTO {table} ({names}) VALUES {values} {suffix}", params)
            if cursor.description:
                returned.extend(cursor.fetchall())
    return returned


def _count(new: list[ParsedEvent], targets: dict[str, _Target], now: datetime) -> int:
    """Add the new events to the month and day counters. Returns how many were counted."""
    by_month: dict[tuple[int, date], list[ParsedEvent]] = defaultdict(list)
    for event in new:
        by_month[(targets[event.tracking_tag].account_id, month_start(event.occurred_at))].append(event)
    keys = sorted(by_month)
    plan_of = {t.account_id: t for t in targets.values()}

    # Rows for new months start with the current plan's quota (USE-3). Sorted inserts, then
    # locks in the same order: concurrent batches for one account queue here instead of
    # deadlocking, and the hard cap and the alerts see the true running total.
    _months_insert_missing(keys, {a: t.plan_limit for a, t in plan_of.items()})
    rows = {
        (r[1], r[2]): r
        for r in UsageMonth.objects.select_for_update()
        .filter(account_id__in={a for a, _ in keys}, month__in={m for _, m in keys})
        .order_by("account_id", "month")
        .values_list("id", "account_id", "month", "sessions", "sessions_included", "alert_80_at", "alert_100_at")
    }
    current = month_start(now)
    counted_total = 0
    days: Counter = Counter()
    updates: list[tuple] = []
    alerts: list[tuple[int, int, date, int, int | None]] = []
    stopped: set[int] = set()
    for key in keys:
        account_id, month = key
        row_id, _, _, sessions, row_included, alert_80_at, alert_100_at = rows[key]
        target = plan_of[account_id]
        included = row_included
        if month == current:  # a late event for a past month does not apply today's plan to it
            included = month_included(included, target.plan_limit)
        batch = sorted(by_month[key], key=lambda e: e.occurred_at)
        room = hard_cap_room(sessions, included, target.hard_capped)
        counted = batch if room is None else batch[:room]
        for event in counted:
            days[(targets[event.tracking_tag].property_id, account_id, event.occurred_at.date())] += 1
        after = sessions + len(counted)
        sent = {80: alert_80_at, 100: alert_100_at}
        # USE-6: once per month, a database fact (the row is locked; set only where still empty)
        crossed = [t for t in alert_thresholds_crossed(sessions, after, included) if sent[t] is None]
        if counted or included != row_included or crossed:
            updates.append((row_id, len(counted), included, now if 80 in crossed else None,
                            now if 100 in crossed else None))
            alerts.extend((t, account_id, month, after, included) for t in crossed)
        if month == current and crossed:
            stopped.add(account_id)  # the entitlement answer may have changed (quota exhausted)
        counted_total += len(counted)
    _months_update(updates)
    _days_upsert(days)
    for threshold, account_id, month, sessions, included in alerts:
        events.emit("usage.alert", account_id, now=now, threshold=threshold, month=month_label(month),
                    sessions=sessions, sessions_included=included)
    for account_id in stopped:
        transaction.on_commit(lambda a=account_id: entitlement_invalidate(a))
    return counted_total


def _months_insert_missing(keys: list[tuple[int, date]], plan_limits: dict[int, int | None]) -> None:
    _insert_rows(
        UsageMonth._meta.db_table,
        {"account_id": "bigint", "month": "date", "sessions": "bigint", "sessions_included": "bigint"},
        [(a, m, 0, plan_limits[a]) for a, m in keys], "ON CONFLICT (account_id, month) DO NOTHING",
    )


def _months_update(updates: list[tuple]) -> None:
    """Add to the counters (sessions = sessions + n) of the locked month rows, in one statement
    on PostgreSQL. Alert times are only ever set where empty."""
    if not updates:
        return
    table = UsageMonth._meta.db_table
    if connection.vendor == "postgresql":
        with _server_cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} AS m SET sessions = m.sessions + v.n, sessions_included = v.inc, "
                "alert_80_at = COALESCE(m.alert_80_at, v.a80), alert_100_at = COALESCE(m.alert_100_at, v.a100) "
                "FROM unnest(%b::bigint[], %b::bigint[], %b::bigint[], %b::timestamptz[], %b::timestamptz[]) "
                "AS v(id, n, inc, a80, a100) WHERE m.id = v.id",
                [list(column) for column in zip(*updates, strict=True)],
            )
        return
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET sessions = sessions + %s, sessions_included = %s, "
            "alert_80_at = COALESCE(alert_80_at, %s), alert_100_at = COALESCE(alert_100_at, %s) WHERE id = %s",
            [(n, inc, adapt(a80), adapt(a100), row_id) for row_id, n, inc, a80, a100 in updates],
        )


def _days_upsert(days: Counter) -> None:
    if not days:
        return
    table = UsageDay._meta.db_table
    _insert_rows(
        table, {"property_id": "bigint", "account_id": "bigint", "day": "date", "sessions": "integer"},
        [(pid, aid, day, n) for (pid, aid, day), n in sorted(days.items())],
        f"ON CONFLICT (property_id, day) DO UPDATE SET sessions = {table}.sessions + EXCLUDED.sessions",
    )


def _record_first_events(new: list[ParsedEvent], targets: dict[str, _Target], now: datetime) -> None:
    """USE-5: the first events received for a property, and for its account, record when usage
    started (REF-2 evidence): the earliest timestamp of the batch that brings them. Evidence is
    written once; a late event with an earlier timestamp does not rewrite it."""
    first_by_property: dict[int, datetime] = {}
    first_by_account: dict[int, datetime] = {}
    for event in new:
        target = targets[event.tracking_tag]
        if target.first_event_at is None:
            pid = target.property_id
            first_by_property[pid] = min(first_by_property.get(pid, event.occurred_at), event.occurred_at)
        if target.usage_started_at is None:
            aid = target.account_id
            first_by_account[aid] = min(first_by_account.get(aid, event.occurred_at), event.occurred_at)
    for pid, first in sorted(first_by_property.items()):
        # Conditional: of two concurrent first batches, only one writes (and audits) the record.
        if Property.objects.filter(pk=pid, first_event_at__isnull=True).update(first_event_at=first):
            account_id = next(t.account_id for t in targets.values() if t.property_id == pid)
            audit(account=Account(pk=account_id), actor=None, action="property.first_event", obj=Property(pk=pid),
                  after=_iso("first_event_at", first), now=now)
    for aid, first in sorted(first_by_account.items()):
        if Account.objects.filter(pk=aid, usage_started_at__isnull=True).update(usage_started_at=first):
            audit(account=Account(pk=aid), actor=None, action="account.usage_started", obj=Account(pk=aid),
                  after=_iso("usage_started_at", first), now=now)


def _iso(name: str, value: datetime | None) -> dict:
    return {name: value.isoformat() if value else None}


def usage_events_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete the event IDs kept to refuse replays (USE-1) once no replay of them can count: an event
    older than MAX_EVENT_AGE is refused for its age, so its ID is no longer needed a day after that.
    Deletes in batches, each its own short statement, so that ingest is never held up; returns how
    many. Hourly by the schedule `usage-events-prune` (setup_schedules)."""
    cutoff = clock(now) - MAX_EVENT_AGE - timedelta(days=1)
    deleted = 0
    while True:
        ids = list(UsageEvent.objects.filter(occurred_at__lt=cutoff).order_by().values_list("pk", flat=True)[:batch])
        if ids:
            deleted += UsageEvent.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            return deleted
