"""The rows behind each revenue figure (ACC-5): the admin lists' "revenue figure" filter shows the
accounts, invoices, refunds and credit notes a figure counts, by the same definitions as the figures
(metrics.figures). Definitions: docs/metrics.md."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import BigIntegerField, Count, Min, Q
from django.db.models.functions import Cast

from accounts.models import AuditEvent
from invoices.models import CreditNote, InvoiceKind, InvoiceStatus, Refund

from .figures import EPSILON, Month, overage_invoices, trial_cohort
from .movements import Tail, by_account, tail
from .mrr import MOVEMENT_KINDS, Bucket, Kind

# --- the rows behind a figure (the admin lists' "figure" filter) ----------------------------------------


class UnknownFigure(ValueError):
    pass


FIGURE_MODELS = {
    "mrr": "accounts.account", "new": "accounts.account", "expansion": "accounts.account",
    "reactivation": "accounts.account", "contraction": "accounts.account", "churn": "accounts.account",
    "trials": "accounts.account", "converted": "accounts.account",
    "failed": "invoices.invoice", "recovered": "invoices.invoice", "lost": "invoices.invoice",
    "in_dunning": "invoices.invoice", "overage": "invoices.invoice",
    "refunds": "invoices.refund", "credit_notes": "invoices.creditnote",
}
FIGURE_TITLES = {
    "mrr": "paying at the end of {month}", "new": "new MRR in {month}", "expansion": "expansion in {month}",
    "reactivation": "reactivated in {month}", "contraction": "contraction in {month}",
    "churn": "churned in {month}", "trials": "trials started in {month}",
    "converted": "trials of {month} converted", "failed": "payments first failed in {month}",
    "recovered": "failed in {month}, recovered", "lost": "failed in {month}, lost",
    "in_dunning": "failed in {month}, still in dunning", "overage": "overage invoiced in {month}",
    "refunds": "refunds in {month}", "credit_notes": "credit notes of {month}",
}


@dataclass(frozen=True)
class Figure:
    """A figure's address: `name:YYYY-MM`, or `mrr:YYYY-MM:plan:cycle` for one plan and cycle."""

    name: str
    month: str
    plan: str = ""
    cycle: str = ""

    @classmethod
    def parse(cls, value: str) -> "Figure":
        parts = (value or "").split(":")
        if len(parts) not in (2, 4) or parts[0] not in FIGURE_MODELS or (len(parts) == 4 and parts[0] != "mrr"):
            raise UnknownFigure(f"Unknown figure {value!r}.")
        try:
            year, month = (int(p) for p in parts[1].split("-"))
            datetime(year, month, 1)
        except ValueError:
            raise UnknownFigure(f"Unknown month in {value!r}.") from None
        return cls(*parts)

    def __str__(self) -> str:
        return ":".join([self.name, self.month] + ([self.plan, self.cycle] if self.plan else []))

    @property
    def model(self) -> str:
        return FIGURE_MODELS[self.name]

    def title(self, now: datetime) -> str:
        month = Month.of(self.month, now)
        text = FIGURE_TITLES[self.name].format(month=month.label)
        if self.name == "mrr" and month.to_date:
            text = "paying now"
        if self.plan:
            text += f" on {self.plan} ({self.cycle})"
        return text[0].upper() + text[1:]


def figure_rows(figure: Figure, now: datetime) -> Q:
    """The rows a figure counts, as a condition on the primary key of its model (`figure.model`)."""
    month = Month.of(figure.month, now)
    end = now + EPSILON if month.to_date else month.end
    name = figure.name
    if name == "mrr":
        return _paying_accounts(end, now, figure.plan, figure.cycle)
    if name in {k.value for k in MOVEMENT_KINDS}:
        return _moving_accounts(Kind(name), month.start, end, now)
    if name in ("trials", "converted"):
        cohort = trial_cohort(month.start, end)
        if name == "converted":
            cohort = cohort.filter(invoices__kind=InvoiceKind.TRIAL_CONVERSION, invoices__status=InvoiceStatus.PAID)
        return Q(pk__in=cohort.values("account_id"))
    if name in ("failed", "recovered", "lost", "in_dunning"):
        failed = Q(pk__in=_first_failed_invoices(month.start, end))
        if name == "failed":
            return failed
        wanted = {"recovered": [InvoiceStatus.PAID], "in_dunning": [InvoiceStatus.OPEN],
                  "lost": [InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE]}[name]
        return failed & Q(status__in=wanted)
    if name == "overage":
        return Q(pk__in=overage_invoices(month.start, end).values("pk"))
    if name == "refunds":
        return Q(pk__in=Refund.objects.filter(created_at__gte=month.start, created_at__lt=end).values("pk"))
    return Q(pk__in=CreditNote.objects.filter(issued_at__gte=month.start, issued_at__lt=end).values("pk"))


def _first_failed_invoices(start: datetime, end: datetime):
    """Ids of the invoices whose first failed collection is in [start, end), as a subquery."""
    return (AuditEvent.objects.filter(action="payment.failed", object_type="Invoice").values("object_id")
            .annotate(first=Min("created_at")).filter(first__gte=start, first__lt=end)
            .values(invoice_id=Cast("object_id", BigIntegerField())).order_by())


def _with_tail(stored, the_tail: Tail, found: set[int]) -> Q:
    """Stored rows' accounts, except those recorded since the build, which are replayed (`found`)."""
    return (Q(pk__in=stored) & ~Q(pk__in=sorted(the_tail.accounts))) | Q(pk__in=sorted(found))


def _paying_accounts(end: datetime, now: datetime, plan: str, cycle: str) -> Q:
    """Accounts counted in MRR (on `plan` and `cycle` if given) just before `end`: those whose
    movements before `end` bring them into the bucket more often than out of it, the same sums as
    the figure."""
    from .models import MrrMovement

    def into(prefix):
        condition = Q(**{f"{prefix}_amount__gt": 0})
        if plan:
            condition &= Q(**{f"{prefix}_plan": plan, f"{prefix}_cycle": cycle})
        return condition

    the_tail = tail(now)
    stored = (MrrMovement.objects.filter(at__lt=end, at__lte=now).values("account_id")
              .annotate(score=Count("id", filter=into("to")) - Count("id", filter=into("from")))
              .filter(score__gt=0).values("account_id").order_by())
    found = set()
    for account, changes in by_account(the_tail.added).items():
        score = 0
        for change in changes:
            if change.at < end and change.at <= now:
                score += _in_bucket(change.after, plan, cycle) - _in_bucket(change.before, plan, cycle)
        if score > 0:
            found.add(account)
    return _with_tail(stored, the_tail, found)


def _in_bucket(bucket: Bucket, plan: str, cycle: str) -> int:
    return int(bucket.amount > 0 and (not plan or (bucket.plan, bucket.cycle) == (plan, cycle)))


def _moving_accounts(kind: Kind, start: datetime, end: datetime, now: datetime) -> Q:
    from .models import MrrMovement

    the_tail = tail(now)
    stored = MrrMovement.objects.filter(kind=kind.value, at__gte=start, at__lt=end, at__lte=now).values("account_id")
    found = {c.account_id for c in the_tail.added if c.kind == kind and start <= c.at < end and c.at <= now}
    return _with_tail(stored, the_tail, found)
