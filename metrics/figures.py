"""The revenue and health figures (ACC-5), per calendar month (UTC) over the last twelve months and
for the month to date, each with the rows behind it (`figure_rows`). Definitions: docs/metrics.md.

Sources, all append-only: MRR and its movements from the audit log's subscription snapshots
(`metrics.movements`), trials from the trial subscriptions and their conversion invoices, failed
payments from the `payment.failed` audit rows (DUN-1) and the invoices they name, overage from the
overage invoices, refunds and credit notes from their own rows.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection
from django.db.models import Case, Count, F, Q, Sum, When
from django.db.models.functions import TruncMonth

from invoices.models import CreditNote, CreditNoteKind, Invoice, InvoiceKind, InvoiceStatus, Refund
from subscriptions.models import Subscription

from .movements import Change, Tail, catalog, tail
from .mrr import (
    COUNTED_STATUSES,
    MOVEMENT_KINDS,
    ZERO,
    Kind,
    RecurringTerms,
    cents,
    recurring_monthly_amount,
)

MONTHS_BACK = 12  # complete months shown before the month to date
EPSILON = timedelta(microseconds=1)  # "up to now" as an exclusive end


# --- months --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Month:
    """A calendar month in UTC: [start, end). The month to date ends at `now` instead."""

    start: datetime
    end: datetime
    to_date: bool = False

    @property
    def key(self) -> str:
        return f"{self.start:%Y-%m}"

    @property
    def label(self) -> str:
        return f"{self.start:%B %Y}" + (" (to date)" if self.to_date else "")

    @property
    def short(self) -> str:
        return f"{self.start:%b %Y}"

    @classmethod
    def of(cls, key: str, now: datetime) -> "Month":
        year, month = (int(part) for part in key.split("-"))
        start = datetime(year, month, 1, tzinfo=UTC)
        current = month_start(now)
        if start > current:
            raise ValueError(f"{key} is in the future.")
        return cls(start, now, True) if start == current else cls(start, add_month(start))


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def add_month(start: datetime, n: int = 1) -> datetime:
    index = start.year * 12 + start.month - 1 + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def months_window(now: datetime, back: int = MONTHS_BACK) -> list[Month]:
    """The `back` complete months before `now`'s month, then the month to date."""
    current = month_start(now)
    months = [Month(add_month(current, -n), add_month(current, -n + 1)) for n in range(back, 0, -1)]
    return months + [Month(current, now, to_date=True)]


def span(months: list[Month]) -> tuple[datetime, datetime]:
    """[start, end) of consecutive months; the month to date ends just after now."""
    last = months[-1]
    return months[0].start, (last.end + EPSILON if last.to_date else last.end)


def _key(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m}"


def _sum(value) -> Decimal:
    """A database SUM as money: SQLite returns it unscaled (14, 112.940000000000), or None."""
    return cents(value) if value is not None else ZERO


def ratio(part: int, whole: int) -> Decimal | None:
    """A share in percent, rounded to one decimal half up; None when there is no whole."""
    if not whole:
        return None
    return (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), rounding="ROUND_HALF_UP")


# --- MRR ------------------------------------------------------------------------------------------


@dataclass
class MrrMonth:
    month: Month
    by_bucket: dict  # (plan, cycle) -> MRR at the month's end
    payers_by_bucket: dict  # (plan, cycle) -> accounts paying at the month's end
    opening: Decimal  # MRR at the month's start
    movements: dict  # Kind -> signed amount within the month
    movers: dict  # Kind -> accounts with such a movement within the month

    @property
    def mrr(self) -> Decimal:
        return sum(self.by_bucket.values(), ZERO)

    @property
    def arr(self) -> Decimal:
        return self.mrr * 12

    @property
    def paying_accounts(self) -> int:
        return sum(self.payers_by_bucket.values())

    @property
    def net(self) -> Decimal:
        return sum((self.movements.get(kind, ZERO) for kind in MOVEMENT_KINDS), ZERO)


@dataclass
class MrrFigures:
    months: list  # MrrMonth, oldest first; the last one is the month to date
    buckets: list  # (plan, cycle) with MRR at some point of the window, in catalog order
    plan_names: dict

    @property
    def today(self) -> MrrMonth:
        return self.months[-1]


