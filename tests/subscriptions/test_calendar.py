"""The billing calendar in the account's time zone (issue 15; D-1, D-2, D-5, TRI-3, REN-1, UPG-2,
UPG-3). Periods are UTC instants computed on the local calendar of the billing time zone; an owner's
change of zone applies from the next period. The pure rules first (no database), then the engine
through its public commands."""

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import import_module
from zoneinfo import ZoneInfo

import pytest
from django.apps import apps
from hypothesis import assume, example, given
from hypothesis import strategies as st

from accounts.models import Account, AuditEvent
from invoices.models import Invoice
from plans.models import Plan
from subscriptions import billing, pricing, scheduler, terms
from subscriptions.models import Subscription
from subscriptions.pricing import Period, add_months, calendar_shift, local_instant, period_bounds

from .conftest import at, current

D = Decimal
ZONES = ["UTC", "Pacific/Kiritimati", "Pacific/Chatham", "Asia/Kolkata", "Europe/Berlin", "America/Adak"]


def local(zone: str, wall: str) -> datetime:
    """The instant of a local wall-clock time ('YYYY-MM-DDTHH:MM') that exists in `zone`."""
    moment = datetime.fromisoformat(wall).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    assert moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None) == datetime.fromisoformat(wall)
    return moment


def wall(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%dT%H:%M")


# --- the rule, table-driven (D-1) ---------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "anchor", "cycle", "index", "start", "end"), [
    # The policy's example and issue 15's three cases: same local time, anchor day clamped locally.
    ("Pacific/Kiritimati", "2026-01-31T01:00", "monthly", 0, "2026-01-31T01:00", "2026-02-28T01:00"),
    ("Pacific/Kiritimati", "2026-01-31T01:00", "monthly", 1, "2026-02-28T01:00", "2026-03-31T01:00"),
    ("America/Adak", "2025-04-30T23:30", "monthly", 0, "2025-04-30T23:30", "2025-05-30T23:30"),
    ("America/Adak", "2027-03-13T23:55", "monthly", 0, "2027-03-13T23:55", "2027-04-13T23:55"),  # across DST
    # 28th to 31st and Feb 29, leap and common years, in every zone.
    ("UTC", "2026-01-31T00:00", "monthly", 1, "2026-02-28T00:00", "2026-03-31T00:00"),
    ("UTC", "2028-01-30T12:00", "monthly", 0, "2028-01-30T12:00", "2028-02-29T12:00"),
    ("Pacific/Kiritimati", "2028-01-30T00:30", "monthly", 0, "2028-01-30T00:30", "2028-02-29T00:30"),
    ("Pacific/Chatham", "2026-01-31T09:00", "monthly", 0, "2026-01-31T09:00", "2026-02-28T09:00"),
    ("Pacific/Chatham", "2026-01-31T09:00", "monthly", 3, "2026-04-30T09:00", "2026-05-31T09:00"),  # +13:45 -> +12:45
    ("Asia/Kolkata", "2027-01-29T05:29", "monthly", 0, "2027-01-29T05:29", "2027-02-28T05:29"),
    ("Asia/Kolkata", "2027-01-29T05:29", "monthly", 1, "2027-02-28T05:29", "2027-03-29T05:29"),
    ("Europe/Berlin", "2026-01-28T23:30", "monthly", 1, "2026-02-28T23:30", "2026-03-28T23:30"),
    ("Europe/Berlin", "2026-08-31T00:15", "monthly", 1, "2026-09-30T00:15", "2026-10-31T00:15"),
    ("America/Adak", "2027-12-31T20:00", "monthly", 1, "2028-01-31T20:00", "2028-02-29T20:00"),
    ("Asia/Kolkata", "2028-02-29T10:00", "yearly", 0, "2028-02-29T10:00", "2029-02-28T10:00"),
    ("Asia/Kolkata", "2028-02-29T10:00", "yearly", 3, "2031-02-28T10:00", "2032-02-29T10:00"),
    ("Pacific/Chatham", "2028-02-29T23:00", "yearly", 0, "2028-02-29T23:00", "2029-02-28T23:00"),
    ("America/Adak", "2026-03-01T00:30", "yearly", 1, "2027-03-01T00:30", "2028-03-01T00:30"),
    # A local time skipped by DST moves to the first valid instant; a repeated one is the first.
    ("America/Adak", "2027-02-14T02:30", "monthly", 0, "2027-02-14T02:30", "2027-03-14T03:00"),
    ("America/Adak", "2027-02-14T02:30", "monthly", 1, "2027-03-14T03:00", "2027-04-14T02:30"),
    ("Europe/Berlin", "2026-01-29T02:30", "monthly", 1, "2026-02-28T02:30", "2026-03-29T03:00"),
    ("Pacific/Chatham", "2026-08-27T03:00", "monthly", 0, "2026-08-27T03:00", "2026-09-27T03:45"),
])
def test_d1_periods_are_counted_on_the_local_calendar(zone, anchor, cycle, index, start, end):
    bounds = period_bounds(local(zone, anchor), cycle, index, ZoneInfo(zone))
    assert tuple(wall(moment, zone) for moment in bounds) == (start, end)
    assert all(moment.tzinfo is UTC for moment in bounds)  # stored and keyed as UTC instants


