"""The dashboard's tables and charts, built once from the figures: the page renders the tables
(each number linked to the admin list of the rows behind it) beside their charts, and the CSV
download writes the same tables with raw numbers."""

from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.apps import apps
from django.urls import get_urlconf, reverse
from django.utils.http import urlencode

from core import charts
from core.charts import PALETTE, Series
from core.money import format_money

from .mrr import KIND_LABELS, MOVEMENT_KINDS, Kind
from .rows import Figure
from .summary import Dashboard

MOVEMENT_COLORS = {Kind.NEW: "#0072B2", Kind.EXPANSION: "#009E73", Kind.REACTIVATION: "#6A3D9A",
                   Kind.CONTRACTION: "#D55E00", Kind.CHURN: "#8C2D04"}


@dataclass(frozen=True)
class Cell:
    text: str
    value: object = None  # the raw value for the CSV (Decimal, int, str or None)
    url: str = ""
    numeric: bool = True


@dataclass
class Table:
    slug: str
    title: str
    headers: list
    rows: list = field(default_factory=list)  # lists of Cell; the first cell heads the row
    chart: str = ""
    notes: str = ""

    def csv_rows(self):
        yield self.headers
        for row in self.rows:
            yield ["" if cell.value is None else cell.value for cell in row]


def figure_url(figure: Figure) -> str:
    return f"{_changelist(figure.model, get_urlconf())}?{urlencode({'figure': str(figure)})}"


@lru_cache(maxsize=32)
def _changelist(model: str, urlconf) -> str:
    app_label, name = model.split(".")
    return reverse(f"admin:{app_label}_{name}_changelist", urlconf=urlconf)


def money(amount: Decimal, url: str = "", *, signed: bool = False, currency: str = "USD") -> Cell:
    text = format_money(amount, currency)
    if signed and amount > 0:
        text = "+" + text
    return Cell(text, amount, url)


def count(n: int, url: str = "") -> Cell:
    return Cell(f"{n:,}", n, url)


def percent(value: Decimal | None) -> Cell:
    return Cell("—" if value is None else f"{value}%", value)


def month_cell(month) -> Cell:
    return Cell(month.label, month.key, numeric=False)


def mrr_table(board: Dashboard) -> Table:
    mrr = board.mrr
    names = [f"{mrr.plan_names.get(plan, plan)} ({cycle})" for plan, cycle in mrr.buckets]
    table = Table("mrr", "MRR and ARR by plan and cycle, at each month's end",
                  ["Month"] + [f"{name} MRR" for name in names] + ["MRR", "ARR", "Paying accounts"])
    for row in mrr.months:
        cells = [month_cell(row.month)]
        for plan, cycle in mrr.buckets:
            url = figure_url(Figure("mrr", row.month.key, plan, cycle))
            cells.append(money(row.by_bucket.get((plan, cycle), Decimal("0.00")), url))
        every = figure_url(Figure("mrr", row.month.key))
        cells += [money(row.mrr, every), money(row.arr, every), count(row.paying_accounts, every)]
        table.rows.append(cells)
    table.chart = charts.bar_chart(
        label="MRR at each month's end, stacked by plan and cycle; the numbers are in the table beside.",
        categories=[row.month.short for row in mrr.months],
        series=[Series(name, tuple(row.by_bucket.get(bucket, 0) for row in mrr.months), PALETTE[i % len(PALETTE)])
                for i, (name, bucket) in enumerate(zip(names, mrr.buckets, strict=True))])
    return table


def movements_table(board: Dashboard) -> Table:
    kinds = MOVEMENT_KINDS
    table = Table("movements", "MRR movements: opening MRR + movements = closing MRR",
                  ["Month", "Opening MRR"] + [f"{KIND_LABELS[k]} MRR" for k in kinds]
                  + [f"{KIND_LABELS[k]} accounts" for k in kinds] + ["Net change", "Closing MRR"])
    for row in board.mrr.months:
        cells = [month_cell(row.month), money(row.opening)]
        for kind in kinds:
            cells.append(money(row.movements[kind], figure_url(Figure(kind.value, row.month.key)), signed=True))
        for kind in kinds:
            cells.append(count(row.movers[kind], figure_url(Figure(kind.value, row.month.key))))
        cells += [money(row.net, signed=True), money(row.mrr, figure_url(Figure("mrr", row.month.key)))]
        table.rows.append(cells)
    table.chart = charts.bar_chart(
        label="MRR movements per month: new, expansion and reactivation up, contraction and churn down; "
              "the numbers are in the table beside.",
        categories=[row.month.short for row in board.mrr.months],
        series=[Series(KIND_LABELS[k], tuple(row.movements[k] for row in board.mrr.months), MOVEMENT_COLORS[k])
                for k in kinds])
    return table


