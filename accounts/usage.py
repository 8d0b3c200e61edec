"""Usage metering and entitlements: the services behind the usage API (USE-1, USE-3..6, SUS-1).

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

The quota arithmetic (`month_included`, `hard_cap_room`, `alert_thresholds_crossed`) is pure and
has no ORM or clock; the overage's money is the engine's (`subscriptions.pricing.overage_amount`).
"""

import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from core import events
from core.cache import LayeredCache

from .audit import audit
from .models import (
    Account,
    AccountStatus,
    Property,
    PropertyStatus,
    UsageDay,
    UsageEvent,
    UsageMonth,
)

log = logging.getLogger(__name__)

MAX_BATCH_EVENTS = 1000
MAX_EVENT_AGE = timedelta(days=35)
# Clocks of the tracking servers drift; an event a little ahead of ours is not "in the future".
FUTURE_TOLERANCE = timedelta(minutes=5)
EVENT_TYPES = ("session",)
ALERT_THRESHOLDS = (80, 100)  # USE-6, percent of the month's included sessions
ENTITLEMENT_CACHE_SECONDS = 30  # bound on staleness where an invalidation cannot reach (see docs/api.md)
# Each answer is cached for a random 25..30 s, so answers cached in the same second (after a deploy
# or a cache flush, or a benchmark's warm-up) do not all expire and get recomputed together.
ENTITLEMENT_CACHE_MIN_SECONDS = 25

EVENT_ID_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
TRACKING_TAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class Reason:
    """Why an event was rejected, or why a property must stop tracking. Stable API codes."""

    INVALID_EVENT = "invalid_event"
    INVALID_ID = "invalid_id"
    INVALID_TRACKING_TAG = "invalid_tracking_tag"
    INVALID_TYPE = "invalid_type"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TOO_OLD = "too_old"
    IN_FUTURE = "in_future"
    UNKNOWN_TRACKING_TAG = "unknown_tracking_tag"
    ACCOUNT_SUSPENDED = "account_suspended"
    PROPERTY_PAUSED = "property_paused"
    PROPERTY_DELETED = "property_deleted"
    NO_SUBSCRIPTION = "no_subscription"
    QUOTA_EXHAUSTED = "quota_exhausted"


REJECTION_REASONS = (
    Reason.INVALID_EVENT, Reason.INVALID_ID, Reason.INVALID_TRACKING_TAG, Reason.INVALID_TYPE,
    Reason.INVALID_TIMESTAMP, Reason.TOO_OLD, Reason.IN_FUTURE, Reason.UNKNOWN_TRACKING_TAG,
    Reason.ACCOUNT_SUSPENDED, Reason.PROPERTY_PAUSED, Reason.PROPERTY_DELETED, Reason.NO_SUBSCRIPTION,
)
STOP_REASONS = (
    Reason.ACCOUNT_SUSPENDED, Reason.NO_SUBSCRIPTION, Reason.PROPERTY_DELETED, Reason.PROPERTY_PAUSED,
    Reason.QUOTA_EXHAUSTED,
)


class BatchTooLarge(Exception):
    """More than MAX_BATCH_EVENTS events: the whole batch is refused, nothing is stored."""


# --- pure helpers ----------------------------------------------------------------------------


def month_start(moment: datetime) -> date:
    """The first day of `moment`'s calendar month in UTC (USE-1).

    2026-12-01T00:30+01:00 is 2026-11-30T23:30Z -> 2026-11-01
    """
    utc = moment.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def month_label(month: date) -> str:
    return f"{month:%Y-%m}"


def month_included(existing: int | None, plan_limit: int | None) -> int | None:
    """The month's included sessions: the highest quota of the plans active in it (USE-3).
    None is unlimited, so it wins.

    existing 1,000 (Free earlier this month), plan 10,000 (Personal now) -> 10,000
    existing 10,000, plan 1,000 (downgraded) -> 10,000
    """
    if existing is None or plan_limit is None:
        return None
    return max(existing, plan_limit)


