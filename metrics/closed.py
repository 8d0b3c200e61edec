"""Figures of closed months that can no longer change, stored once (`ClosedMonth`).

Money figures (overage invoiced, refunds, credit notes) count append-only rows by their month: a
month over (an hour ago, like the movements) is final. Failed payments and trials count invoices
whose status may still change, open → paid or void; paid and void are final (INV-2: the engine
voids only open invoices and never reopens one), so their month is final once none of its
invoices is in dunning and none of its trials is still open. The page reads the stored months and
counts the rest, usually the last one or two, from the ledger.
"""

from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal

from django.db import transaction

from .figures import (
    DunningMonth,
    MoneyMonth,
    Month,
    TrialMonth,
    dunning_figures,
    money_figures,
    months_window,
    trial_figures,
)
from .models import ClosedMonth
from .movements import LAG

FIGURES = {
    # name: (count over consecutive months, a month's row, final once its month is closed and ...)
    "trials": (trial_figures, TrialMonth, lambda row: row.open == 0),
    "failed-payments": (dunning_figures, DunningMonth, lambda row: row.open == 0),
    "money": (money_figures, MoneyMonth, lambda row: True),
}


def _dump(row) -> dict:
    return {f.name: (str(v) if isinstance(v, Decimal) else v)
            for f in fields(row) if f.name != "month" for v in [getattr(row, f.name)]}


def _load(cls, month: Month, data: dict):
    values = {f.name: (Decimal(data[f.name]) if f.type in (Decimal, "Decimal") else data[f.name])
              for f in fields(cls) if f.name != "month"}
    return cls(month=month, **values)


def _day(month: Month) -> date:
    return month.start.date()


def with_closed_months(name: str, now: datetime, months: list[Month]) -> list:
    """The figure `name` for `months`: stored months as stored, the others counted now."""
    count, cls, _final = FIGURES[name]
    stored = dict(ClosedMonth.objects.filter(figure=name, month__in=[_day(m) for m in months])
                  .values_list("month", "data"))
    first_live = next((i for i, month in enumerate(months) if _day(month) not in stored), len(months))
    live = count(now, months[first_live:]) if first_live < len(months) else []
    return [_load(cls, month, stored[_day(month)]) for month in months[:first_live]] + live


def closed_months_refresh(now: datetime) -> int:
    """Store the window's closed months whose figures are final; returns how many were stored."""
    closed = [m for m in months_window(now) if not m.to_date and m.end <= now - LAG]
    added = 0
    for name, (count, _cls, final) in FIGURES.items():
        have = set(ClosedMonth.objects.filter(figure=name, month__in=[_day(m) for m in closed])
                   .values_list("month", flat=True))
        todo = [i for i, month in enumerate(closed) if _day(month) not in have]
        if not todo:
            continue
        with transaction.atomic():
            for row in count(now, closed[todo[0]:todo[-1] + 1]):
                if _day(row.month) not in have and final(row):
                    _, created = ClosedMonth.objects.get_or_create(
                        figure=name, month=_day(row.month), defaults={"data": _dump(row), "stored_at": now})
                    added += created
    return added


def closed_months_match_ledger(now: datetime) -> list[str]:
    """Stored months whose figures the ledger no longer gives: empty when they all agree."""
    problems = []
    for name, (count, _cls, _final) in FIGURES.items():
        stored = {row.month: row.data for row in ClosedMonth.objects.filter(figure=name).order_by("month")}
        if not stored:
            continue
        first = min(stored)
        months = [m for m in months_window(now, back=_months_between(first, now)) if _day(m) in stored]
        for month in months:
            fresh = _dump(count(now, [month])[0])
            if fresh != stored[_day(month)]:
                problems.append(f"{name} {month.key}: stored {stored[_day(month)]}, the ledger gives {fresh}")
    return problems


def _months_between(first: date, now: datetime) -> int:
    return (now.year - first.year) * 12 + now.month - first.month
