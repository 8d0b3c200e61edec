"""Periods and days, pure (D-1, D-2, D-5, UPG-3): periods from the anchor on a zone's calendar
(`calendar_shift`, the one function that moves an instant on it), day splits, and working days.
No Django, no ORM, no clock. `subscriptions.pricing` prices them (and names them for its callers).

Periods are derived from the anchor, never from the previous end: the end of period `i` is the
anchor moved `i + 1` months, so Jan 31 -> Feb 28 -> Mar 31 holds (D-1). Historical periods are
computed, so changing these rules changes the past.
"""

from __future__ import annotations

import dataclasses
from calendar import monthrange
from dataclasses import dataclass
from datetime import MAXYEAR, MINYEAR, UTC, date, datetime, timedelta, tzinfo
from typing import TypeVar

MONTHLY = "monthly"
YEARLY = "yearly"
CYCLES = (MONTHLY, YEARLY)

_D = TypeVar("_D", date, datetime)


# --- periods and days ---------------------------------------------------------


def _day(value: date, what: str) -> date:
    # D-2: days are counted on local dates; a datetime here would silently count
    # 24-hour blocks in whatever zone it carries, so the caller must convert first.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(
            f"{what} must be a date in the account's billing time zone, "
            f"not {type(value).__name__} (D-2)"
        )
    return value


@dataclass(frozen=True)
class Period:
    """A paid interval `[start, end)` of local dates."""

    start: date
    end: date  # exclusive

    def __post_init__(self) -> None:
        _day(self.start, "start")
        _day(self.end, "end")
        if self.end <= self.start:
            raise ValueError(f"period end {self.end} must be after its start {self.start}")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def extended_by(self, days: int) -> Period:
        """The same period ending `days` later (UPG-3 restored days, REF-4 extensions).

        >>> Period(date(2026, 4, 16), date(2027, 4, 16)).extended_by(15).end
        datetime.date(2027, 5, 1)
        """
        if days < 0:
            raise ValueError(f"days must not be negative, got {days}")
        return dataclasses.replace(self, end=self.end + timedelta(days=days))


def add_months(value: _D, n: int) -> _D:
    """A local calendar date (or a naive local wall-clock time) moved `n` calendar months, the day
    clamped to the month's length (D-1). Periods count from their anchor (`add_months(anchor, n)`),
    so a clamped day returns to the anchor's: Jan 31 -> Feb 28 -> Mar 31.

    An instant (an aware datetime) has no calendar of its own: it moves on a billing time zone's
    calendar with `calendar_shift(moment, zone, months=n)`, the one way to do it.

    >>> add_months(date(2026, 1, 31), 1), add_months(date(2026, 1, 31), 2)
    (datetime.date(2026, 2, 28), datetime.date(2026, 3, 31))
    """
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise TypeError(f"{value} is an instant: move it on a zone's calendar with calendar_shift (D-1)")
    day = value.day
    year, month_index = divmod(value.year * 12 + value.month - 1 + n, 12)
    if not MINYEAR <= year <= MAXYEAR:
        raise ValueError(f"{value} + {n} months is out of range")
    month = month_index + 1
    return value.replace(year=year, month=month, day=min(day, monthrange(year, month)[1]))


def add_years(value: _D, n: int) -> _D:
    """A local date moved `n` calendar years; Feb 29 becomes Feb 28 in a common year (D-1).

    >>> add_years(date(2028, 2, 29), 1), add_years(date(2028, 2, 29), 4)
    (datetime.date(2029, 2, 28), datetime.date(2032, 2, 29))
    """
    return add_months(value, 12 * n)


def calendar_shift(moment: datetime, zone: tzinfo, *, months: int = 0, days: int = 0) -> datetime:
    """The instant `months` calendar months and then `days` calendar days after `moment`, counted
    on the calendar of the billing time zone `zone`, at `moment`'s local wall-clock time (D-1, D-5).
    The one way an instant moves by months, years or days: periods, trials, restored days and
    extensions all call it. Returns a UTC instant.

    The local day is clamped to the month's length, as `add_months` does. A local time that does
    not exist (skipped by a DST change) becomes the first valid instant after it; a local time
    that happens twice (the clock set back) is the first of the two.

    Worked example (`Pacific/Kiritimati`, UTC+14, the policy's D-1 example): the anchor
    2026-01-30 11:00 UTC is local Jan 31 01:00; one month later is local Feb 28 01:00
    (2026-02-27 11:00 UTC), two months later local Mar 31 01:00. On the UTC calendar the same
    anchor would end its first period on local Mar 1.

    >>> from zoneinfo import ZoneInfo
    >>> anchor = datetime(2026, 1, 30, 11, 0, tzinfo=UTC)
    >>> calendar_shift(anchor, ZoneInfo("Pacific/Kiritimati"), months=1)
    datetime.datetime(2026, 2, 27, 11, 0, tzinfo=datetime.timezone.utc)
    >>> calendar_shift(anchor, ZoneInfo("Pacific/Kiritimati"), months=2).astimezone(ZoneInfo("Pacific/Kiritimati"))
    datetime.datetime(2026, 3, 31, 1, 0, tzinfo=zoneinfo.ZoneInfo(key='Pacific/Kiritimati'))

    `America/Adak` moves its clocks from 02:00 to 03:00 on 2027-03-14: local 02:30 that day does
    not exist, so a month after local Feb 14 02:30 is local Mar 14 03:00, the first valid instant.

    >>> adak = ZoneInfo("America/Adak")
    >>> calendar_shift(datetime(2027, 2, 14, 12, 30, tzinfo=UTC), adak, months=1).astimezone(adak)
    datetime.datetime(2027, 3, 14, 3, 0, tzinfo=zoneinfo.ZoneInfo(key='America/Adak'))
    """
    if not isinstance(moment, datetime) or moment.tzinfo is None:
        raise TypeError(f"{moment!r} must be an aware datetime, an instant (D-4)")
    if zone is None:
        raise TypeError("an instant moves on the calendar of a billing time zone: pass the zone (D-5)")
    wall = moment.astimezone(zone).replace(tzinfo=None, fold=0)
    return local_instant(add_months(wall, months) + timedelta(days=days), zone)


