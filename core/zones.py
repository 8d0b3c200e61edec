"""The calendar of a billing time zone (D-2, D-5): the one place that turns a zone name into a
zone and an instant into the date a customer reads. Dates a customer sees are dates of the
account's billing time zone, never `now().date()` in UTC."""

from datetime import date, datetime
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC_ZONE = ZoneInfo("UTC")
DEFAULT = "UTC"

# The IANA areas offered to an owner: places, not the legacy aliases ("US/Pacific", "Etc/GMT+5",
# "Japan") that name the same zones.
AREAS = ("Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe", "Indian",
         "Pacific")

# Older spellings that browsers still report (their Intl API follows CLDR, which kept these names:
# Chromium says "Asia/Calcutta"), with the current IANA name each is stored and listed under.
CURRENT_NAMES = {
    "Asia/Calcutta": "Asia/Kolkata", "Asia/Saigon": "Asia/Ho_Chi_Minh", "Asia/Katmandu": "Asia/Kathmandu",
    "Asia/Rangoon": "Asia/Yangon", "Europe/Kiev": "Europe/Kyiv", "America/Godthab": "America/Nuuk",
    "America/Buenos_Aires": "America/Argentina/Buenos_Aires", "America/Indianapolis": "America/Indiana/Indianapolis",
    "America/Louisville": "America/Kentucky/Louisville", "Atlantic/Faeroe": "Atlantic/Faroe",
    "Pacific/Enderbury": "Pacific/Kanton", "Pacific/Truk": "Pacific/Chuuk", "Pacific/Ponape": "Pacific/Pohnpei",
    "Asia/Dacca": "Asia/Dhaka", "Asia/Thimbu": "Asia/Thimphu", "Asia/Ujung_Pandang": "Asia/Makassar",
}


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone called `name`; UTC when it is empty or unknown (an account created before a
    zone was removed from the database keeps working).

    >>> zone("Asia/Kolkata").key, zone("").key, zone("Mars/Olympus").key
    ('Asia/Kolkata', 'UTC', 'UTC')
    """
    try:
        return ZoneInfo(name or DEFAULT)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC_ZONE


def current_name(name: str | None) -> str:
    """`name` with an older spelling replaced by the current IANA name (`CURRENT_NAMES`).

    >>> current_name("Asia/Calcutta"), current_name(" Europe/Berlin ")
    ('Asia/Kolkata', 'Europe/Berlin')
    """
    name = (name or "").strip()
    return CURRENT_NAMES.get(name, name)


def is_zone(name: str | None) -> bool:
    """Whether `name` is a time zone an owner may choose: UTC or an IANA place (`choices`), in its
    current spelling (see `current_name`).

    >>> is_zone("Pacific/Chatham"), is_zone("UTC"), is_zone("US/Pacific"), is_zone("Asia/Calcutta")
    (True, True, False, False)
    """
    return name in offered()


@cache
def names() -> frozenset[str]:
    return frozenset(available_timezones())


@cache
def offered() -> frozenset[str]:
    return frozenset(name for name in names() if name == DEFAULT or (
        name.partition("/")[0] in AREAS and name.partition("/")[2] and name not in CURRENT_NAMES))


@cache
def choices() -> tuple:
    """The zones an owner chooses from, grouped by area for a select: UTC first, then each area's
    places by name (Django's grouped choices: an `<optgroup>` per area)."""
    grouped: dict[str, list] = {area: [] for area in AREAS}
    for name in sorted(offered() - {DEFAULT}):
        area, _, place = name.partition("/")
        grouped[area].append((name, place.replace("_", " ").replace("/", " / ")))
    return ((DEFAULT, "UTC"), *((area, tuple(places)) for area, places in grouped.items() if places))


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    """The calendar date of `moment` in `tz` (D-2).

    >>> from datetime import UTC
    >>> local_date(datetime(2026, 1, 30, 11, 0, tzinfo=UTC), zone("Pacific/Kiritimati"))
    datetime.date(2026, 1, 31)
    """
    if moment.tzinfo is None:
        raise ValueError(f"{moment} has no time zone: instants are aware (D-4)")
    return moment.astimezone(tz).date()
