"""Overage (USE-3): on the 1st of each month, one invoice per account for the sessions over the
previous month's quota, with the sessions of the two months before it that were reported after
their own invoice (usage events are accepted 35 days late, USE-1). Charged at once; dunning applies.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.db.models.functions import Coalesce

from accounts.models import UsageMonth
from invoices import services as ledger
from invoices.models import Invoice, InvoiceKind

from . import charges, pricing
from .locks import account_lock, subscription_lock
from .models import Subscription

log = logging.getLogger(__name__)


def previous_month(now) -> date:
    first = now.date().replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


LATE_USAGE_MONTHS = 2  # usage events are accepted 35 days late: a month grows until early in the month after next


def overage_months(month: date) -> list[date]:
    """The months the overage invoice made for `month` covers: `month` itself, and the late usage of
    the months before that may still have grown since their own invoice."""
    return [pricing.add_months(month, -back) for back in range(LATE_USAGE_MONTHS, -1, -1)]


def overage_run(now, report) -> None:
    """On the 1st (and after, until done): one overage invoice per account for the previous month,
    with the sessions of earlier months reported after their invoice. Counts and failures go to
    `report`."""
    month = previous_month(now)
    for account_id in overage_candidates(month):
        try:
            if overage_invoice(account_id, month, now):
                report.add("overage")
        except Exception as exc:
            log.exception("overage failed for account %s", account_id)
            report.failures.append(("overage", account_id, f"{type(exc).__name__}: {exc}"))


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
    sub = Subscription.objects.select_related("plan").current_of(account)
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
        period = (start, pricing.calendar_shift(start, UTC, months=1))  # USE-1: usage months are UTC months
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
        account = account_lock(account_id)
        key = f"overage:{account.pk}:{month:%Y-%m}"
        if Invoice.objects.filter(dedupe_key=key).exists():
            return False
        owed = overage_terms(account, month)
        if owed is None:
            return False
        sub = subscription_lock(owed.subscription.pk)
        period = (min(line.period_start for line in owed.lines), max(line.period_end for line in owed.lines))
        payment = charges.invoice_issue_and_begin(sub, InvoiceKind.OVERAGE, owed.lines, period, key, now)
        for usage_id, sessions in owed.counted.items():  # the counts read, not the rows' current ones
            UsageMonth.objects.filter(pk=usage_id).update(sessions_billed=sessions)
    charges.payment_send_and_settle(payment, now)
    return True