def _stored_aggregates(now: datetime, window_start: datetime):
    from .models import MrrMovement

    stored = MrrMovement.objects.filter(at__lte=now).annotate(month=TruncMonth("at", tzinfo=UTC))
    flows = (stored.values("month", "from_plan", "from_cycle", "to_plan", "to_cycle")
             .annotate(gone=Sum("from_amount"), come=Sum("to_amount"),
                       left=Count("id", filter=Q(from_amount__gt=0)), joined=Count("id", filter=Q(to_amount__gt=0)))
             .order_by())
    kinds = (stored.filter(at__gte=window_start).values("month", "kind")
             .annotate(total=Sum("delta"), accounts=Count("account_id", distinct=True)).order_by())
    return flows, kinds


def mrr_figures(now: datetime, months: list[Month], the_tail: Tail | None = None) -> MrrFigures:
    """MRR by plan and cycle at each month's end, and its movements within each month."""
    the_tail = the_tail if the_tail is not None else tail(now)
    amount = defaultdict(lambda: defaultdict(lambda: ZERO))  # month key -> bucket -> MRR added
    payers = defaultdict(lambda: defaultdict(int))  # month key -> bucket -> paying accounts added
    kind_total = defaultdict(lambda: defaultdict(lambda: ZERO))
    kind_accounts = defaultdict(lambda: defaultdict(int))
    flows, kinds = _stored_aggregates(now, months[0].start)
    for row in flows:
        key = _key(row["month"])
        amount[key][(row["from_plan"], row["from_cycle"])] -= _sum(row["gone"])
        amount[key][(row["to_plan"], row["to_cycle"])] += _sum(row["come"])
        payers[key][(row["from_plan"], row["from_cycle"])] -= row["left"]
        payers[key][(row["to_plan"], row["to_cycle"])] += row["joined"]
    for row in kinds:
        kind_total[_key(row["month"])][Kind(row["kind"])] += _sum(row["total"])
        kind_accounts[_key(row["month"])][Kind(row["kind"])] += row["accounts"]
    # The accounts recorded since the build: their stored movements give way to a fresh replay.
    for changes, sign in ((the_tail.removed, -1), (the_tail.added, 1)):
        movers = defaultdict(set)
        for change in changes:
            if change.at > now:
                continue
            key = _key(change.at)
            amount[key][(change.before.plan, change.before.cycle)] -= sign * change.before.amount
            amount[key][(change.after.plan, change.after.cycle)] += sign * change.after.amount
            payers[key][(change.before.plan, change.before.cycle)] -= sign * (change.before.amount > 0)
            payers[key][(change.after.plan, change.after.cycle)] += sign * (change.after.amount > 0)
            if change.at >= months[0].start:
                kind_total[key][change.kind] += sign * change.delta
                movers[(key, change.kind)].add(change.account_id)
        for (key, kind), accounts in movers.items():
            kind_accounts[key][kind] += sign * len(accounts)

    plans = catalog()
    running_amount, running_payers = defaultdict(lambda: ZERO), defaultdict(int)
    by_month = {}
    window_keys = [m.key for m in months]
    for key in sorted(set(amount) | set(window_keys)):
        if key > window_keys[-1]:
            break
        opening = sum(running_amount.values(), ZERO)
        for bucket, value in amount[key].items():
            running_amount[bucket] += value
        for bucket, value in payers[key].items():
            running_payers[bucket] += value
        by_month[key] = (opening, {b: v for b, v in running_amount.items() if b != ("", "") and v},
                         {b: v for b, v in running_payers.items() if b != ("", "") and v})
    rows = []
    for month in months:
        opening, by_bucket, payers_by_bucket = by_month[month.key]
        rows.append(MrrMonth(month, by_bucket, payers_by_bucket, opening,
                             {k: kind_total[month.key].get(k, ZERO) for k in MOVEMENT_KINDS},
                             {k: kind_accounts[month.key].get(k, 0) for k in MOVEMENT_KINDS}))
    seen = {bucket for row in rows for bucket in row.by_bucket} | {
        bucket for row in rows for bucket in row.payers_by_bucket}
    order = {code: (plan.rank, plan.code) for code, plan in plans.items()}
    buckets = sorted(seen, key=lambda b: (order.get(b[0], (10**6, b[0])), b[1] != "monthly"))
    names = {code: plan.name for code, plan in plans.items()}
    return MrrFigures(rows, buckets, names)