@pytest.mark.parametrize(("zone", "anchor", "end_utc"), [
    # Issue 15, with the UTC instants: on main these ended local 03-01, 05-31 and 04-14.
    ("Pacific/Kiritimati", "2026-01-30T11:00", "2026-02-27T11:00"),
    ("America/Adak", "2025-05-01T08:30", "2025-05-31T08:30"),
    ("America/Adak", "2027-03-14T09:55", "2027-04-14T08:55"),
    ("Pacific/Chatham", "2026-01-30T19:15", "2026-02-27T19:15"),
    ("Asia/Kolkata", "2026-01-30T19:00", "2026-02-27T19:00"),  # local Jan 31 00:30 -> Feb 28 00:30
])
def test_d1_issue_cases_end_at_the_instant_of_the_local_boundary(zone, anchor, end_utc):
    assert pricing.period_end_for(at(anchor), "monthly", ZoneInfo(zone)) == at(end_utc)


def test_d1_a_repeated_local_time_is_its_first_occurrence():
    adak = ZoneInfo("America/Adak")  # 2027-11-07: 02:00 HDT -> 01:00 HST, so 01:30 happens twice
    assert calendar_shift(local("America/Adak", "2027-10-07T01:30"), adak, months=1) == at("2027-11-07T10:30")
    berlin = ZoneInfo("Europe/Berlin")  # 2026-10-25: 03:00 CEST -> 02:00 CET
    assert calendar_shift(local("Europe/Berlin", "2026-09-25T02:30"), berlin, months=1) == at("2026-10-25T00:30")


def test_d1_a_whole_skipped_local_day_moves_to_the_next_valid_instant():
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 did not exist in Samoa
    assert local_instant(datetime(2011, 12, 30, 12, 0), apia) == datetime(2011, 12, 30, 10, 0, tzinfo=UTC)
    assert wall(local_instant(datetime(2011, 12, 30, 12, 0), apia), "Pacific/Apia") == "2011-12-31T00:00"


def test_d1_the_utc_calendar_is_the_zone_utc_not_a_path_of_its_own():
    with pytest.raises(TypeError, match="calendar_shift"):
        add_months(at("2026-01-31"), 1)
    with pytest.raises(TypeError, match="zone"):
        period_bounds(at("2026-01-31"), "monthly", 0)
    assert period_bounds(at("2026-01-31"), "monthly", 1, UTC) == (at("2026-02-28"), at("2026-03-31"))


