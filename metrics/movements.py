"""MRR movements, read from the audit log (ACC-3).

Every change of a subscription's state leaves an audit row whose `after` is a snapshot of the
account's current subscription (plan code, cycle, status, extra properties, period). An account's
MRR is the value of its latest snapshot (`mrr.recurring_monthly_amount`); replaying the snapshots
of one account in the order they were written gives every change of its MRR, each a `Change`.

The replay is kept in `MrrMovement` rows so that the page does not read a year of audit rows:
`movements_refresh` rebuilds the chains of the accounts that have new audit rows up to
`now - LAG` (a billing run stamps its rows with the moment it started, so rows can commit a little
after their time). Whatever was recorded after that point is replayed on the fly (`tail`), so
the figures are exact at any moment, whether or not the refresh ran.

Order: the rows of one account are replayed in the order they were inserted (their id), which is
the order of the changes (the engine changes an account's state under its row lock), so the last
state replayed is the account's state now. A movement's `at` is its row's time: a month's movements
are the rows stamped in that month. (A billing run stamps its rows with the moment it started, so
in the minutes a run takes, a customer's change can carry a later time than the run's row written
after it; both stay in their own month.)
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models.fields.json import KT

from accounts.models import AuditEvent
from core.clock import clock
from plans.models import Plan

from .models import MetricsBuild, MrrMovement
from .mrr import ZERO, Bucket, Kind, RecurringTerms, classify, price_of, recurring_monthly_amount

# Rows stamped up to this long ago are taken as committed (a billing run stamps its rows with
# the moment it started and commits them as it goes); newer ones are replayed on the fly.
LAG = timedelta(minutes=60)
BUILD = "mrr"
CHUNK = 500  # accounts per statement (SQLite's variable limit, and bounded memory)


@dataclass(frozen=True)
class Change:
    """A change of one account's MRR, or of the plan and cycle it is counted under."""

    account_id: int
    audit_event_id: int
    at: datetime
    kind: Kind
    before: Bucket
    after: Bucket

    @property
    def delta(self) -> Decimal:
        return self.after.amount - self.before.amount

    def row(self) -> MrrMovement:
        return MrrMovement(
            account_id=self.account_id, audit_event_id=self.audit_event_id, at=self.at, kind=self.kind.value,
            from_plan=self.before.plan, from_cycle=self.before.cycle, from_amount=self.before.amount,
            to_plan=self.after.plan, to_cycle=self.after.cycle, to_amount=self.after.amount, delta=self.delta,
        )

    @classmethod
    def from_row(cls, row: MrrMovement) -> "Change":
        return cls(row.account_id, row.audit_event_id, row.at, Kind(row.kind),
                   Bucket(row.from_plan, row.from_cycle, row.from_amount),
                   Bucket(row.to_plan, row.to_cycle, row.to_amount))


# --- one state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The fields of an audit snapshot the figures read."""

    plan: str
    cycle: str | None
    status: str | None
    extra_properties: str | int | None
    price: str | None


def bucket_of(snapshot: Snapshot, plans: dict) -> Bucket:
    """Where a snapshot's MRR is counted, and how much. A snapshot with no status (the Free
    subscription started at sign-up) counts nothing."""
    if not snapshot.status:
        return Bucket()
    plan = plans.get(snapshot.plan)
    if plan is None:
        raise LookupError(f"An audit snapshot names the plan {snapshot.plan!r}, which is not in the catalog.")
    cycle = snapshot.cycle or "monthly"
    terms = RecurringTerms(
        status=snapshot.status, cycle=cycle,
        price=price_of({"price": snapshot.price, "cycle": cycle}, plan),
        extra_properties=int(snapshot.extra_properties or 0),
        extra_property_monthly=plan.extra_property_monthly,
    )
    return Bucket.of(plan.code, cycle, recurring_monthly_amount(terms))


def catalog() -> dict:
    return {plan.code: plan for plan in Plan.objects.all()}


