"""The pricing core against the billing policy, without a database.

Each test is named after the rule it proves; every worked example of the policy
is here to the cent. Hypothesis checks the invariants the examples only sample.
"""

import ast
import calendar
import dataclasses
import doctest
import inspect
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import money as money_module
from core.money import CENT, cents, format_money, share
from subscriptions import period_math, pricing
from subscriptions.pricing import (
    Period,
    Quote,
    QuoteLine,
    add_months,
    add_working_days,
    add_years,
    addon_line,
    day_split,
    overage_line,
    period_bounds,
    period_end_for,
    prorate,
    restore_deadline,
    restore_window_open,
    unused_credit_line,
    upgrade_difference_line,
)

D = Decimal
APRIL = Period(date(2026, 4, 1), date(2026, 5, 1))  # the policy's 30-day example period
JUNE = Period(date(2026, 6, 1), date(2026, 7, 1))

# Strategies -------------------------------------------------------------------

prices = st.decimals(min_value=D("0"), max_value=D("100000"), places=2)
anchors = st.dates(min_value=date(1990, 1, 1), max_value=date(2200, 12, 31))


@st.composite
def periods_and_days(draw):
    """A monthly or yearly period and a change day anywhere around it."""
    start = draw(anchors)
    cycle = draw(st.sampled_from(["monthly", "yearly"]))
    period = Period(*period_bounds(start, cycle, 0))
    on = start + timedelta(days=draw(st.integers(-5, period.days + 5)))
    return period, on


# D-1 Periods ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "n", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2026, 2, 28), 1, date(2026, 3, 28)),  # from a clamped end it would not return: use the anchor
        (date(2026, 1, 31), 2, date(2026, 3, 31)),
        (date(2026, 1, 31), 3, date(2026, 4, 30)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),  # leap year
        (date(2026, 1, 30), 1, date(2026, 2, 28)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),  # across a year end
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 4, 16), 0, date(2026, 4, 16)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2026, 4, 1), 120, date(2036, 4, 1)),
    ],
)
def test_d1_add_months_clamps_to_month_length(value, n, expected):
    assert add_months(value, n) == expected


def test_d1_an_instant_moves_only_on_a_zones_calendar():
    """Issue 15: the UTC-only path is gone; an instant moves with calendar_shift and its zone."""
    value = datetime(2026, 1, 31, 13, 45, tzinfo=UTC)
    with pytest.raises(TypeError, match="calendar_shift"):
        add_months(value, 1)
    assert pricing.calendar_shift(value, UTC, months=1) == datetime(2026, 2, 28, 13, 45, tzinfo=UTC)
    assert add_months(value.replace(tzinfo=None), 1) == datetime(2026, 2, 28, 13, 45)  # a local wall-clock time


@pytest.mark.parametrize(
    ("anchor", "index", "expected"),
    [
        # Jan 31 -> Feb 28 -> Mar 31: each bound comes from the anchor, not the last end.
        (date(2026, 1, 31), 0, (date(2026, 1, 31), date(2026, 2, 28))),
        (date(2026, 1, 31), 1, (date(2026, 2, 28), date(2026, 3, 31))),
        (date(2026, 1, 31), 2, (date(2026, 3, 31), date(2026, 4, 30))),
        (date(2026, 1, 31), 3, (date(2026, 4, 30), date(2026, 5, 31))),
        (date(2028, 1, 31), 0, (date(2028, 1, 31), date(2028, 2, 29))),
        (date(2028, 1, 31), 1, (date(2028, 2, 29), date(2028, 3, 31))),
        (date(2026, 4, 1), 0, (date(2026, 4, 1), date(2026, 5, 1))),
        (date(2026, 4, 1), 1, (date(2026, 5, 1), date(2026, 6, 1))),  # UPG-2: renews 05-01
    ],
)
def test_d1_monthly_periods_follow_the_anchor(anchor, index, expected):
    assert period_bounds(anchor, "monthly", index) == expected