@pytest.mark.parametrize(("zone", "start", "days", "end"), [
    ("Europe/Berlin", "2026-03-20T10:00", 14, "2026-04-03T10:00"),  # across the spring change: 14 local days
    ("America/Adak", "2027-10-30T09:00", 14, "2027-11-13T09:00"),  # across the autumn change
    ("Pacific/Kiritimati", "2026-02-20T01:00", 14, "2026-03-06T01:00"),
])
def test_tri3_trial_days_are_local_days_at_the_same_local_time(zone, start, days, end):
    assert wall(calendar_shift(local(zone, start), ZoneInfo(zone), days=days), zone) == end


# --- hypothesis: the invariants the tables sample ------------------------------------------------------

anchor_instants = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 12, 31),
                               timezones=st.just(UTC))


def exists(wall_time: datetime, zone) -> bool:
    return local_instant(wall_time, zone).astimezone(zone).replace(tzinfo=None) == wall_time


@given(zone=st.timezones(), anchor=anchor_instants, n=st.integers(0, 240))
def test_d1_the_nth_boundary_is_the_anchors_local_day_clamped_in_the_nth_month(zone, anchor, n):
    anchor_wall = anchor.astimezone(zone).replace(tzinfo=None, fold=0)
    year, month = divmod(anchor_wall.year * 12 + anchor_wall.month - 1 + n, 12)
    day = min(anchor_wall.day, calendar.monthrange(year, month + 1)[1])  # the anchor's day, clamped
    target = datetime.combine(date(year, month + 1, day), anchor_wall.time())
    boundary = calendar_shift(anchor, zone, months=n)
    seen = boundary.astimezone(zone).replace(tzinfo=None)
    if exists(target, zone):
        assert seen == target  # that local day, at the anchor's local time
    else:  # skipped by a DST change: the first valid instant after it
        assert seen > target
        assert (boundary - timedelta(seconds=1)).astimezone(zone).replace(tzinfo=None) < target


def unsaved_subscription(zone_name: str, start: datetime, end: datetime, *, account_zone: str | None = None):
    plan = Plan(code="personal", name="Personal", rank=1, monthly_price=D("14.00"))
    account = Account(name="Property test", timezone=account_zone or zone_name)
    return Subscription(account=account, plan=plan, cycle="monthly", timezone=zone_name, anchor_at=start,
                        period_index=0, current_period_start=start, current_period_end=end,
                        current_price=D("14.00"))


@given(zone=st.sampled_from(ZONES) | st.timezones().map(lambda z: z.key), anchor=anchor_instants,
       n=st.integers(0, 120), day=st.integers(0, 31), hour=st.integers(0, 23))
def test_upg2_proration_on_any_local_day_is_the_computation_on_the_periods_local_dates(zone, anchor, n, day, hour):
    tz = ZoneInfo(zone)
    start, end = period_bounds(anchor, "monthly", n, tz)
    anchor_wall = anchor.astimezone(tz).replace(tzinfo=None, fold=0)
    first, last = add_months(anchor_wall, n), add_months(anchor_wall, n + 1)
    assume(exists(first, tz) and exists(last, tz))  # a skipped anchor time is the table's case
    local_first, local_last = first.date(), last.date()  # the period's local dates, from the calendar alone
    on = local_first + timedelta(days=day)
    assume(on < local_last)
    moment = local_instant(datetime(on.year, on.month, on.day, hour), tz)
    assume(start <= moment < end and moment.astimezone(tz).date() == on)

    sub = unsaved_subscription(zone, start, end)
    line = pricing.upgrade_difference_line(D("14.00"), D("29.00"), terms.current_period(sub),
                                           terms.period_date(sub, moment))
    total, remaining = (local_last - local_first).days, (local_last - on).days
    expected = (D("15.00") * remaining / total).quantize(D("0.01"), rounding=ROUND_HALF_UP)
    assert line.amount == expected
    assert 28 <= total <= 31