def local_instant(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant of the naive local wall-clock time `wall` in `zone`: the first occurrence
    when the time happens twice, the first valid instant after it when it does not exist.

    >>> from zoneinfo import ZoneInfo
    >>> local_instant(datetime(2027, 11, 7, 1, 30), ZoneInfo("America/Adak"))  # happens twice
    datetime.datetime(2027, 11, 7, 10, 30, tzinfo=datetime.timezone.utc)
    >>> local_instant(datetime(2027, 3, 14, 2, 30), ZoneInfo("America/Adak"))  # skipped: 03:00 local
    datetime.datetime(2027, 3, 14, 12, 0, tzinfo=datetime.timezone.utc)
    """
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: fold=1 reads `wall` with the offset after the change, fold=0 with the one before,
    # so the change lies between the two readings. The first valid instant is the change itself,
    # found to the second (offsets are whole seconds; Apia skipped a whole day in 2011).
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    low, high = min(before, first), max(before, first)
    offset_after = high.astimezone(zone).utcoffset()
    low_s, high_s = int(low.timestamp()), int(high.timestamp()) + 1
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset_after:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


def period_bounds(anchor: _D, cycle: str, index: int, zone: tzinfo | None = None) -> tuple[_D, _D]:
    """Start and end of period `index` (0 = the first) of a series anchored on `anchor`.

    Both bounds come from the anchor, never from the previous end (D-1). An anchor that is an
    instant is counted on the calendar of `zone`, the billing time zone (`calendar_shift`); a local
    date needs no zone.

    >>> period_bounds(date(2026, 1, 31), "monthly", 1)
    (datetime.date(2026, 2, 28), datetime.date(2026, 3, 31))
    """
    months = _cycle_months(cycle, index)
    return _anchor_moved(anchor, months * index, zone), _anchor_moved(anchor, months * (index + 1), zone)


def period_end(anchor: _D, cycle: str, index: int, zone: tzinfo | None = None) -> _D:
    """The end of period `index` of a series anchored on `anchor`: `period_bounds(...)[1]`, without
    computing the start (the billing run needs only the next period's end, issue 17).

    >>> period_end(date(2026, 1, 31), "monthly", 1)
    datetime.date(2026, 3, 31)
    """
    return _anchor_moved(anchor, _cycle_months(cycle, index) * (index + 1), zone)


def _cycle_months(cycle: str, index: int) -> int:
    if index < 0:
        raise ValueError(f"period index must not be negative, got {index}")
    if cycle not in CYCLES:
        raise ValueError(f"unknown billing cycle {cycle!r}; expected one of {CYCLES}")
    return 1 if cycle == MONTHLY else 12


def _anchor_moved(anchor: _D, months: int, zone: tzinfo | None) -> _D:
    if isinstance(anchor, datetime) and anchor.tzinfo is not None:
        return calendar_shift(anchor, zone, months=months)
    if zone is not None:
        raise TypeError("a local date is already on its zone's calendar: pass no zone")
    return add_months(anchor, months)


def period_end_for(start: _D, cycle: str, zone: tzinfo | None = None) -> _D:
    """End of the period of `cycle` that starts on `start` (an instant needs its `zone`).

    >>> period_end_for(date(2026, 4, 16), "yearly")
    datetime.date(2027, 4, 16)
    """
    return period_bounds(start, cycle, 0, zone)[1]


def day_split(period: Period, on: date) -> tuple[int, int, int]:
    """`(used_days, remaining_days, total_days)` of `period` for a change on `on` (D-2).

    `on` is clamped into the period: before it nothing is used, after it nothing remains.

    >>> day_split(Period(date(2026, 4, 1), date(2026, 5, 1)), date(2026, 4, 16))
    (15, 15, 30)
    """
    on = min(max(_day(on, "on"), period.start), period.end)
    used = (on - period.start).days
    return used, period.days - used, period.days


# --- working days (UPG-3) -----------------------------------------------------


def add_working_days(day: date, n: int) -> date:
    """`day` plus `n` working days (Monday to Friday; public holidays are not skipped).

    >>> add_working_days(date(2026, 4, 17), 1)  # Friday -> Monday
    datetime.date(2026, 4, 20)
    """
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    current = day
    while n:
        current += timedelta(days=1)
        if current.weekday() < 5:
            n -= 1
    return current


def restore_deadline(upgrade_on: date, working_days: int = 5) -> date:
    """Last day the owner may ask for forfeited days back after a monthly -> yearly upgrade.

    UPG-3: upgrade on Thu 2026-04-16 -> requests accepted up to Thu 2026-04-23.

    >>> restore_deadline(date(2026, 4, 16))
    datetime.date(2026, 4, 23)
    """
    return add_working_days(upgrade_on, working_days)


def restore_window_open(upgrade_on: date, requested_on: date, working_days: int = 5) -> bool:
    """Whether a restore request made on `requested_on` is in time (UPG-3).

    >>> restore_window_open(date(2026, 4, 16), date(2026, 4, 23))
    True
    >>> restore_window_open(date(2026, 4, 16), date(2026, 4, 24))
    False
    """
    return upgrade_on <= requested_on <= restore_deadline(upgrade_on, working_days)