@pytest.mark.parametrize(
    ("anchor", "index", "expected", "days"),
    [
        (date(2026, 4, 16), 0, (date(2026, 4, 16), date(2027, 4, 16)), 365),
        (date(2027, 4, 16), 0, (date(2027, 4, 16), date(2028, 4, 16)), 366),
        (date(2028, 2, 29), 0, (date(2028, 2, 29), date(2029, 2, 28)), 365),
        (date(2028, 2, 29), 1, (date(2029, 2, 28), date(2030, 2, 28)), 365),
        (date(2028, 2, 29), 4, (date(2032, 2, 29), date(2033, 2, 28)), 365),
        (date(2031, 3, 1), 0, (date(2031, 3, 1), date(2032, 3, 1)), 366),  # spans Feb 29
    ],
)
def test_d1_yearly_periods_are_calendar_years(anchor, index, expected, days):
    bounds = period_bounds(anchor, "yearly", index)
    assert bounds == expected
    assert Period(*bounds).days == days


@pytest.mark.parametrize(
    ("value", "n", "expected"),
    [
        (date(2028, 2, 29), 1, date(2029, 2, 28)),
        (date(2028, 2, 29), 4, date(2032, 2, 29)),
        (date(2026, 4, 16), 1, date(2027, 4, 16)),
    ],
)
def test_d1_add_years_moves_feb_29_to_feb_28_in_common_years(value, n, expected):
    assert add_years(value, n) == expected


@pytest.mark.parametrize(
    ("start", "cycle", "expected"),
    [
        (date(2026, 4, 16), "yearly", date(2027, 4, 16)),
        (date(2026, 4, 1), "monthly", date(2026, 5, 1)),
        (date(2026, 1, 31), "monthly", date(2026, 2, 28)),
    ],
)
def test_d1_period_end_for_is_the_end_of_the_first_period(start, cycle, expected):
    assert period_end_for(start, cycle) == expected == period_bounds(start, cycle, 0)[1]


@pytest.mark.parametrize("cycle", ["weekly", "Monthly", "", "annual"])
def test_d1_unknown_cycle_is_refused(cycle):
    with pytest.raises(ValueError, match="cycle"):
        period_bounds(date(2026, 4, 1), cycle, 0)
    with pytest.raises(ValueError, match="cycle"):
        addon_line(1, D("30.00"), cycle, APRIL, date(2026, 4, 16))


@pytest.mark.parametrize(
    ("start", "end"),
    [(date(2026, 5, 1), date(2026, 5, 1)), (date(2026, 5, 1), date(2026, 4, 1))],
)
def test_d1_period_must_end_after_it_starts(start, end):
    with pytest.raises(ValueError, match="after"):
        Period(start, end)


def test_d1_period_refuses_a_negative_index():
    with pytest.raises(ValueError):
        period_bounds(date(2026, 4, 1), "monthly", -1)


@given(anchor=anchors, n=st.integers(0, 120))
def test_d1_monthly_anchor_survives_month_ends(anchor, n):
    start, end = period_bounds(anchor, "monthly", n)
    next_start, _ = period_bounds(anchor, "monthly", n + 1)
    assert end == next_start  # periods tile: no gap, no overlap
    month_length = calendar.monthrange(start.year, start.month)[1]
    assert start.day == min(anchor.day, month_length)
    assert (start.year * 12 + start.month) - (anchor.year * 12 + anchor.month) == n
    assert 28 <= Period(start, end).days <= 31


@given(anchor=anchors, n=st.integers(0, 120))
def test_d1_yearly_periods_are_365_or_366_days(anchor, n):
    start, end = period_bounds(anchor, "yearly", n)
    assert Period(start, end).days in (365, 366)
    assert end == period_bounds(anchor, "yearly", n + 1)[0]


# D-2 Days ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "on", "expected"),
    [
        (APRIL, date(2026, 4, 16), (15, 15, 30)),  # D-2 example
        (APRIL, date(2026, 4, 11), (10, 20, 30)),  # DWN-1: day 10 of 30 -> 20 remaining
        (APRIL, date(2026, 4, 1), (0, 30, 30)),
        (APRIL, date(2026, 4, 30), (29, 1, 30)),
        (APRIL, date(2026, 5, 1), (30, 0, 30)),
        (APRIL, date(2026, 3, 20), (0, 30, 30)),  # clamped to the start
        (APRIL, date(2026, 6, 1), (30, 0, 30)),  # clamped to the end
        (JUNE, date(2026, 6, 11), (10, 20, 30)),  # ADD-1
        (Period(date(2026, 1, 31), date(2026, 2, 28)), date(2026, 2, 14), (14, 14, 28)),
    ],
)
def test_d2_day_split_counts_whole_days(period, on, expected):
    assert day_split(period, on) == expected


