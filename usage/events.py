"""A reported event and the reasons one is refused (USE-1): validation of one event at a time,
the API's stable reason codes, and the batch limit. Pure: no ORM, no clock (`now` is passed)."""

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_BATCH_EVENTS = 1000
MAX_EVENT_AGE = timedelta(days=35)
# Clocks of the tracking servers drift; an event a little ahead of ours is not "in the future".
FUTURE_TOLERANCE = timedelta(minutes=5)
EVENT_TYPES = ("session",)
EVENT_ID_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
TRACKING_TAG_RE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


class Reason:
    """Why an event was rejected, or why a property must stop tracking. Stable API codes."""

    INVALID_EVENT = "invalid_event"
    INVALID_ID = "invalid_id"
    INVALID_TRACKING_TAG = "invalid_tracking_tag"
    INVALID_TYPE = "invalid_type"
    INVALID_TIMESTAMP = "invalid_timestamp"
    TOO_OLD = "too_old"
    IN_FUTURE = "in_future"
    UNKNOWN_TRACKING_TAG = "unknown_tracking_tag"
    ACCOUNT_SUSPENDED = "account_suspended"
    PROPERTY_PAUSED = "property_paused"
    PROPERTY_DELETED = "property_deleted"
    NO_SUBSCRIPTION = "no_subscription"
    QUOTA_EXHAUSTED = "quota_exhausted"


REJECTION_REASONS = (
    Reason.INVALID_EVENT, Reason.INVALID_ID, Reason.INVALID_TRACKING_TAG, Reason.INVALID_TYPE,
    Reason.INVALID_TIMESTAMP, Reason.TOO_OLD, Reason.IN_FUTURE, Reason.UNKNOWN_TRACKING_TAG,
    Reason.ACCOUNT_SUSPENDED, Reason.PROPERTY_PAUSED, Reason.PROPERTY_DELETED, Reason.NO_SUBSCRIPTION,
)
STOP_REASONS = (
    Reason.ACCOUNT_SUSPENDED, Reason.NO_SUBSCRIPTION, Reason.PROPERTY_DELETED, Reason.PROPERTY_PAUSED,
    Reason.QUOTA_EXHAUSTED,
)


class BatchTooLarge(Exception):
    """More than MAX_BATCH_EVENTS events: the whole batch is refused, nothing is stored."""


STOP_DETAIL = {
    Reason.ACCOUNT_SUSPENDED: "The account is suspended: this property must not track.",
    Reason.PROPERTY_PAUSED: "The property is paused: it must not track.",
    Reason.PROPERTY_DELETED: "The property was deleted: it must not track.",
    Reason.NO_SUBSCRIPTION: "The account has no subscription: this property must not track.",
    Reason.QUOTA_EXHAUSTED: "This month's included sessions are used up and the plan has no overage.",
}


@dataclass(frozen=True)
class ParsedEvent:
    index: int
    id: str
    tracking_tag: str
    occurred_at: datetime


@dataclass(frozen=True)
class Rejection:
    index: int
    id: str | None
    reason: str
    detail: str


def event_parse(index: int, raw, now: datetime) -> ParsedEvent | Rejection:
    """Validate one reported event. Returns the event, or the reason it is refused."""
    if not isinstance(raw, dict):
        return Rejection(index, None, Reason.INVALID_EVENT, "Each event must be a JSON object.")
    event_id = raw.get("id")
    if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
        return Rejection(index, None, Reason.INVALID_ID,
                         "`id` must be a string of 1 to 100 characters without control characters.")
    tag = raw.get("tracking_tag")
    if not isinstance(tag, str) or not TRACKING_TAG_RE.match(tag):
        return Rejection(index, event_id, Reason.INVALID_TRACKING_TAG,
                         "`tracking_tag` must be a property's tracking tag (letters, digits, '-' and '_').")
    if raw.get("type") not in EVENT_TYPES:
        return Rejection(index, event_id, Reason.INVALID_TYPE, "`type` must be \"session\".")
    stamp = raw.get("timestamp")
    occurred_at = None
    if isinstance(stamp, str) and len(stamp) <= 40:
        try:
            parsed = datetime.fromisoformat(stamp)
            if parsed.tzinfo is not None and parsed.utcoffset() is not None:
                occurred_at = parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            occurred_at = None
    if occurred_at is None:
        return Rejection(index, event_id, Reason.INVALID_TIMESTAMP,
                         "`timestamp` must be an ISO 8601 date-time with a UTC offset, like 2026-11-05T14:03:00Z.")
    if occurred_at < now - MAX_EVENT_AGE:
        return Rejection(index, event_id, Reason.TOO_OLD,
                         f"Events older than {MAX_EVENT_AGE.days} days are not accepted.")
    if occurred_at > now + FUTURE_TOLERANCE:
        return Rejection(index, event_id, Reason.IN_FUTURE, "The timestamp is in the future.")
    return ParsedEvent(index, event_id, tag, occurred_at)