@given(old=st.sampled_from(ZONES), new=st.sampled_from(ZONES), anchor=anchor_instants, n=st.integers(0, 120),
       cycle=st.sampled_from(["monthly", "yearly"]))
@example(old="Europe/Berlin", new="Pacific/Kiritimati", anchor=datetime(1993, 7, 1, tzinfo=UTC), n=66,
         cycle="monthly")  # 26.96 days: 1999-02-01 Berlin to 1999-02-28 Kiritimati (local anchor day 30)
@example(old="Pacific/Kiritimati", new="UTC", anchor=datetime(1994, 3, 1, tzinfo=UTC), n=4,
         cycle="monthly")  # 34 days: 1994-07-29 (Kiritimati's series, day 28) to 1994-09-01 (UTC's, day 1)
def test_d5_after_a_change_of_zone_the_next_period_starts_at_the_old_end_and_is_a_whole_period(
        old, new, anchor, n, cycle):
    start, end = period_bounds(anchor, cycle, n, ZoneInfo(old))
    sub = unsaved_subscription(old, start, end, account_zone=new)
    sub.cycle, sub.anchor_at, sub.period_index = cycle, anchor, n
    upcoming = terms.next_terms(sub)
    assert (upcoming.start, upcoming.timezone) == (end, new)
    assert upcoming.end == period_bounds(anchor, cycle, n + 1, ZoneInfo(new))[1]  # back on the anchor's series
    days = (upcoming.end - upcoming.start) / timedelta(days=1)
    # The anchor's instant read in the new zone can fall on the neighbouring local day (in 1993
    # Kiritimati was UTC-10: the 1st 00:00 UTC is its 30th), and the zones' offsets differ by up to
    # 26 hours: the period between the two series is a February less up to two days, or a 31-day
    # month plus up to four (an anchor on February 28 in the old zone and March 1 in the new one: the
    # old series ends on the 28th, the new one on the 1st, so July 28 runs to September 1).
    assert (26 <= days <= 35) if cycle == "monthly" else (363 <= days <= 368)


# --- the engine, through its public commands -------------------------------------------------------


def zoned(account, zone: str):
    Account.objects.filter(pk=account.pk).update(timezone=zone)
    account.refresh_from_db()
    return account


@pytest.mark.django_db
def test_d1_upg2_kiritimati_period_ends_local_feb_28_and_the_upgrade_counts_28_local_days(account):
    """Issue 15, case 1: local Jan 31 01:00 -> Feb 28 01:00 (main ended it on local Mar 1, so
    February had 29 days and the upgrade below cost $7.76)."""
    zoned(account, "Pacific/Kiritimati")
    sub = billing.subscribe(account, "personal", now=at("2026-01-30T11:00"))
    assert (sub.current_period_start, sub.current_period_end) == (at("2026-01-30T11:00"), at("2026-02-27T11:00"))
    assert wall(sub.current_period_end, "Pacific/Kiritimati") == "2026-02-28T01:00"
    first = Invoice.objects.get(kind="subscription")
    assert "2026-01-31 to 2026-02-28" in first.lines.get().description

    # UPG-2 on local Feb 14 (Feb 13 22:00 UTC): 14 of 28 local days remain.
    quote = billing.change_plan(sub, "advanced", "monthly", now=at("2026-02-13T22:00"), expected_amount=D("7.50"))
    assert quote.amount_due == D("7.50")
    assert quote.lines[0].computation == "($29.00 − $14.00) × 14/28 days = $7.50"
    assert "(2026-02-14 to 2026-02-28)" in quote.lines[0].description
    assert quote.at_period_end == "Renews on 2026-02-28 at $29.00."

    # REN-1: renewed 24 hours before the end instant; the next period ends local Mar 31 01:00.
    assert scheduler.run(at("2026-02-26T10:59")).counts["renewals"] == 0
    assert scheduler.run(at("2026-02-26T11:00")).counts["renewals"] == 1
    renewal = Invoice.objects.get(kind="renewal")
    assert (renewal.period_start, renewal.period_end, renewal.total) == (
        at("2026-02-27T11:00"), at("2026-03-30T11:00"), D("29.00"))
    assert "2026-02-28 to 2026-03-31" in renewal.lines.get().description
    scheduler.run(at("2026-02-27T11:00"))
    sub = current(account)
    assert wall(sub.current_period_end, "Pacific/Kiritimati") == "2026-03-31T01:00"
    assert terms.current_period(sub) == Period(date(2026, 2, 28), date(2026, 3, 31))