def test_dwn1_yearly_downgrade_after_100_of_365_days_keeps_265():
    year = Period(*period_bounds(date(2026, 1, 1), "yearly", 0))
    assert day_split(year, year.start + timedelta(days=100)) == (100, 265, 365)


def test_d2_datetimes_must_be_converted_to_local_dates_first():
    with pytest.raises(TypeError, match="D-2"):
        day_split(APRIL, datetime(2026, 4, 16, 12, tzinfo=UTC))
    with pytest.raises(TypeError, match="D-2"):
        Period(datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 1, tzinfo=UTC))


@given(periods_and_days())
def test_d2_used_plus_remaining_is_total(case):
    period, on = case
    used, remaining, total = day_split(period, on)
    assert used + remaining == total == period.days
    assert used >= 0 and remaining >= 0


# D-3 Money --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (D("7.5"), D("7.50")),
        (D("7.505"), D("7.51")),
        (D("7.504999"), D("7.50")),
        (D("2.675"), D("2.68")),  # a float would make this 2.67
        (D("0.125"), D("0.13")),  # half up, not half even
        (D("-3.005"), D("-3.01")),
        (D("-0.004"), D("0.00")),  # no negative zero
        (D("1234"), D("1234.00")),
        (12, D("12.00")),
    ],
)
def test_d3_cents_rounds_half_up(amount, expected):
    result = cents(amount)
    assert result == expected
    assert str(result) == str(expected)


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (D("7.5"), "USD", "$7.50"),
        (D("1234"), "USD", "$1,234.00"),
        (D("-3"), "USD", "-$3.00"),
        (D("1234567.891"), "USD", "$1,234,567.89"),
        (D("0.125"), "USD", "$0.13"),
        (D("-0.001"), "USD", "$0.00"),
        (D("7.50"), "EUR", "€7.50"),
        (D("7.50"), "GBP", "£7.50"),
        (D("7.50"), "CHF", "7.50 CHF"),
        (D("-1234.5"), "CHF", "-1,234.50 CHF"),
        (D("7.50"), "usd", "$7.50"),
    ],
)
def test_d3_format_money(amount, currency, expected):
    assert format_money(amount, currency) == expected


@pytest.mark.parametrize("bad", [7.5, "7.50", None, D("NaN"), D("Infinity")])
def test_d3_money_is_decimal_only(bad):
    with pytest.raises((TypeError, ValueError)):
        cents(bad)
    with pytest.raises((TypeError, ValueError)):
        format_money(bad)


def test_d3_format_money_refuses_a_bad_currency_code():
    with pytest.raises(ValueError, match="currency"):
        format_money(D("1.00"), "DOLLARS")


def test_d3_quote_values_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        APRIL.end = date(2026, 6, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        QuoteLine("x", D("1.00")).amount = D("2.00")


@given(st.decimals(min_value=D("-1e6"), max_value=D("1e6"), allow_nan=False, places=6))
def test_d3_cents_is_quantize_half_up(amount):
    expected = amount.quantize(CENT, rounding=ROUND_HALF_UP)
    assert cents(amount) == expected


@given(st.decimals(min_value=D("-1e12"), max_value=D("1e12"), allow_nan=False, places=2))
def test_d3_cents_of_an_amount_already_in_cents_is_that_amount(amount):
    """`cents` returns an amount with two places as it is (issue 17's fast path): the same value and
    spelling as the exact rounding, and 0.00 for a negative zero."""
    assert str(cents(amount)) == str(money_module.round_cents(Fraction(amount)))
    assert str(cents(D("-0.00"))) == "0.00"


def _grouped(units: int) -> str:
    """Independent reference: whole cents -> '1,234.56' by string slicing only."""
    whole, fraction = divmod(units, 100)
    digits = str(whole)
    groups = []
    while digits:
        groups.insert(0, digits[-3:])
        digits = digits[:-3]
    return f"{','.join(groups)}.{fraction:02d}"


@given(units=st.integers(-(10**22), 10**22), half=st.booleans())
def test_d3_format_money_is_exact_without_float(units, half):
    # Twenty-odd significant digits and exact half cents: a float round trip loses both.
    amount = D(units).scaleb(-2) + (D("0.005") if half and units >= 0 else D(0))
    expected_units = abs(units) + (1 if half and units >= 0 else 0)
    sign = "-" if units < 0 else ""
    assert format_money(amount) == f"{sign}${_grouped(expected_units)}"


@pytest.mark.parametrize("module", [pricing, period_math, money_module])
def test_d3_pricing_module_never_touches_float(module):
    tree = ast.parse(inspect.getsource(module))
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    constants = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and type(node.value) is float
    ]
    assert "float" not in names
    assert constants == []