def trials_table(board: Dashboard) -> Table:
    table = Table("trials", "Trials by the month they started",
                  ["Month", "Trials started", "Converted", "Still open", "Ended", "Conversion rate"])
    for row in board.trials:
        key = row.month.key
        table.rows.append([month_cell(row.month), count(row.started, figure_url(Figure("trials", key))),
                           count(row.converted, figure_url(Figure("converted", key))), count(row.open),
                           count(row.ended), percent(row.rate)])
    table.chart = charts.bar_chart(
        label="Trials started and converted per month; the numbers are in the table beside.",
        categories=[row.month.short for row in board.trials], stacked=False, money=False,
        series=[Series("Started", tuple(r.started for r in board.trials), "#0072B2"),
                Series("Converted", tuple(r.converted for r in board.trials), "#009E73")])
    return table


def dunning_table(board: Dashboard) -> Table:
    table = Table("failed-payments", "Failed payments by the month they first failed, and what became of them",
                  ["Month", "Failed", "Failed amount", "Recovered", "Recovered amount", "Lost", "Lost amount",
                   "In dunning", "In dunning amount", "Recovery rate"])
    for row in board.dunning:
        key = row.month.key
        failed, recovered = figure_url(Figure("failed", key)), figure_url(Figure("recovered", key))
        lost, open_ = figure_url(Figure("lost", key)), figure_url(Figure("in_dunning", key))
        table.rows.append([month_cell(row.month), count(row.failed, failed), money(row.failed_amount, failed),
                           count(row.recovered, recovered), money(row.recovered_amount, recovered),
                           count(row.lost, lost), money(row.lost_amount, lost), count(row.open, open_),
                           money(row.open_amount, open_), percent(row.rate)])
    table.chart = charts.bar_chart(
        label="Failed payments and recovered payments per month; the numbers are in the table beside.",
        categories=[row.month.short for row in board.dunning], stacked=False, money=False,
        series=[Series("Failed", tuple(r.failed for r in board.dunning), "#D55E00"),
                Series("Recovered", tuple(r.recovered for r in board.dunning), "#009E73")])
    return table


def money_table(board: Dashboard) -> Table:
    table = Table("overage-refunds-credit", "Overage invoiced, refunds and credit notes",
                  ["Month", "Overage invoices", "Overage amount", "Refunds", "Refunded amount", "Credit notes",
                   "Credit notes amount", "Of which credit kept on account"])
    for row in board.money:
        key = row.month.key
        overage, refunds = figure_url(Figure("overage", key)), figure_url(Figure("refunds", key))
        notes = figure_url(Figure("credit_notes", key))
        table.rows.append([month_cell(row.month), count(row.overage, overage), money(row.overage_amount, overage),
                           count(row.refunds, refunds), money(row.refunds_amount, refunds),
                           count(row.credit_notes, notes), money(row.credit_notes_amount, notes),
                           money(row.credit_amount)])
    table.chart = charts.bar_chart(
        label="Overage invoiced, refunds and credit notes per month, in dollars; the numbers are in the table "
              "beside.",
        categories=[row.month.short for row in board.money], stacked=False,
        series=[Series("Overage", tuple(r.overage_amount for r in board.money), "#0072B2"),
                Series("Refunds", tuple(r.refunds_amount for r in board.money), "#D55E00"),
                Series("Credit notes", tuple(r.credit_notes_amount for r in board.money), "#6A3D9A")])
    return table


def today_cards(board: Dashboard) -> list[tuple[str, Cell]]:
    """The headline: where MRR stands now and how it moved this month."""
    today = board.mrr.today
    key = today.month.key
    paying = figure_url(Figure("mrr", key))
    return [
        ("MRR today", money(today.mrr, paying)),
        ("ARR today", money(today.arr, paying)),
        ("Paying accounts", count(today.paying_accounts, paying)),
        ("MRR change this month", money(today.net, signed=True)),
        ("New this month", money(today.movements[Kind.NEW], figure_url(Figure("new", key)), signed=True)),
        ("Churn this month", money(today.movements[Kind.CHURN], figure_url(Figure("churn", key)), signed=True)),
    ]


BUILDERS = (mrr_table, movements_table, trials_table, dunning_table, money_table)


def tables(board: Dashboard) -> list[Table]:
    return [build(board) for build in BUILDERS]


def model_label(figure: Figure) -> str:
    return apps.get_model(figure.model)._meta.verbose_name_plural