def hard_cap_room(sessions: int, included: int | None, hard_capped: bool) -> int | None:
    """How many more sessions count this month; None for no cap (USE-4).

    Free: 1,000 included, 990 counted -> 10 more count; the 11th is not counted.
    """
    if not hard_capped or included is None:
        return None
    return max(0, included - sessions)


def alert_thresholds_crossed(before: int, after: int, included: int | None) -> list[int]:
    """Thresholds (80, 100 %) reached by going from `before` to `after` sessions (USE-6).

    10,000 included: 7,999 -> 8,000 crosses 80; 7,000 -> 10,000 crosses 80 and 100.
    No alerts when nothing is included (unlimited or a zero quota: a percentage means nothing).
    """
    if not included:
        return []
    return [t for t in ALERT_THRESHOLDS if before * 100 < t * included <= after * 100]


@dataclass(frozen=True)
class ParsedEvent:
    index: int
    id: str
    tracking_tag: str
    occurred_at: datetime


@dataclass(frozen=True)
class Rejection:
    index: int
    id: str | None
    reason: str
    detail: str


def event_parse(index: int, raw, now: datetime) -> ParsedEvent | Rejection:
    """Validate one reported event. Returns the event, or the reason it is refused."""
    if not isinstance(raw, dict):
        return Rejection(index, None, Reason.INVALID_EVENT, "Each event must be a JSON object.")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        return Rejection(index, None, Reason.INVALID_ID,
                         "`id` must be a string of 1 to 100 characters without control characters.")
    tag = raw.get("tracking_tag")
    if not isinstance(tag, str) or not TRACKING_TAG_RE.match(tag):
        return Rejection(index, event_id, Reason.INVALID_TRACKING_TAG,
                         "`tracking_tag` must be a property's tracking tag (letters, digits, '-' and '_').")
    if raw.get("type") not in EVENT_TYPES:
        return Rejection(index, event_id, Reason.INVALID_TYPE, "`type` must be \"session\".")
    stamp = raw.get("timestamp")
    occurred_at = None
    if isinstance(stamp, str) and len(stamp) <= 40:
        try:
            parsed = datetime.fromisoformat(stamp)
            if parsed.tzinfo is not None and parsed.utcoffset() is not None:
                occurred_at = parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            occurred_at = None
    if occurred_at is None:
        return Rejection(index, event_id, Reason.INVALID_TIMESTAMP,
                         "`timestamp` must be an ISO 8601 date-time with a UTC offset, like 2026-11-05T14:03:00Z.")
    if occurred_at < now - MAX_EVENT_AGE:
        return Rejection(index, event_id, Reason.TOO_OLD,
                         f"Events older than {MAX_EVENT_AGE.days} days are not accepted.")
    if occurred_at > now + FUTURE_TOLERANCE:
        return Rejection(index, event_id, Reason.IN_FUTURE, "The timestamp is in the future.")
    return ParsedEvent(index, event_id, tag, occurred_at)


# --- ingest ----------------------------------------------------------------------------------


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
    now = now or timezone.now()
    if len(raw_events) > MAX_BATCH_EVENTS:
        raise BatchTooLarge(
            f"A batch holds at most {MAX_BATCH_EVENTS:,} events; this one has {len(raw_events):,}. "
            "Split it and send each part: nothing from this batch was recorded."
        )
    result = IngestResult()
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
    if not parsed:
        return result

    targets = _targets({e.tracking_tag for e in parsed})
    storable: list[ParsedEvent] = []
    refused: list[Rejection] = []
    for event in parsed:
        target = targets.get(event.tracking_tag)
        if target is None:
            result.reject(Rejection(event.index, event.id, Reason.UNKNOWN_TRACKING_TAG,
                                    "No property has this tracking tag."))
        elif target.stop_reason:
            refused.append(Rejection(event.index, event.id, target.stop_reason, _STOP_DETAIL[target.stop_reason]))
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


_STOP_DETAIL = {
    Reason.ACCOUNT_SUSPENDED: "The account is suspended: this property must not track.",
    Reason.PROPERTY_PAUSED: "The property is paused: it must not track.",
    Reason.PROPERTY_DELETED: "The property was deleted: it must not track.",
    Reason.NO_SUBSCRIPTION: "The account has no subscription: this property must not track.",
    Reason.QUOTA_EXHAUSTED: "This month's included sessions are used up and the plan has no overage.",
}