@pytest.mark.parametrize("module", [pricing, period_math, money_module])
def test_d4_pricing_module_has_no_django_and_no_clock(module):
    tree = ast.parse(inspect.getsource(module))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name and name.split(".")[0] == "django"}
    called = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not called & {"now", "today", "utcnow", "localdate", "time"}


def test_d3_docstring_worked_examples_hold():
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS) for module in (pricing, period_math, money_module)]
    assert sum(result.attempted for result in results) >= 20
    assert sum(result.failed for result in results) == 0


@given(periods_and_days(), prices, st.integers(1, 6))
def test_d3_period_split_prorates_back_to_the_whole_price(case, price, parts):
    period, on = case
    # Two parts: what `on` leaves (prorate) and what was used before it.
    used, remaining, total = day_split(period, on)
    before, after = share(price, used, total), prorate(price, period, on)
    assert abs(before + after - price) <= CENT
    assert abs(before + after - price) <= D("0.005") * 2  # each part is off by half a cent at most

    # Any number of parts, each rounded on its own line, stays within half a cent per part.
    cuts = sorted({period.start + timedelta(days=(period.days * k) // parts) for k in range(parts)})
    bounds = [*cuts, period.end]
    pieces = [share(price, (b - a).days, total) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert abs(sum(pieces) - price) <= D("0.005") * len(pieces)


@given(
    periods_and_days(),
    st.decimals(min_value=D("-1000"), max_value=D("100000"), places=2),
    prices,
    st.integers(0, 50),
    st.integers(0, 10**7),
    st.integers(0, 10**7),
    st.one_of(st.none(), prices),
)
def test_d3_amounts_are_never_negative(case, amount, price, quantity, sessions, included, rate):
    period, on = case
    assert prorate(amount, period, on) >= 0
    assert upgrade_difference_line(price, amount.copy_abs(), period, on).amount >= 0
    assert upgrade_difference_line(amount.copy_abs(), price, period, on).amount >= 0
    assert unused_credit_line(price, amount.copy_abs(), period, on).amount >= 0
    assert unused_credit_line(amount.copy_abs(), price, period, on).amount >= 0
    for cycle in ("monthly", "yearly"):
        assert addon_line(quantity, price, cycle, period, on).amount >= 0
    assert overage_line(sessions, included, rate).amount >= 0


@pytest.mark.parametrize(
    "call",
    [
        lambda: upgrade_difference_line(D("-1.00"), D("29.00"), APRIL, date(2026, 4, 16)),
        lambda: unused_credit_line(D("29.00"), D("-14.00"), APRIL, date(2026, 4, 16)),
        lambda: addon_line(-1, D("30.00"), "monthly", JUNE, date(2026, 6, 11)),
        lambda: addon_line(1, D("-30.00"), "monthly", JUNE, date(2026, 6, 11)),
        lambda: overage_line(-1, 10_000, D("2.00")),
        lambda: overage_line(12_500, -1, D("2.00")),
        lambda: overage_line(12_500, 10_000, D("-2.00")),
        lambda: add_working_days(date(2026, 4, 16), -1),
        lambda: APRIL.extended_by(-1),
    ],
)
def test_d3_bad_input_is_refused(call):
    with pytest.raises(ValueError):
        call()


# UPG-2 Same-cycle upgrade --------------------------------------------------------


# old price, new price, period, change day, charged now, computation shown
# fmt: off
UPG2_CASES = [
    # The policy's example: Basic $14 -> Professional $29 on 04-16.
    (
        "14.00", "29.00", APRIL, date(2026, 4, 16),
        "7.50", "($29.00 − $14.00) × 15/30 days = $7.50",
    ),
    (
        "14.00", "29.00", APRIL, date(2026, 4, 1),
        "15.00", "($29.00 − $14.00) × 30/30 days = $15.00",
    ),
    (
        "14.00", "29.00", APRIL, date(2026, 4, 30),
        "0.50", "($29.00 − $14.00) × 1/30 days = $0.50",
    ),
    (
        "14.00", "29.00", APRIL, date(2026, 5, 1),
        "0.00", "($29.00 − $14.00) × 0/30 days = $0.00",
    ),
    (  # 15 x 7/31 = 3.387... rounds to 3.39
        "14.00", "29.00", Period(date(2026, 5, 1), date(2026, 6, 1)), date(2026, 5, 25),
        "3.39", "($29.00 − $14.00) × 7/31 days = $3.39",
    ),
    (  # 0.05 x 15/30 = 0.025: half up gives 0.03 (half even would give 0.02)
        "10.00", "10.05", APRIL, date(2026, 4, 16),
        "0.03", "($10.05 − $10.00) × 15/30 days = $0.03",
    ),
    (  # yearly -> yearly: Personal $134.40 -> Advanced $278.04, 265 of 365 days left
        "134.40", "278.04", Period(date(2026, 1, 1), date(2027, 1, 1)), date(2026, 4, 11),
        "104.29", "($278.04 − $134.40) × 265/365 days = $104.29",
    ),
]
# fmt: on


@pytest.mark.parametrize(("old", "new", "period", "on", "amount", "computation"), UPG2_CASES)
def test_upg2_same_cycle_upgrade_prorates_by_days(old, new, period, on, amount, computation):
    line = upgrade_difference_line(D(old), D(new), period, on)
    assert line.amount == D(amount)
    assert line.computation == computation


def test_upg2_example_period_costs_21_50_and_renews_at_29():
    line = upgrade_difference_line(
        D("14.00"), D("29.00"), APRIL, date(2026, 4, 16), old_name="Basic", new_name="Professional"
    )
    assert line.amount == D("7.50")
    assert D("14.00") + line.amount == D("21.50")
    assert "Basic" in line.description and "Professional" in line.description
    assert period_bounds(APRIL.start, "monthly", 1) == (date(2026, 5, 1), date(2026, 6, 1))


def test_upg2_a_lower_price_is_never_a_refund():
    line = upgrade_difference_line(D("29.00"), D("14.00"), APRIL, date(2026, 4, 16))
    assert line.amount == D("0.00")
    assert line.computation.startswith("($14.00 − $29.00) × 15/30 days = -$7.50")


def test_upg2_computation_uses_the_policy_signs():
    line = upgrade_difference_line(D("14.00"), D("29.00"), APRIL, date(2026, 4, 16))
    assert "\u2212" in line.computation and "\u00d7" in line.computation


def test_upg2_lines_show_the_currency():
    line = upgrade_difference_line(D("14.00"), D("29.00"), APRIL, date(2026, 4, 16), "EUR")
    assert line.computation == "(€29.00 − €14.00) × 15/30 days = €7.50"


# UPG-3 Monthly -> yearly ----------------------------------------------------------


def test_upg3_monthly_to_yearly_starts_a_new_year_and_forfeits_15_days():
    upgrade_on = date(2026, 4, 16)
    yearly = Period(upgrade_on, period_end_for(upgrade_on, "yearly"))
    assert (yearly.start, yearly.end) == (date(2026, 4, 16), date(2027, 4, 16))

    _, forfeited, _ = day_split(APRIL, upgrade_on)
    assert forfeited == 15

    quote = Quote(
        kind="upgrade",
        amount_due=D("278.04"),
        effective_at=upgrade_on,
        lines=[QuoteLine("Advanced, yearly", D("278.04"))],
        notes=["The 15 unused days of your monthly period are forfeited."],
        forfeited_days=forfeited,
    )
    assert quote.forfeited_days == 15
    assert quote.lines == (QuoteLine("Advanced, yearly", D("278.04")),)  # stored as a tuple

    # After staff approve the restore request the year ends 15 days later.
    assert yearly.extended_by(forfeited).end == date(2027, 5, 1)


@pytest.mark.parametrize(
    ("requested_on", "accepted"),
    [
        (date(2026, 4, 16), True),  # Thu, the upgrade day
        (date(2026, 4, 17), True),
        (date(2026, 4, 20), True),  # Mon: the weekend does not count
        (date(2026, 4, 23), True),  # Thu: fifth working day, the last one
        (date(2026, 4, 24), False),  # Fri: refused
        (date(2026, 5, 1), False),
        (date(2026, 4, 15), False),  # before the upgrade: nothing to restore
    ],
)
def test_upg3_restore_request_window_is_5_working_days(requested_on, accepted):
    assert restore_deadline(date(2026, 4, 16)) == date(2026, 4, 23)
    assert restore_window_open(date(2026, 4, 16), requested_on) is accepted


@pytest.mark.parametrize(
    ("day", "n", "expected"),
    [
        (date(2026, 4, 16), 5, date(2026, 4, 23)),  # Thu -> Thu
        (date(2026, 4, 17), 5, date(2026, 4, 24)),  # Fri -> Fri
        (date(2026, 4, 18), 5, date(2026, 4, 24)),  # Sat -> Fri
        (date(2026, 4, 19), 1, date(2026, 4, 20)),  # Sun -> Mon
        (date(2026, 4, 20), 5, date(2026, 4, 27)),  # Mon -> Mon
        (date(2026, 4, 17), 1, date(2026, 4, 20)),  # Fri -> Mon
        (date(2026, 4, 16), 0, date(2026, 4, 16)),
        (date(2026, 4, 16), 10, date(2026, 4, 30)),
    ],
)
def test_upg3_working_days_skip_weekends(day, n, expected):
    assert add_working_days(day, n) == expected


@given(st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1)), st.integers(0, 30))
def test_upg3_working_days_land_on_a_weekday(day, n):
    result = add_working_days(day, n)
    weekdays = sum(
        1 for k in range(1, (result - day).days + 1) if (day + timedelta(k)).weekday() < 5
    )
    assert weekdays == n
    assert n == 0 or result.weekday() < 5


def test_upg3_quote_is_bound_to_its_invoice_without_changing():
    quote = Quote(kind="upgrade", amount_due=D("278.04"), effective_at=date(2026, 4, 16))
    invoice = object()
    applied = quote.with_invoice(invoice)
    assert applied.invoice is invoice
    assert quote.invoice is None
    assert dataclasses.replace(applied, invoice=None) == quote


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "refund", "amount_due": D("1.00")},
        {"kind": "upgrade", "amount_due": D("-1.00")},
        {"kind": "upgrade", "amount_due": D("1.00"), "forfeited_days": -1},
    ],
)
def test_upg3_quote_refuses_bad_values(kwargs):
    with pytest.raises(ValueError):
        Quote(effective_at=None, **kwargs)