# --- chains -----------------------------------------------------------------------------------------


def chain(account_id: int, events: Iterable[tuple], plans: dict, seen: dict | None = None) -> list[Change]:
    """The changes of one account, from its state events `(id, created_at, Snapshot)` in id order.
    `seen` keeps the buckets of snapshots already priced (there are few distinct ones)."""
    changes, current, paid_before = [], Bucket(), False
    seen = {} if seen is None else seen
    for event_id, created_at, snapshot in events:
        after = seen.get(snapshot)
        if after is None:
            after = seen[snapshot] = bucket_of(snapshot, plans)
        kind = classify(current, after, paid_before=paid_before)
        if kind is not None:
            changes.append(Change(account_id, event_id, created_at, kind, current, after))
        paid_before = paid_before or after.amount > 0
        current = after
    return changes


def state_events():
    """Audit rows that carry a subscription snapshot, with the snapshot's fields."""
    return (AuditEvent.objects.filter(account__isnull=False, after__has_key="plan")
            .annotate(s_plan=KT("after__plan"), s_cycle=KT("after__cycle"), s_status=KT("after__status"),
                      s_extra=KT("after__extra_properties"), s_price=KT("after__price")))


def _rows(queryset, *, stream: bool = False) -> Iterator[tuple]:
    """(account id, event id, time, Snapshot) of the state events; `stream` reads a big result in
    chunks (a server-side cursor on PostgreSQL) instead of at once."""
    rows = queryset.values_list("account_id", "id", "created_at", "s_plan", "s_cycle", "s_status", "s_extra",
                                "s_price")
    for account_id, event_id, created_at, *fields in (rows.iterator(chunk_size=5000) if stream else rows):
        yield account_id, event_id, created_at, Snapshot(*fields)


def replay(account_ids: Iterable[int] | None, until: datetime, plans: dict | None = None) -> Iterator[Change]:
    """The changes of these accounts (None: every account) from the audit rows stamped up to
    `until`, account by account."""
    plans = plans if plans is not None else catalog()
    events = state_events().filter(created_at__lte=until)
    if account_ids is None:
        yield from _replay_sorted(_rows(events.order_by("account_id", "id"), stream=True), plans)
        return
    ids = sorted(set(account_ids))
    for offset in range(0, len(ids), CHUNK):
        part = events.filter(account_id__in=ids[offset:offset + CHUNK]).order_by("account_id", "id")
        yield from _replay_sorted(_rows(part), plans)


def _replay_sorted(rows: Iterator[tuple], plans: dict) -> Iterator[Change]:
    account, events, seen = None, [], {}
    for account_id, event_id, created_at, snapshot in rows:
        if account_id != account and events:
            yield from chain(account, events, plans, seen)
            events = []
        account = account_id
        events.append((event_id, created_at, snapshot))
    if events:
        yield from chain(account, events, plans, seen)


# --- the stored movements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefreshResult:
    built_through: datetime | None
    accounts: int = 0
    movements: int = 0
    full: bool = False

    def __str__(self) -> str:
        what = "Rebuilt" if self.full else "Refreshed"
        return (f"{what} the MRR movements of {self.accounts} accounts ({self.movements} movements); "
                f"built through {self.built_through.isoformat() if self.built_through else 'nothing'}.")