def _targets(tags: set[str]) -> dict[str, _Target]:
    rows = list(
        Property.objects.filter(tracking_tag__in=tags).values_list(
            "id", "tracking_tag", "status", "deleted_at", "first_event_at",
            "account_id", "account__status", "account__usage_started_at",
        )
    )
    plans = _current_plans({row[5] for row in rows})
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


@dataclass(frozen=True)
class _Plan:
    code: str
    limit_sessions: int | None
    hard_capped: bool


def _current_plans(account_ids: set[int]) -> dict[int, _Plan | None]:
    """account id -> the plan of its current subscription (`is_current`), in one query; None when that
    subscription has ended."""
    from subscriptions.models import Status, Subscription

    plans: dict[int, _Plan | None] = {}
    rows = (
        Subscription.objects.current().filter(account_id__in=account_ids)
        .values_list("account_id", "status", "plan__code", "plan__limit_sessions", "plan__overage_per_1000")
    )
    for account_id, status, code, limit, overage in rows:
        if account_id not in plans:
            plans[account_id] = None if status == Status.CANCELED else _Plan(code, limit, overage is None)
    return plans


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
    cutoff = (now or timezone.now()) - MAX_EVENT_AGE - timedelta(days=1)
    deleted = 0
    while True:
        ids = list(UsageEvent.objects.filter(occurred_at__lt=cutoff).order_by().values_list("pk", flat=True)[:batch])
        if ids:
            deleted += UsageEvent.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            return deleted


@transaction.atomic
def usage_month_note_plan(account_id: int, *, now: datetime | None = None) -> None:
    """Raise this month's included sessions to the current plan's quota (USE-3: the highest of
    the plans active in the month). Called when a subscription starts or changes plan."""
    now = now or timezone.now()
    plan = _current_plans({account_id}).get(account_id)
    if plan is None:
        return
    month = month_start(now)
    UsageMonth.objects.bulk_create(
        [UsageMonth(account_id=account_id, month=month, sessions=0, sessions_included=plan.limit_sessions)],
        ignore_conflicts=True,
    )
    row = UsageMonth.objects.select_for_update().get(account_id=account_id, month=month)
    included = month_included(row.sessions_included, plan.limit_sessions)
    if included != row.sessions_included:
        UsageMonth.objects.filter(pk=row.pk).update(sessions_included=included)


# --- entitlements ----------------------------------------------------------------------------


def entitlement_compute(tracking_tag: str, *, now: datetime | None = None) -> dict | None:
    """May this property track? None when no property has the tag (SUS-1, USE-4)."""
    now = now or timezone.now()
    prop = Property.objects.select_related("account").filter(tracking_tag=tracking_tag).first()
    if prop is None:
        return None
    account = prop.account
    subscription = account.subscription
    plan = subscription.plan if subscription else None
    from subscriptions.models import Status

    if subscription is not None and subscription.status == Status.CANCELED:
        plan = None
    month = month_start(now)
    row = UsageMonth.objects.filter(account=account, month=month).values_list("sessions", "sessions_included").first()
    plan_limit = plan.limit_sessions if plan else None
    sessions_used = row[0] if row else 0
    included = month_included(row[1], plan_limit) if row else plan_limit

    if account.status == AccountStatus.SUSPENDED or (subscription and subscription.status == Status.SUSPENDED):
        reason = Reason.ACCOUNT_SUSPENDED
        label = account.get_suspension_reason_display() if account.suspension_reason else ""
        detail = f"The account is suspended ({label.lower()})." if label else "The account is suspended."
    elif plan is None:
        reason, detail = Reason.NO_SUBSCRIPTION, _STOP_DETAIL[Reason.NO_SUBSCRIPTION]
    elif prop.deleted_at is not None:
        reason, detail = Reason.PROPERTY_DELETED, _STOP_DETAIL[Reason.PROPERTY_DELETED]
    elif prop.status == PropertyStatus.PAUSED:
        reason, detail = Reason.PROPERTY_PAUSED, _STOP_DETAIL[Reason.PROPERTY_PAUSED]
    elif hard_cap_room(sessions_used, included, plan.hard_capped) == 0:
        reason, detail = Reason.QUOTA_EXHAUSTED, _STOP_DETAIL[Reason.QUOTA_EXHAUSTED]
    else:
        reason, detail = None, "The property may track."

    limits = {"properties": None, "sessions": None, "integrations": None}
    if plan is not None:
        limits = plan.limits(subscription.extra_properties)
    return {
        "tracking_tag": tracking_tag,
        "active": reason is None,
        "plan": plan.code if plan else None,
        "limits": limits,
        "month": month_label(month),
        "sessions_used": sessions_used,
        "sessions_included": included,
        "hard_capped": plan.hard_capped if plan else True,
        "reason": reason,
        "detail": detail,
    }


