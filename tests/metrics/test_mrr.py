"""The pure core of the revenue figures (ACC-5): a state's monthly recurring amount, the movement
kinds, and the replay of one account's snapshots. No database."""

import doctest
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import charts
from metrics import mrr
from metrics.movements import Snapshot, bucket_of, chain
from metrics.mrr import Bucket, Kind, RecurringTerms, classify, recurring_monthly_amount

D = Decimal


class Plan:
    """The catalog fields the figures read (plans.models.Plan has the same)."""

    def __init__(self, code, monthly, yearly, extra=None):
        self.code, self.monthly_price, self.yearly_price, self.extra_property_monthly = code, monthly, yearly, extra

    def price_for(self, cycle):
        return self.monthly_price if cycle == "monthly" else self.yearly_price


PLANS = {"free": Plan("free", D("0.00"), None), "personal": Plan("personal", D("14.00"), D("134.40")),
         "advanced": Plan("advanced", D("29.00"), D("278.04"), D("30.00"))}


def test_acc5_doctests_of_the_pure_core():
    for module in (mrr, charts):
        failed, attempted = doctest.testmod(module)
        assert attempted and not failed, module.__name__


@pytest.mark.parametrize(("status", "cycle", "price", "extra", "unit", "expected"), [
    ("active", "monthly", "14.00", 0, None, "14.00"),  # Personal monthly
    ("past_due", "monthly", "14.00", 0, None, "14.00"),  # retries running: still counted (DUN-3)
    ("active", "yearly", "134.40", 0, None, "11.20"),  # a twelfth of the year
    ("active", "yearly", "278.04", 2, "30.00", "83.17"),  # 23.17 + 2 x 30.00 (ADD-1: 12x a year, /12)
    ("active", "monthly", "29.00", 3, "30.00", "119.00"),
    ("active", "yearly", "100.00", 0, None, "8.33"),  # 8.333... rounded half up once
    ("active", "yearly", "100.02", 0, None, "8.34"),  # 8.335 -> 8.34 (half up)
    ("active", "monthly", "14.00", 2, None, "14.00"),  # no add-on on the plan: extra properties cost nothing
    ("trialing", "monthly", "29.00", 0, None, "0.00"),
    ("suspended", "monthly", "29.00", 0, None, "0.00"),
    ("canceled", "yearly", "278.04", 1, "30.00", "0.00"),
])
def test_acc5_recurring_monthly_amount_of_a_state(status, cycle, price, extra, unit, expected):
    terms = RecurringTerms(status, cycle, D(price), extra, D(unit) if unit else None)
    assert recurring_monthly_amount(terms) == D(expected)


def test_acc5_an_unknown_cycle_is_refused():
    with pytest.raises(ValueError, match="weekly"):
        recurring_monthly_amount(RecurringTerms("active", "weekly", D("1.00")))


def test_acc5_a_snapshot_that_records_its_price_is_priced_at_it_not_at_the_catalog():
    """CAT-4: once the engine writes the period's price into its snapshots, a price change in the
    catalog no longer reprices the past."""
    assert bucket_of(Snapshot("personal", "monthly", "active", 0, None), PLANS).amount == D("14.00")
    assert bucket_of(Snapshot("personal", "monthly", "active", 0, "12.00"), PLANS).amount == D("12.00")
    assert bucket_of(Snapshot("personal", "yearly", "active", 0, "120.00"), PLANS).amount == D("10.00")
    assert bucket_of(Snapshot("free", None, None, None, None), PLANS) == Bucket()  # sign-up: no status
    with pytest.raises(LookupError, match="gone"):
        bucket_of(Snapshot("gone", "monthly", "active", 0, None), PLANS)


def test_acc5_movement_kinds():
    paying, more, less = Bucket("personal", "monthly", D("14.00")), Bucket("advanced", "monthly", D("29.00")), \
        Bucket("personal", "yearly", D("11.20"))
    assert classify(Bucket(), paying, paid_before=False) == Kind.NEW
    assert classify(Bucket(), paying, paid_before=True) == Kind.REACTIVATION
    assert classify(paying, more, paid_before=True) == Kind.EXPANSION
    assert classify(paying, less, paid_before=True) == Kind.CONTRACTION
    assert classify(paying, Bucket(), paid_before=True) == Kind.CHURN
    assert classify(paying, Bucket("metered", "monthly", D("14.00")), paid_before=True) == Kind.TRANSFER
    assert classify(paying, paying, paid_before=True) is None
    assert classify(Bucket(), Bucket(), paid_before=False) is None


snapshots = st.builds(
    Snapshot,
    plan=st.sampled_from(["free", "personal", "advanced"]),
    cycle=st.sampled_from(["monthly", "yearly"]),
    status=st.sampled_from(["active", "past_due", "trialing", "suspended", "canceled"]),
    extra_properties=st.integers(min_value=0, max_value=3),
    price=st.none(),
).filter(lambda s: s.plan != "free" or s.cycle == "monthly")


@given(st.lists(snapshots, max_size=25))
def test_acc5_an_accounts_movements_add_up_to_its_mrr_and_link_up(states):
    """Whatever the history, the movements chain (each starts where the last ended), their amounts
    add up to the last state's MRR, and only the first start from nothing is new."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = [(i + 1, start + timedelta(days=i), state) for i, state in enumerate(states)]
    changes = chain(7, events, PLANS)
    final = bucket_of(states[-1], PLANS) if states else Bucket()
    assert sum((c.delta for c in changes), D("0.00")) == final.amount
    assert all(a.after == b.before for a, b in zip(changes, changes[1:], strict=False))
    assert (changes[-1].after if changes else Bucket()) == final
    assert [c.kind for c in changes].count(Kind.NEW) <= 1
    for change in changes:
        assert (change.delta > 0) == (change.kind in (Kind.NEW, Kind.EXPANSION, Kind.REACTIVATION))
        assert (change.delta == 0) == (change.kind == Kind.TRANSFER)
