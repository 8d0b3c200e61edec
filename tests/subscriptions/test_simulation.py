"""The year-in-fast-forward: many accounts through the engine, then the ledger invariants (REN-3, INV-1)."""

import pytest
from django.db import connection

from backoffice.simulation import simulate
from invoices.models import Invoice

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def sqlite_only():
    # 9,600 billing runs: on SQLite only, to keep CI short; PostgreSQL's concurrency has its own tests.
    if connection.vendor != "sqlite":
        pytest.skip("the simulation runs on SQLite")


def test_ren3_simulated_year_keeps_every_ledger_invariant():
    # The run every 4 hours rather than every hour: the same renewals (24 hours of lead), a quarter of the runs.
    result = simulate(accounts=10, days=400, seed=7, runs_per_day=6)
    assert result.ok, str(result)
    assert set(result.invariants) == {"one invoice per period", "no payment charged twice", "invoice numbers gapless",
                                      "credit notes in range", "active accounts paid up"}
    # The history really exercised the engine.
    assert result.actions.get("start_trial", 0) + result.actions.get("subscribe", 0) >= 5
    assert result.actions.get("card_runs_dry", 0) >= 1 and result.actions.get("fix_card", 0) >= 1
    assert Invoice.objects.filter(kind="renewal", status="paid").count() >= 10
    assert Invoice.objects.filter(kind="trial_conversion").exists()
    assert result.runs == 400 * 6