# DWN-4 Credit for an immediate downgrade ------------------------------------------


# old price, new price, period, change day, credit, computation shown
# fmt: off
DWN4_CASES = [
    (
        "29.00", "14.00", APRIL, date(2026, 4, 16),
        "7.50", "($29.00 − $14.00) × 15/30 days = $7.50",
    ),
    (  # DWN-1's example applied at once: day 10 of 30, 20 days unused
        "29.00", "14.00", APRIL, date(2026, 4, 11),
        "10.00", "($29.00 − $14.00) × 20/30 days = $10.00",
    ),
    (  # to Free
        "29.00", "0", APRIL, date(2026, 4, 16),
        "14.50", "($29.00 − $0.00) × 15/30 days = $14.50",
    ),
    (  # Advanced yearly -> Personal yearly after 100 of 365 days
        "278.04", "134.40", Period(date(2026, 1, 1), date(2027, 1, 1)), date(2026, 4, 11),
        "104.29", "($278.04 − $134.40) × 265/365 days = $104.29",
    ),
    (
        "29.00", "14.00", APRIL, date(2026, 5, 1),
        "0.00", "($29.00 − $14.00) × 0/30 days = $0.00",
    ),
]
# fmt: on


@pytest.mark.parametrize(("old", "new", "period", "on", "amount", "computation"), DWN4_CASES)
def test_dwn4_unused_value_becomes_credit(old, new, period, on, amount, computation):
    line = unused_credit_line(D(old), D(new), period, on)
    assert line.amount == D(amount)
    assert line.computation == computation