def movements_refresh(now: datetime | None = None, *, full: bool = False) -> RefreshResult:
    """Bring `MrrMovement` up to `now - LAG`: the chains of the accounts with newer audit rows are
    replayed from their whole history and replaced. `full` replays every account."""
    now = clock(now)
    until = now - LAG
    plans = catalog()
    with transaction.atomic():
        MetricsBuild.objects.get_or_create(name=BUILD)
        build = MetricsBuild.objects.select_for_update().get(name=BUILD)  # one refresh at a time
        since = None if full else build.built_through
        if since is not None and until <= since:
            return RefreshResult(since)
        if since is None:
            MrrMovement.objects.all().delete()
            accounts = set()
            batch, count = [], 0
            for change in replay(None, until, plans):
                accounts.add(change.account_id)
                batch.append(change.row())
                if len(batch) >= 5000:
                    count += len(MrrMovement.objects.bulk_create(batch))
                    batch = []
            count += len(MrrMovement.objects.bulk_create(batch))
        else:
            accounts = set(state_events().filter(created_at__gt=since, created_at__lte=until)
                           .order_by().values_list("account_id", flat=True).distinct())
            ids, count = sorted(accounts), 0
            for offset in range(0, len(ids), CHUNK):
                part = ids[offset:offset + CHUNK]
                MrrMovement.objects.filter(account_id__in=part).delete()
                count += len(MrrMovement.objects.bulk_create([c.row() for c in replay(part, until, plans)]))
        build.built_through = until
        build.refreshed_at = clock()
        if since is None:
            build.rebuilt_at = build.refreshed_at
        build.save()
    return RefreshResult(until, len(accounts), count, full=since is None)


def built_through() -> datetime | None:
    return MetricsBuild.objects.filter(name=BUILD).values_list("built_through", flat=True).first()


@dataclass
class Tail:
    """What the stored movements miss at `now`: the accounts with audit rows after the build, whose
    stored movements (`removed`) give way to their chains replayed up to `now` (`added`)."""

    since: datetime | None
    accounts: set = field(default_factory=set)
    removed: list = field(default_factory=list)
    added: list = field(default_factory=list)


def tail(now: datetime) -> Tail:
    """The stored movements' correction at `now` (nothing when the build is current)."""
    since = built_through()
    result = Tail(since)
    newer = state_events().filter(created_at__lte=now)
    if since is not None:
        newer = newer.filter(created_at__gt=since)
    result.accounts = set(newer.order_by().values_list("account_id", flat=True).distinct())
    if not result.accounts:
        return result
    ids = sorted(result.accounts)
    for offset in range(0, len(ids), CHUNK):
        part = ids[offset:offset + CHUNK]
        stored = MrrMovement.objects.filter(account_id__in=part).values_list(
            "account_id", "audit_event_id", "at", "kind", "from_plan", "from_cycle", "from_amount", "to_plan",
            "to_cycle", "to_amount")
        for account, event, moment, kind, *buckets in stored:
            before, after = Bucket(*buckets[:3]), Bucket(*buckets[3:])
            result.removed.append(Change(account, event, moment, Kind(kind), before, after))
    result.added = list(replay(ids, now))
    return result


def stored_movements_match_replay(now: datetime | None = None) -> list[str]:
    """Differences between the stored movements (up to their build) and a fresh replay of the
    audit log: empty when they agree. For tests and `metrics_rebuild --check`."""
    until = built_through()
    if until is None:
        return []
    stored = {row.audit_event_id: Change.from_row(row) for row in MrrMovement.objects.all()}
    fresh = {change.audit_event_id: change for change in replay(None, until)}
    problems = [f"missing movement for audit event {key}" for key in sorted(fresh.keys() - stored.keys())]
    problems += [f"stale movement for audit event {key}" for key in sorted(stored.keys() - fresh.keys())]
    problems += [f"movement of audit event {key} differs: stored {stored[key]}, replayed {fresh[key]}"
                 for key in sorted(stored.keys() & fresh.keys()) if stored[key] != fresh[key]]
    return problems


def buckets_at(changes_by_account: dict[int, list[Change]]) -> dict[int, Bucket]:
    """Each account's bucket after its changes."""
    return {account: (changes[-1].after if changes else Bucket()) for account, changes in changes_by_account.items()}


def by_account(changes: Iterable[Change]) -> dict[int, list[Change]]:
    grouped = defaultdict(list)
    for change in changes:
        grouped[change.account_id].append(change)
    return grouped


__all__ = ["LAG", "Change", "RefreshResult", "Tail", "ZERO", "bucket_of", "chain", "movements_refresh", "replay",
           "stored_movements_match_replay", "tail"]
