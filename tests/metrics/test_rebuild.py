"""The stored figures are kept exact (ACC-5): `metrics_rebuild` builds the MRR movements up to an
hour ago and stores the closed months' final figures, `--check` compares both with the ledger,
`--full` rebuilds them; the schedule refreshes them."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from metrics import summary, tasks
from metrics.models import ClosedMonth, MetricsBuild, MrrMovement
from subscriptions import billing, scheduler
from tests.factories import AccountFactory

pytestmark = pytest.mark.django_db


def at(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def history(catalog):
    """Two accounts: one subscribes to Personal on 2026-02-03 and upgrades on 02-10; the other
    subscribes to Advanced on 02-20 and cancels, effective at its period end 03-20."""
    first, second = AccountFactory(), AccountFactory()
    billing.set_payment_method(first, "pm_card_visa:first", now=at("2026-02-01"))
    billing.set_payment_method(second, "pm_card_visa:second", now=at("2026-02-01"))
    billing.subscribe(first, "personal", now=at("2026-02-03T09:00"))
    billing.change_plan(first.subscriptions.order_by("-id").first(), "advanced", now=at("2026-02-10T09:00"))
    billing.subscribe(second, "advanced", now=at("2026-02-20T09:00"))
    billing.cancel(second.subscriptions.order_by("-id").first(), now=at("2026-02-21T09:00"))
    scheduler.run(at("2026-03-20T12:00"))
    return first, second


def run(*args) -> str:
    out = io.StringIO()
    call_command("metrics_rebuild", *args, stdout=out)
    return out.getvalue()


def test_acc5_metrics_rebuild_builds_checks_and_rebuilds(history):
    assert run("--now", "2026-04-01T00:00") == (
        "Rebuilt the MRR movements of 2 accounts (4 movements); built through 2026-03-31T23:00:00+00:00. "
        "Stored 33 closed month figure(s).\n")  # April 2025 ... February 2026 (March ends in less than an hour)
    assert sorted(MrrMovement.objects.values_list("kind", "delta")) == [
        ("churn", Decimal("-29.00")), ("expansion", Decimal("15.00")), ("new", Decimal("14.00")),
        ("new", Decimal("29.00"))]
    feb = ClosedMonth.objects.get(figure="money", month="2026-02-01")
    assert feb.data["refunds"] == 0
    assert ClosedMonth.objects.get(figure="failed-payments", month="2026-02-01").data["failed"] == 0
    assert run("--check") == "The stored movements and closed months match the ledger.\n"
    assert "0 accounts" in run("--now", "2026-04-01T00:00")  # nothing new since
    assert "Stored 3 closed month" in run("--now", "2026-04-02T00:00")  # March is over

    MrrMovement.objects.filter(kind="expansion").update(delta=Decimal("16.00"), to_amount=Decimal("30.00"))
    ClosedMonth.objects.filter(pk=feb.pk).update(data={**feb.data, "refunds": 1})
    with pytest.raises(CommandError, match="2 stored figure"):
        run("--check")
    assert "Rebuilt" in run("--full", "--now", "2026-04-02T00:00")
    assert run("--check") == "The stored movements and closed months match the ledger.\n"

    board = summary.dashboard(at("2026-04-01T00:00"))  # stored months and counted ones together
    march = board.mrr.months[-2]
    assert (march.month.key, march.opening, march.mrr) == ("2026-03", Decimal("58.00"), Decimal("29.00"))


def test_acc5_a_bad_now_is_refused(db):
    with pytest.raises(CommandError, match="not an ISO-8601"):
        run("--now", "yesterday")


def test_acc5_the_schedule_refreshes_the_stored_movements(history):
    assert "metrics-refresh" in tasks.ensure_schedule()
    assert "metrics-refresh: metrics.tasks.scheduled_refresh every 15 min" in run("--schedule")  # idempotent
    schedule = Schedule.objects.get(name="metrics-refresh")
    assert (schedule.func, schedule.minutes) == ("metrics.tasks.scheduled_refresh", 15)
    assert Schedule.objects.filter(name="metrics-refresh").count() == 1
    MetricsBuild.objects.all().delete()
    assert "Rebuilt the MRR movements of 2 accounts" in tasks.scheduled_refresh()  # real now: after the history
    assert MetricsBuild.objects.get().built_through is not None