@pytest.mark.django_db
def test_d1_upg2_adak_period_ends_local_may_30_and_an_upgrade_that_day_has_no_day_left(account):
    """Issue 15, case 2: local Apr 30 23:30 (HDT) -> May 30 23:30. Main ran the period to local
    May 31 and charged 1/31 of the difference ($0.48) on local May 30."""
    zoned(account, "America/Adak")
    sub = billing.subscribe(account, "personal", now=at("2025-05-01T08:30"))
    assert sub.current_period_end == at("2025-05-31T08:30")
    assert wall(sub.current_period_end, "America/Adak") == "2025-05-30T23:30"
    quote = billing.preview_change(sub, "advanced", "monthly", now=at("2025-05-30T21:00"))  # local May 30 12:00
    assert quote.amount_due == D("0.00")
    assert quote.lines[0].computation == "($29.00 − $14.00) × 0/30 days = $0.00"

    scheduler.run(at("2025-05-30T08:30"))  # the renewal, 24 hours before the end instant
    scheduler.run(at("2025-05-31T08:30"))  # the roll-over
    sub = current(account)
    assert wall(sub.current_period_end, "America/Adak") == "2025-06-30T23:30"
    # Later the same local day, the period that started at 23:30 has all its 31 days left.
    quote = billing.change_plan(sub, "advanced", "monthly", now=at("2025-05-31T08:45"), expected_amount=D("15.00"))
    assert quote.lines[0].computation == "($29.00 − $14.00) × 31/31 days = $15.00"


@pytest.mark.django_db
def test_d1_adak_across_the_spring_change_ends_on_local_april_13(account):
    """Issue 15, case 3: local Mar 13 23:55 HST -> Apr 13 23:55 HDT, 31 local days (main: Apr 14)."""
    zoned(account, "America/Adak")
    sub = billing.subscribe(account, "personal", now=at("2027-03-14T09:55"))
    assert sub.current_period_end == at("2027-04-14T08:55")
    assert terms.current_period(sub) == Period(date(2027, 3, 13), date(2027, 4, 13))


@pytest.mark.django_db
def test_tri3_a_trial_ends_trial_days_local_days_later_and_converts_on_the_local_calendar(account):
    zoned(account, "Europe/Berlin")
    sub = billing.start_trial(account, "personal", now=local("Europe/Berlin", "2026-03-20T10:00"))
    assert wall(sub.trial_end, "Europe/Berlin") == "2026-04-03T10:00"  # 14 local days, across the DST change
    assert sub.trial_end == at("2026-04-03T08:00")  # not 14 x 24 hours (09:00 UTC)
    scheduler.run(sub.trial_end)
    sub = current(account)
    assert (sub.status, sub.timezone) == ("active", "Europe/Berlin")
    assert wall(sub.current_period_end, "Europe/Berlin") == "2026-05-03T10:00"
    assert "2026-04-03 to 2026-05-03" in Invoice.objects.get(kind="trial_conversion").lines.get().description


