"""The calendar of a billing time zone (D-2, D-5): the one place that turns a zone name into a
zone and an instant into the date a customer reads. Dates a customer sees are dates of the
account's billing time zone, never `now().date()` in UTC."""

from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC_ZONE = ZoneInfo("UTC")


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone called `name`; UTC when it is empty or unknown (an account created before a
    zone was removed from the database keeps working).

    >>> zone("Asia/Kolkata").key, zone("").key, zone("Mars/Olympus").key
    ('Asia/Kolkata', 'UTC', 'UTC')
    """
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    """The calendar date of `moment` in `tz` (D-2).

    >>> from datetime import UTC
    >>> local_date(datetime(2026, 1, 30, 11, 0, tzinfo=UTC), zone("Pacific/Kiritimati"))
    datetime.date(2026, 1, 31)
    """
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone: instants are aware (D-4)")
    return moment.astimezone(tz).date()