def test_dwn4_a_higher_new_price_gives_no_credit():
    assert unused_credit_line(D("14.00"), D("29.00"), APRIL, date(2026, 4, 16)).amount == D("0")


# ADD-1 Extra properties ---------------------------------------------------------------


# quantity, monthly unit price, cycle, period, purchase day, charged now, computation
# fmt: off
ADD1_CASES = [
    # The policy's example: 2 extra properties on Advanced monthly, bought 06-11.
    (
        2, "30.00", "monthly", JUNE, date(2026, 6, 11),
        "40.00", "2 × $30.00 × 20/30 days = $40.00",
    ),
    (1, "30.00", "monthly", JUNE, date(2026, 6, 1), "30.00", "1 × $30.00 × 30/30 days = $30.00"),
    (0, "30.00", "monthly", JUNE, date(2026, 6, 11), "0.00", "0 × $30.00 × 20/30 days = $0.00"),
    (  # yearly: 12 x $30 = $360 a year per property
        1, "30.00", "yearly", Period(date(2026, 6, 1), date(2027, 6, 1)), date(2026, 6, 1),
        "360.00", "1 × $360.00 × 365/365 days = $360.00",
    ),
    (  # 2 x 360 x 182/365 = 359.0137: one rounding (per unit, 179.51 x 2 = 359.02)
        2, "30.00", "yearly", Period(date(2026, 6, 1), date(2027, 6, 1)), date(2026, 12, 1),
        "359.01", "2 × $360.00 × 182/365 days = $359.01",
    ),
    (  # 3 x 30 x 1/31 = 2.903 (per unit 0.97 x 3 would be 2.91)
        3, "30.00", "monthly", Period(date(2026, 7, 1), date(2026, 8, 1)), date(2026, 7, 31),
        "2.90", "3 × $30.00 × 1/31 days = $2.90",
    ),
]
# fmt: on