def current_subscriptions_mrr() -> Decimal:
    """MRR from the subscriptions as they are now, priced by `current_price` (what the current
    period's plan cost): the cross-check of the replayed audit log. Only an account's current
    subscription can be active or past due (the engine ends the old one first)."""
    plans = {plan.pk: plan for plan in catalog().values()}
    groups = (Subscription.objects.filter(status__in=COUNTED_STATUSES)
              .values("plan_id", "cycle", "status", "current_price", "extra_properties")
              .annotate(n=Count("id")).order_by())
    total = ZERO
    for group in groups:
        plan = plans[group["plan_id"]]
        terms = RecurringTerms(group["status"], group["cycle"], group["current_price"], group["extra_properties"],
                               plan.extra_property_monthly)
        total += recurring_monthly_amount(terms) * group["n"]
    return total


# --- trials -----------------------------------------------------------------------------------------


@dataclass
class TrialMonth:
    month: Month
    started: int = 0
    converted: int = 0
    open: int = 0  # still running, reactivatable, or its first charge still in dunning

    @property
    def ended(self) -> int:
        return self.started - self.open

    @property
    def rate(self) -> Decimal | None:
        return ratio(self.converted, self.ended)


def trial_cohort(start: datetime, end: datetime):
    return Subscription.objects.filter(trial_start__gte=start, trial_start__lt=end)


def trial_figures(now: datetime, months: list[Month]) -> list[TrialMonth]:
    """Trials by the month they started (one per account, TRI-2): how many converted, i.e. paid the
    charge made at the trial's end (TRI-3) at once or within the dunning window."""
    rows = {month.key: TrialMonth(month) for month in months}
    start, end = span(months)
    # A trial without its conversion invoice yet is open while it runs or may be reactivated (TRI-5).
    def waiting(prefix=""):
        return (Q(**{f"{prefix}status": "trialing"})
                | Q(**{f"{prefix}status": "canceled", f"{prefix}trial_end__gt": now}))

    cohort = (trial_cohort(start, end).annotate(month=TruncMonth("trial_start", tzinfo=UTC)).values("month")
              .annotate(started=Count("id"), waiting=Count("id", filter=waiting())).order_by())
    for group in cohort:
        row = rows[_key(group["month"])]
        row.started, row.open = group["started"], group["waiting"]
    # Their conversion invoices, issued at the trial's end (after the window's start): paid is
    # converted, open is in dunning; a trial whose invoice exists waits on it, not on its end date.
    conversions = (Invoice.objects.filter(kind=InvoiceKind.TRIAL_CONVERSION, issued_at__gte=start,
                                          subscription__trial_start__gte=start, subscription__trial_start__lt=end)
                   .annotate(month=TruncMonth("subscription__trial_start", tzinfo=UTC)).values("month")
                   .annotate(paid=Count("id", filter=Q(status=InvoiceStatus.PAID)),
                             dunning=Count("id", filter=Q(status=InvoiceStatus.OPEN)),
                             waiting=Count("id", filter=waiting("subscription__")))
                   .order_by())
    for group in conversions:
        row = rows[_key(group["month"])]
        row.converted += group["paid"]
        row.open += group["dunning"] - group["waiting"]
    return list(rows.values())


# --- failed payments (DUN) -----------------------------------------------------------------------------

@dataclass
class DunningMonth:
    month: Month
    failed: int = 0
    failed_amount: Decimal = ZERO
    recovered: int = 0
    recovered_amount: Decimal = ZERO
    lost: int = 0
    lost_amount: Decimal = ZERO
    open: int = 0  # still in dunning
    open_amount: Decimal = ZERO

    @property
    def rate(self) -> Decimal | None:
        return ratio(self.recovered, self.failed - self.open)


# The invoices whose collection first failed in each month, grouped by what became of them, in
# one statement: the audit rows name their invoice by a text id, so the ORM cannot join them.
FAILED_SQL = """
SELECT {bucket} AS bucket, i.status, COUNT(*), SUM(i.total)
FROM (SELECT object_id, MIN(created_at) AS first_failed_at
      FROM accounts_auditevent
      WHERE action = 'payment.failed' AND object_type = 'Invoice'
      GROUP BY object_id
      HAVING MIN(created_at) >= %s AND MIN(created_at) < %s) AS f
JOIN invoices_invoice AS i ON i.id = CAST(f.object_id AS BIGINT)
GROUP BY 1, 2
"""