@pytest.mark.django_db
def test_upg3_restore_window_counts_working_days_on_the_local_calendar(account):
    """Thu local 2026-04-16 in Kiritimati is Wed 04-15 in UTC: the window runs to Thu local 04-23."""
    zoned(account, "Pacific/Kiritimati")
    sub = billing.subscribe(account, "personal", now=local("Pacific/Kiritimati", "2026-04-01T09:00"))
    quote = billing.change_plan(sub, "personal", "yearly", now=local("Pacific/Kiritimati", "2026-04-16T01:00"))
    assert "until Thursday 2026-04-23" in quote.notes[0]
    assert quote.forfeited_days == 15
    sub = current(account)
    assert terms.restore_refusal(sub, now=local("Pacific/Kiritimati", "2026-04-23T23:00")) is None
    refusal = terms.restore_refusal(sub, now=local("Pacific/Kiritimati", "2026-04-24T00:30"))
    assert "upgraded on Thursday 2026-04-16, so the last day to ask was Thursday 2026-04-23" in refusal


# --- D-5: the owner changes the zone; it applies from the next period -----------------------------------


@pytest.mark.django_db
def test_d5_a_change_of_zone_keeps_the_current_period_and_applies_from_the_next(account):
    sub = billing.subscribe(account, "personal", now=at("2026-01-31"))
    before = billing.preview_change(sub, "advanced", "monthly", now=at("2026-02-14T20:00"))
    change = billing.set_billing_zone(account, "America/Adak", actor=account.owner, now=at("2026-02-10"))
    assert change.effective_at == at("2026-02-28")
    sub = current(account)
    assert (sub.timezone, sub.current_period_end) == ("UTC", at("2026-02-28"))  # the current end stays
    # Proration in the current period still counts its own (UTC) days: what is charged does not move;
    # the next charge (PAY-4) is for the next period, which follows the new zone.
    after = billing.preview_change(sub, "advanced", "monthly", now=at("2026-02-14T20:00"))
    assert (after.amount_due, after.lines, after.at_period_end) == (before.amount_due, before.lines,
                                                                   before.at_period_end)
    assert "to 2026-03-30" in after.next_charge_text and "to 2026-03-31" in before.next_charge_text
    event = AuditEvent.objects.get(action="billing_zone.updated")
    assert (event.before, event.after) == ({"timezone": "UTC"}, {"timezone": "America/Adak"})
    assert "periods from 2026-02-28T00:00:00+00:00 follow it" in event.reason
    assert terms.zone_notes(account) == [
        "Your current period follows the calendar of UTC and still ends on 2026-02-28 (UTC).",
        "From 2026-02-27, your periods follow America/Adak."]

    scheduler.run(at("2026-02-27"))
    scheduler.run(at("2026-02-28"))
    account.refresh_from_db()
    sub = current(account)
    # The anchor (Jan 31 00:00 UTC) is local Jan 30 14:00 in Adak: the series follows that local time.
    assert (sub.timezone, sub.current_period_start, sub.current_period_end) == (
        "America/Adak", at("2026-02-28"), at("2026-03-30T23:00"))
    assert wall(sub.current_period_end, "America/Adak") == "2026-03-30T14:00"
    assert "2026-02-27 to 2026-03-30" in Invoice.objects.get(kind="renewal").lines.get().description
    assert terms.next_terms(sub).end == local("America/Adak", "2026-04-30T14:00")


@pytest.mark.django_db
def test_d5_a_next_period_already_invoiced_keeps_its_bounds_and_the_zone_applies_after_it(account):
    """PAY-4: the renewal invoice (24 hours before the end) states the next period; a change of
    zone after it must not move that period's end."""
    sub = billing.subscribe(account, "personal", now=at("2026-01-31"))
    scheduler.run(at("2026-02-27"))
    renewal = Invoice.objects.get(kind="renewal")
    assert renewal.period_end == at("2026-03-31")
    change = billing.set_billing_zone(account, "America/Adak", now=at("2026-02-27T12:00"))
    assert change.effective_at == at("2026-03-31")
    assert current(account).next_timezone == "UTC"
    assert AuditEvent.objects.filter(action="subscription.next_period_zone_kept").count() == 1
    scheduler.run(at("2026-02-28"))
    account.refresh_from_db()
    sub = current(account)
    assert (sub.current_period_start, sub.current_period_end, sub.timezone, sub.next_timezone) == (
        renewal.period_start, renewal.period_end, "UTC", "")
    assert terms.next_terms(sub).timezone == "America/Adak"
    assert terms.next_terms(sub).end == local("America/Adak", "2026-04-30T14:00")