@pytest.mark.parametrize(
    ("quantity", "unit", "cycle", "period", "on", "amount", "computation"), ADD1_CASES
)
def test_add1_extra_properties_are_prorated(quantity, unit, cycle, period, on, amount, computation):
    line = addon_line(quantity, D(unit), cycle, period, on)
    assert line.amount == D(amount)
    assert line.computation == computation


# USE-3 Overage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sessions", "included", "per_1000", "amount", "computation"),
    [
        # The policy's example: Personal, 12,500 sessions in November.
        (12_500, 10_000, "2.00", "5.00", "2,500 sessions × $2.00 / 1,000 = $5.00"),
        (110_000, 100_000, "1.50", "15.00", "10,000 sessions × $1.50 / 1,000 = $15.00"),
        (10_001, 10_000, "2.00", "0.00", "1 session × $2.00 / 1,000 = $0.00"),  # 0.002
        (10_003, 10_000, "1.50", "0.00", "3 sessions × $1.50 / 1,000 = $0.00"),  # 0.0045
        (10_004, 10_000, "1.50", "0.01", "4 sessions × $1.50 / 1,000 = $0.01"),  # 0.006
        (10_005, 10_000, "1.00", "0.01", "5 sessions × $1.00 / 1,000 = $0.01"),  # 0.005 half up
        (1_234_567, 0, "2.00", "2469.13", "1,234,567 sessions × $2.00 / 1,000 = $2,469.13"),
    ],
)
def test_use3_overage_is_pro_rata_per_session(sessions, included, per_1000, amount, computation):
    line = overage_line(sessions, included, D(per_1000))
    assert line.amount == D(amount)
    assert line.computation == computation


@pytest.mark.parametrize(
    ("sessions", "included", "per_1000"),
    [
        (10_000, 10_000, D("2.00")),  # exactly the quota
        (9_000, 10_000, D("2.00")),
        (5_000, 1_000, None),  # USE-4: Free is hard-capped
        (0, 0, None),
    ],
)
def test_use3_no_overage_within_quota_or_under_a_hard_cap(sessions, included, per_1000):
    line = overage_line(sessions, included, per_1000)
    assert line.amount == D("0.00")
    assert line.computation
