"""USE-2/USE-3 inputs for the billing page, and the pure quota arithmetic."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accounts.models import Integration, Property, UsageMonth
from accounts.months import month_included, month_start
from subscriptions.pricing import overage_amount
from subscriptions.usage_panel import projected_sessions, usage_summary
from usage.quota import alert_thresholds_crossed, hard_cap_room

from .conftest import on_plan

NOV_10 = datetime(2026, 11, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sessions", "included", "price", "expected"),
    [
        (12_500, 10_000, "2.00", "5.00"),  # USE-3's example
        (10_000, 10_000, "2.00", "0.00"),
        (10_001, 10_000, "2.00", "0.00"),  # 0.002 rounds to 0.00
        (10_003, 10_000, "1.50", "0.00"),  # 0.0045 -> 0.00
        (10_004, 10_000, "1.50", "0.01"),  # 0.006 -> 0.01
        (100_333, 100_000, "1.50", "0.50"),  # 0.4995 -> 0.50, half up
        (5_000, 1_000, None, "0.00"),  # hard cap: no overage
        (5_000, None, "2.00", "0.00"),  # unlimited quota
    ],
)
def test_use3_overage_amount_pro_rata_per_session(sessions, included, price, expected):
    assert overage_amount(sessions, included, Decimal(price) if price else None) == Decimal(expected)


def test_use3_month_included_is_the_highest_quota_and_unlimited_wins():
    assert month_included(1_000, 10_000) == 10_000
    assert month_included(10_000, 1_000) == 10_000
    assert month_included(None, 1_000) is None and month_included(1_000, None) is None


def test_use4_hard_cap_room():
    assert hard_cap_room(999, 1000, True) == 1
    assert hard_cap_room(1000, 1000, True) == 0
    assert hard_cap_room(1200, 1000, True) == 0  # quota lowered below usage: still nothing counts
    assert hard_cap_room(5000, 1000, False) is None
    assert hard_cap_room(5000, None, True) is None


def test_use6_thresholds_crossed():
    assert alert_thresholds_crossed(7_999, 8_000, 10_000) == [80]
    assert alert_thresholds_crossed(8_000, 9_999, 10_000) == []
    assert alert_thresholds_crossed(7_000, 10_000, 10_000) == [80, 100]
    assert alert_thresholds_crossed(0, 5, None) == [] and alert_thresholds_crossed(0, 5, 0) == []


@given(
    st.integers(0, 10**7), st.integers(0, 10**6), st.integers(1, 10**7),
)
def test_use6_each_threshold_is_crossed_by_exactly_one_step_of_a_split_batch(before, step, included):
    """Counting a batch in one go or in two parts crosses the same thresholds."""
    middle = before + step // 2
    after = before + step
    whole = alert_thresholds_crossed(before, after, included)
    split = alert_thresholds_crossed(before, middle, included) + alert_thresholds_crossed(middle, after, included)
    assert whole == split


@given(st.datetimes(timezones=st.just(UTC)))
def test_use1_month_start_is_the_first_of_the_utc_month(moment):
    first = month_start(moment)
    assert first.day == 1 and (first.year, first.month) == (moment.year, moment.month)


def test_use2_projection_extrapolates_linearly_to_the_month_end():
    assert projected_sessions(3_000, NOV_10) == 10_000  # 9 of 30 days elapsed
    assert projected_sessions(0, NOV_10) == 0
    assert projected_sessions(500, datetime(2026, 11, 1, 3, tzinfo=UTC)) == 15_000  # first day counts as one


def test_use2_usage_summary_for_the_billing_page(catalog):
    prop = on_plan(catalog["personal"])
    Property.objects.create(account=prop.account, name="Two", domain="two.example.com")
    Integration.objects.create(account=prop.account, kind="google_ads")
    UsageMonth.objects.create(account=prop.account, month=date(2026, 11, 1), sessions=6_000, sessions_included=10_000)
    summary = usage_summary(prop.account, now=NOV_10)
    assert summary == {
        "month": "2026-11", "month_name": "November 2026", "plan": "personal", "currency": "USD",
        "sessions_used": 6_000, "sessions_included": 10_000, "plan_sessions_limit": 10_000, "percent": 60,
        "hard_capped": False, "quota_exhausted": False,
        "properties_used": 2, "properties_limit": 3, "integrations_used": 1, "integrations_limit": None,
        "overage_per_1000": Decimal("2.00"), "overage_sessions": 0, "overage_amount": Decimal("0.00"),
        "projected_sessions": 20_000, "projected_overage_sessions": 10_000,
        "projected_overage_amount": Decimal("20.00"),
    }


def test_use4_summary_of_a_hard_capped_plan_projects_no_overage(catalog):
    prop = on_plan(catalog["free"])
    UsageMonth.objects.create(account=prop.account, month=date(2026, 11, 1), sessions=1_000, sessions_included=1_000)
    summary = usage_summary(prop.account, now=NOV_10)
    assert summary["quota_exhausted"] is True and summary["percent"] == 100
    assert summary["projected_sessions"] == 1_000
    assert summary["projected_overage_amount"] == Decimal("0.00") and summary["overage_per_1000"] is None


def test_use2_summary_with_no_usage_yet(catalog):
    prop = on_plan(catalog["advanced"])
    summary = usage_summary(prop.account, now=NOV_10)
    assert (summary["sessions_used"], summary["sessions_included"], summary["percent"]) == (0, 100_000, 0)
    assert summary["projected_overage_amount"] == Decimal("0.00")
