"""`manage.py billing_run --now` with bad input: a clear error and nothing done (issue 16). Before,
9999-12-31T23:59:59 and 0001-01-01 were OverflowError tracebacks and an empty --now ran silently at
the real time."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from accounts.models import AuditEvent
from invoices.models import Invoice, Payment
from subscriptions import billing
from subscriptions.models import BillingRunLock, Subscription

from .conftest import at

ROOT = Path(__file__).resolve().parents[2]


def state() -> dict:
    return {
        "subscriptions": list(Subscription.objects.order_by("id").values()),
        "invoices": Invoice.objects.count(),
        "payments": Payment.objects.count(),
        "audit": AuditEvent.objects.count(),
        "locks": list(BillingRunLock.objects.values()),
    }


@pytest.fixture
def due(account):
    """A subscription whose renewal is due at any --now after 2026-04-30."""
    billing.subscribe(account, "advanced", now=at("2026-04-01"))
    return account


@pytest.mark.parametrize(("now", "message"), [
    ("9999-12-31T23:59:59", "is outside the moments a billing run can act at (2000-01-01 to 2099-12-31 23:59:59 UTC)"),
    ("0001-01-01", "is outside the moments a billing run can act at"),
    ("0001-01-01T00:00+01:00", "is outside the moments a billing run can act at"),
    ("9999-12-31T23:00-05:00", "is outside the moments a billing run can act at"),
    ("", "--now is empty. Give an ISO-8601 moment like 2026-12-01T00:00, or leave --now out"),
    ("   ", "--now is empty"),
    ("next tuesday", "is not an ISO-8601 date or time"),
])
def test_billing_run_refuses_a_bad_now_and_does_nothing(due, now, message):
    """D-4: billing_run refuses a --now outside its range with a message, and runs nothing."""
    before = state()

    with pytest.raises(CommandError) as exc:
        call_command("billing_run", "--now", now)

    assert message in str(exc.value) and str(exc.value).endswith("Nothing was run.")
    assert state() == before


def test_billing_run_at_the_edges_of_the_range_runs(due, capsys):
    """D-4: billing_run accepts the first and last moments of its allowed range (dry runs)."""
    call_command("billing_run", "--now", "2099-12-31T23:59:59", "--dry-run")
    call_command("billing_run", "--now", "2000-01-01", "--dry-run")
    assert "dry run" in capsys.readouterr().out


def test_billing_run_empty_now_from_the_shell_is_an_error_not_a_run_at_the_real_time():
    """D-4: an empty --now is an error, not a run at the real time."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    done = subprocess.run([sys.executable, "manage.py", "billing_run", "--now", ""], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "CommandError: --now is empty" in done.stderr and "Traceback" not in done.stderr
