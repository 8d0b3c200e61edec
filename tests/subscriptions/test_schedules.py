import pytest
from django.core.management import call_command
from django_q.models import Schedule

from subscriptions import tasks

pytestmark = pytest.mark.django_db


def test_ren1_setup_schedules_is_idempotent_and_runs_the_billing_run_every_15_minutes(capsys):
    call_command("setup_schedules")
    call_command("setup_schedules")
    names = sorted(Schedule.objects.values_list("name", flat=True))
    assert names == ["billing-run", "email-retries", "ledger-check", "metrics-refresh", "reconcile-payments",
                     "usage-events-prune"]
    run = Schedule.objects.get(name="billing-run")
    assert (run.func, run.schedule_type, run.minutes) == ("subscriptions.tasks.scheduled_run", Schedule.MINUTES, 15)
    assert "billing-run" in capsys.readouterr().out


def test_scheduled_run_returns_the_report(catalog):
    """The scheduled task runs the billing run and returns its report."""
    assert "Billing run at" in tasks.scheduled_run()
