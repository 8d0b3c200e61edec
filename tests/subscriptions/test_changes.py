"""Issue 24: a pending change has one vocabulary (`changes.ChangeKind`), one typed form
(`PendingChange`, written to and read from the invoice's JSON in one place) and one rule for what
it leaves (`lifecycle.change_apply`), read by the quote and the engine alike."""

import copy
from datetime import UTC, datetime

import pytest

from invoices.models import Invoice
from subscriptions import billing, lifecycle
from subscriptions.changes import ChangeKind, PendingChange
from tests.subscriptions.conftest import at, current

# Invoices' `pending_change` as the engine has stored them (keys and order), one per charged kind.
STORED = [
    {"action": "subscribe", "plan": "advanced", "cycle": "monthly", "start": "2026-04-16T00:00:00+00:00",
     "timezone": "Europe/Berlin", "from_subscription": 7, "actor_id": 3},
    {"action": "upgrade", "plan": "advanced", "cycle": "yearly", "from_plan": "personal", "from_cycle": "monthly",
     "period_start": "2026-04-01T00:00:00+00:00", "new_start": "2026-04-16T00:00:00+00:00", "timezone": "UTC",
     "forfeited_days": 15, "actor_id": None},
    {"action": "add_on", "quantity": 2, "actor_id": 3},
    {"action": "reactivate", "start": "2026-05-20T00:00:00+00:00", "timezone": "America/New_York", "actor_id": None},
]


@pytest.mark.parametrize("stored", STORED, ids=[s["action"] for s in STORED])
def test_pay4_a_stored_pending_change_reads_as_one_typed_change_and_writes_back_the_same(stored):
    """Rows already stored keep reading (and `terms`' readers of `action`, `new_start`,
    `forfeited_days` keep finding them): JSON -> PendingChange -> the same JSON."""
    change = PendingChange.from_json(stored)
    assert change.kind == ChangeKind(stored["action"]) and change.to_json() == stored
    assert list(change.to_json()) == list(stored)


def test_pay4_a_change_recorded_before_issue_15_has_no_zone_and_applies_on_utc():
    """D-5: a subscribe row without `timezone` starts its period on UTC's calendar, as it was quoted."""
    change = PendingChange.from_json({"action": "subscribe", "plan": "advanced", "cycle": "monthly",
                                      "start": "2026-04-16T00:00:00+00:00"})
    assert change.start == datetime(2026, 4, 16, tzinfo=UTC) and lifecycle.quoted_zone(change) == "UTC"
    assert PendingChange.from_json({}) is None


def test_pay4_an_unknown_kind_is_refused():
    """Nothing is applied from a change the engine does not know."""
    with pytest.raises(ValueError):
        PendingChange.from_json({"action": "refund_everything"})


@pytest.mark.django_db
@pytest.mark.parametrize(("plan", "cycle"), [("advanced", "yearly"), ("advanced", "monthly")])
def test_upg2_upg3_the_quotes_after_copy_is_what_the_engine_writes(account, plan, cycle):
    """PAY-4: `change_apply` on an unsaved copy (the quote's "what the change would leave") gives
    the plan, cycle, period and price the paid upgrade then writes on the row."""
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    sub = current(account)
    quoted = billing.preview_change(sub, plan, cycle, now=at("2026-04-16"))
    billing.change_plan(sub, plan, cycle, now=at("2026-04-16"))
    invoice = Invoice.objects.get(account=account, kind="upgrade")
    change = PendingChange.from_json(invoice.pending_change)
    assert change.kind == ChangeKind.UPGRADE and change.new_series == (cycle == "yearly")
    after = copy.copy(sub)
    after.pk = None
    after = lifecycle.change_apply(after, change, current(account).plan, now=at("2026-04-16"))
    written = current(account)
    fields = ("plan_id", "cycle", "anchor_at", "period_index", "current_period_start", "current_period_end",
              "current_price", "timezone", "scheduled_plan_id", "cancel_at_period_end")
    assert [getattr(after, f) for f in fields] == [getattr(written, f) for f in fields]
    assert quoted.next_charge.upcoming.start == written.current_period_end  # the quote's next charge renews it
