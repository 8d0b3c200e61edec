"""Periods and calendars (D-1, D-2, D-5): the local date of an instant on the account's calendar or
on the calendar of a subscription's current period, the current period as local dates, the zone the
next period is computed on, and periods moved by days. Reads of columns only: no query, no clock.
"""

from datetime import date, datetime

from core import zones
from plans.models import Plan

from . import pricing
from .models import Subscription


def local_date(account, moment: datetime) -> date:
    """D-5: the date of `moment` in the billing time zone the owner chose (an invoice's date, the
    day a request was made). A subscription's period dates are `period_date`'s."""
    return zones.local_date(moment, account.zone)


def period_date(sub: Subscription, moment: datetime) -> date:
    """D-1, D-2: the date of `moment` on the calendar of `sub`'s current period, the one its bounds
    were computed on: the period's start and end, the day a change is counted from, the trial's
    end. It is the account's zone, except until the next period after the owner changed zones."""
    return zones.local_date(moment, sub.zone)


def current_period(sub: Subscription) -> pricing.Period:
    """The current period as local dates of its calendar (D-2), for proration."""
    return pricing.Period(period_date(sub, sub.current_period_start), period_date(sub, sub.current_period_end))


def trial_end_at(account, plan: Plan, now: datetime) -> datetime:
    """TRI-3: a trial starting at `now` ends `trial_days` local days later, at the same local time,
    on the account's calendar (a 14-day trial across a DST change is 14 calendar days)."""
    return pricing.calendar_shift(now, account.zone, days=plan.trial_days)


def days_later(sub: Subscription, moment: datetime, days: int) -> datetime:
    """`moment` moved `days` local days on the calendar of `sub`'s current period (UPG-3 restored
    days, REF-4 extensions)."""
    return pricing.calendar_shift(moment, sub.zone, days=days)


def span(start: datetime, end: datetime, zone) -> str:
    """A period as the customer reads it: its local dates in the zone it was computed in (D-1)."""
    return f"{zones.local_date(start, zone).isoformat()} to {zones.local_date(end, zone).isoformat()}"  # YYYY-MM-DD


def next_zone(sub: Subscription) -> str:
    """D-5: the zone the next period of `sub` is computed on: the account's, as the owner chose it,
    unless that period was already invoiced when the owner changed it (`next_timezone`, set by
    `billing.set_billing_zone`): an issued invoice's period never moves."""
    return next_zone_of(sub.next_timezone, sub.account.timezone)


def next_zone_of(next_timezone: str, account_timezone: str) -> str:
    """`next_zone` from the subscription's `next_timezone` and its account's `timezone` columns."""
    return next_timezone or account_timezone


def ahead_period(ahead) -> pricing.Period:
    """The invoiced next period (`terms.NextTerms`: its start, end and zone) as local dates of its
    own calendar (D-2), for proration."""
    return pricing.Period(zones.local_date(ahead.start, ahead.zone), zones.local_date(ahead.end, ahead.zone))


def trial_first_period(sub: Subscription) -> tuple[datetime, datetime, str]:
    """TRI-3: the first paid period after the trial starts at the trial's end and is computed on the
    calendar of `next_zone`: its start, its end and that zone's name."""
    timezone_name = next_zone(sub)
    start, end = pricing.period_bounds(sub.trial_end, sub.cycle, 0, zones.zone(timezone_name))
    return start, end, timezone_name


def anchor_moved(sub: Subscription, days: int) -> tuple[datetime, datetime]:
    """The anchor and the current period's end once `days` are added to a paid period (UPG-3
    restored days, REF-4 extensions): the anchor moves `days` local days, so the renewal and every
    later period follow (D-1)."""
    anchor = days_later(sub, sub.anchor_at, days)
    return anchor, pricing.period_bounds(anchor, sub.cycle, sub.period_index, sub.zone)[1]