@pytest.mark.django_db
def test_d5_an_unknown_zone_is_refused_and_nothing_changes(account):
    with pytest.raises(billing.InvalidChange, match="not a time zone we know"):
        billing.set_billing_zone(account, "Mars/Olympus")
    with pytest.raises(billing.InvalidChange):
        billing.set_billing_zone(account, "US/Pacific")  # a legacy alias, not offered
    account.refresh_from_db()
    assert account.timezone == "UTC"
    assert not AuditEvent.objects.filter(action="billing_zone.updated").exists()


@pytest.mark.django_db
def test_d5_sign_up_starts_with_the_browsers_zone_else_utc(catalog):
    _user, account = billing.sign_up(email="kolkata@example.com", password="a-long-password-1",
                                     account_name="Kolkata", timezone="Asia/Kolkata")
    assert account.timezone == "Asia/Kolkata"
    assert current(account).timezone == "Asia/Kolkata"
    _user, other = billing.sign_up(email="nowhere@example.com", password="a-long-password-1",
                                   account_name="Nowhere", timezone="Mars/Olympus")
    assert other.timezone == "UTC"
    _user, calcutta = billing.sign_up(email="calcutta@example.com", password="a-long-password-1",
                                      account_name="Calcutta", timezone="Asia/Calcutta")  # what Chromium reports
    assert calcutta.timezone == "Asia/Kolkata"


@pytest.mark.django_db
def test_d5_subscriptions_existing_at_deploy_keep_what_was_computed_and_issued(account):
    """The data migration: the current period keeps its bounds and its day counts (the account's
    zone, as before); a next period already invoiced on the UTC calendar keeps its invoice's
    bounds; the periods after it follow the account's calendar."""
    # As main left a Kiritimati account: periods on the UTC calendar (what zone UTC computes), the
    # renewal of period 2 issued: [Mar 30 11:00, Apr 30 11:00) UTC, where D-1 ends it Apr 29 11:00.
    sub = billing.subscribe(account, "personal", now=at("2026-01-30T11:00"))
    for moment in ("2026-02-27T11:00", "2026-02-28T11:00", "2026-03-29T11:00"):
        scheduler.run(at(moment))
    renewal = Invoice.objects.get(kind="renewal", period_start=at("2026-03-30T11:00"))
    assert renewal.period_end == at("2026-04-30T11:00")
    zoned(account, "Pacific/Kiritimati")
    Subscription.objects.filter(pk=sub.pk).update(timezone="UTC", next_timezone="")  # the new columns' defaults

    import_module("subscriptions.migrations.0007_billing_calendar").periods_keep_their_calendar(apps, None)

    sub = current(account)
    assert (sub.timezone, sub.next_timezone) == ("Pacific/Kiritimati", "UTC")
    assert (sub.current_period_start, sub.current_period_end) == (at("2026-02-28T11:00"), at("2026-03-30T11:00"))
    assert terms.current_period(sub) == Period(date(2026, 3, 1), date(2026, 3, 31))  # as main counted it
    assert terms.next_terms(sub).end == renewal.period_end
    scheduler.run(at("2026-03-30T11:00"))
    sub = current(account)
    assert (sub.current_period_start, sub.current_period_end, sub.timezone) == (
        renewal.period_start, renewal.period_end, "UTC")
    # The period after it follows D-1: the anchor's local Jan 31 01:00, so local May 31 01:00.
    assert wall(terms.next_terms(sub).end, "Pacific/Kiritimati") == "2026-05-31T01:00"
