"""ACC-5 on a random history: `manage.py simulate` drives accounts through the public engine and
prints the revenue page's tables at its end; whatever happened, the movements add up, the replay
agrees with the subscriptions as they are, the stored rows equal a fresh replay, and each count
is the number of rows its link lists."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from backoffice.simulation import START
from metrics import movements, summary
from metrics.mrr import MOVEMENT_KINDS
from metrics.rows import Figure, figure_rows

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def sqlite_only():
    if connection.vendor != "sqlite":  # like the simulation's own test: CI time
        pytest.skip("the simulation runs on SQLite")


def test_acc5_the_simulation_prints_figures_that_add_up():
    from accounts.models import Account

    out = io.StringIO()
    call_command("simulate", "--here", accounts=5, days=62, seed=5, stdout=out)
    now = START + timedelta(days=62)
    text = out.getvalue()
    assert f"Revenue and health at {now:%Y-%m-%d %H:%M} UTC" in text
    assert "MRR movements: opening MRR + movements = closing MRR" in text and "Check against the subscriptions" in text

    board = summary.dashboard(now)
    assert board.mrr.today.mrr > 0  # the history has paying accounts
    assert board.check_difference == 0
    assert f"MRR today: ${board.mrr.today.mrr:,}" in text
    for row in board.mrr.months:
        assert row.opening + row.net == row.mrr, row.month.key
        paying = Account.objects.filter(figure_rows(Figure("mrr", row.month.key), now)).count()
        assert paying == row.paying_accounts, row.month.key
        for kind in MOVEMENT_KINDS:
            listed = Account.objects.filter(figure_rows(Figure(kind.value, row.month.key), now)).count()
            assert listed == row.movers[kind], (row.month.key, kind)
    movements.movements_refresh(now, full=True)
    assert movements.stored_movements_match_replay() == []
    stored = summary.dashboard(now)
    assert [(r.mrr, r.movements) for r in stored.mrr.months] == [(r.mrr, r.movements) for r in board.mrr.months]