# A small per-process layer in front of the shared cache saves a network round trip on the hot
# path. Invalidation clears it in this process; other processes see a change within its TTL.
LOCAL_CACHE_SECONDS = 2
# Stale-while-revalidate (core.cache): an answer past its lifetime is still served while the one
# request that claimed its recompute runs the queries, so answers that expire together (after a
# deploy, a cache flush, a benchmark's warm-up) cost one recompute each, not a burst of them.
_answers = LayeredCache("entitlement:v2:", local_seconds=LOCAL_CACHE_SECONDS, local_max=10_000,
                        stale_seconds=ENTITLEMENT_CACHE_SECONDS)


def entitlement_cached(tracking_tag: str) -> dict | None:
    """The cached answer, or None when neither cache holds one. Never reads the database: the
    WSGI fast path (api/fastpath.py) answers from here and leaves a miss to Django. A stale answer
    is served as it is; the first request to see it hands its recompute to this process's
    refresher thread, so no request waits for the queries."""
    return _answers.get(tracking_tag, background=entitlement_refresh_soon)


_refresher: list = []  # this process's one refresher thread, started on first use


def entitlement_refresh_soon(tracking_tag: str) -> None:
    """Recompute a stale answer off the request path (one thread per process, one at a time)."""
    if not _refresher:
        from concurrent.futures import ThreadPoolExecutor

        _refresher.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="entitlement-refresh"))
    _refresher[0].submit(_refresh_in_thread, tracking_tag)


def _refresh_in_thread(tracking_tag: str) -> None:
    from django.db import close_old_connections

    close_old_connections()  # this thread's own connection, kept between refreshes
    try:
        entitlement_refresh(tracking_tag)
    except Exception:  # the stale answer stays until its claim lapses; the next request retries
        log.exception("Refreshing the entitlement of %s failed", tracking_tag)


def entitlement_refresh(tracking_tag: str, *, now: datetime | None = None) -> dict | None:
    """Compute the answer and cache it (or drop the entry: no property has the tag)."""
    answer = entitlement_compute(tracking_tag, now=now)
    if answer is None:
        _answers.forget(tracking_tag)
    else:
        _answers.set(tracking_tag, answer, random.randint(ENTITLEMENT_CACHE_MIN_SECONDS, ENTITLEMENT_CACHE_SECONDS))
    return answer


def entitlement_get(tracking_tag: str, *, now: datetime | None = None) -> dict | None:
    """The cached answer. Entries are fresh for at most ENTITLEMENT_CACHE_SECONDS in the shared
    cache (and LOCAL_CACHE_SECONDS in this process); past that, this request recomputes the answer
    if it is the first to ask, and gets the stale one while another request does. They are dropped
    on the domain events that change an answer (api.apps) and when a property or account is saved."""
    answer = _answers.get(tracking_tag, refresh=True)
    return entitlement_refresh(tracking_tag, now=now) if answer is None else answer


def entitlement_invalidate(account_id: int) -> None:
    """Drop the cached answers of every property of the account."""
    _answers.forget(*Property.objects.filter(account_id=account_id).values_list("tracking_tag", flat=True))


def entitlement_invalidate_tag(tracking_tag: str) -> None:
    _answers.forget(tracking_tag)


def entitlement_cache_clear_local() -> None:
    _answers.clear_local()