def dunning_figures(now: datetime, months: list[Month]) -> list[DunningMonth]:
    """Invoices whose collection first failed in the month (DUN-1: a `payment.failed` audit row;
    a declined upgrade, UPG-4, and an attempt the bank never saw write none), and what became of
    them: paid by a retry or a card update within the dunning window (recovered), voided or
    written off (lost), or still open (in dunning). After the last retry the engine suspends the
    account and a card update voids the open invoice and charges a new period (DUN-3), so a failed
    invoice that is paid was paid within the window."""
    adapt = connection.ops.adapt_datetimefield_value
    bucket = " ".join(f"WHEN f.first_failed_at < %s THEN {i}" for i in range(len(months) - 1))
    bucket = f"CASE {bucket} ELSE {len(months) - 1} END" if bucket else "0"
    params = [adapt(month.end) for month in months[:-1]] + [adapt(moment) for moment in span(months)]
    with connection.cursor() as cursor:
        cursor.execute(FAILED_SQL.format(bucket=bucket), params)
        groups = cursor.fetchall()
    rows = [DunningMonth(month) for month in months]
    for index, status, n, total in groups:
        row, amount = rows[int(index)], _sum(Decimal(str(total)))
        row.failed += n
        row.failed_amount += amount
        if status == InvoiceStatus.PAID:
            row.recovered, row.recovered_amount = row.recovered + n, row.recovered_amount + amount
        elif status == InvoiceStatus.OPEN:
            row.open, row.open_amount = row.open + n, row.open_amount + amount
        else:
            row.lost, row.lost_amount = row.lost + n, row.lost_amount + amount
    return rows


# --- overage, refunds, credit notes ---------------------------------------------------------------------


@dataclass
class MoneyMonth:
    month: Month
    overage: int = 0
    overage_amount: Decimal = ZERO
    refunds: int = 0
    refunds_amount: Decimal = ZERO
    credit_notes: int = 0
    credit_notes_amount: Decimal = ZERO
    credit_amount: Decimal = ZERO  # of which kept as credit on the account (not refund notes)


def overage_invoices(start: datetime, end: datetime):
    """Overage invoices (USE-3) issued in [start, end), not voided; their net amount is the revenue."""
    return (Invoice.objects.filter(kind=InvoiceKind.OVERAGE, number__isnull=False, issued_at__gte=start,
                                   issued_at__lt=end).exclude(status=InvoiceStatus.VOID))


def money_figures(now: datetime, months: list[Month]) -> list[MoneyMonth]:
    rows = {month.key: MoneyMonth(month) for month in months}
    start, end = span(months)

    def by_month(queryset, moment: str, amount: str, **extra):
        return (queryset.annotate(month=TruncMonth(moment, tzinfo=UTC)).values("month")
                .annotate(n=Count("id"), total=Sum(amount), **extra).order_by())

    # The net amount (Invoice.net_amount, in SQL): tax is not revenue, whether prices include it or not.
    net = Case(When(prices_include_tax=True, then=F("subtotal") - F("tax_amount")), default=F("subtotal"))
    for row in by_month(overage_invoices(start, end), "issued_at", net):
        rows[_key(row["month"])].overage, rows[_key(row["month"])].overage_amount = row["n"], _sum(row["total"])
    for row in by_month(Refund.objects.filter(created_at__gte=start, created_at__lt=end), "created_at", "amount"):
        rows[_key(row["month"])].refunds, rows[_key(row["month"])].refunds_amount = row["n"], _sum(row["total"])
    notes = CreditNote.objects.filter(issued_at__gte=start, issued_at__lt=end)
    for row in by_month(notes, "issued_at", "amount",
                        credit=Sum("amount", filter=~Q(kind=CreditNoteKind.REFUND))):
        month = rows[_key(row["month"])]
        month.credit_notes, month.credit_notes_amount = row["n"], _sum(row["total"])
        month.credit_amount = _sum(row["credit"])
    return list(rows.values())


__all__ = ["Change", "Month", "months_window"]
