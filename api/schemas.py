"""Request and response shapes of the usage API (documented in /api/v1/openapi.json)."""

from typing import Literal

from ninja import Schema
from pydantic import Field

from usage.events import MAX_BATCH_EVENTS, REJECTION_REASONS, STOP_REASONS

RejectionReason = Literal[REJECTION_REASONS]  # type: ignore[valid-type]
StopReason = Literal[STOP_REASONS]  # type: ignore[valid-type]


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong and what to do, fit to show an operator.")


class RejectionOut(Schema):
    index: int = Field(description="Position of the event in the batch, from 0.")
    id: str | None = Field(description="The event's id, when it was a valid one.")
    reason: RejectionReason
    detail: str


class UsageBatchOut(Schema):
    accepted: int = Field(description="New events recorded; a replay of them will count as duplicates.")
    counted: int = Field(description="Accepted events counted against the month's quota.")
    over_quota: int = Field(description="Accepted events not counted: beyond a hard-capped plan's quota (USE-4).")
    duplicate: int = Field(description="Events whose id was already seen (or repeated in the batch): ignored.")
    rejected: int = Field(description="Events refused; see `rejections`. The rest of the batch was processed.")
    rejections: list[RejectionOut]


class LimitsOut(Schema):
    properties: int | None = Field(description="Properties allowed (extra properties included); null = unlimited.")
    sessions: int | None = Field(description="Sessions included per calendar month by the plan; null = unlimited.")
    integrations: int | None = Field(description="Conversion sources allowed; null = unlimited.")


class EntitlementOut(Schema):
    tracking_tag: str
    active: bool = Field(description="True when the property may track.")
    plan: str | None = Field(description="Code of the account's current plan.")
    limits: LimitsOut
    month: str = Field(description="The calendar month (UTC) the session counts are for, YYYY-MM.")
    sessions_used: int
    sessions_included: int | None = Field(
        description="This month's quota: the highest of the plans active in the month; null = unlimited."
    )
    hard_capped: bool = Field(description="True when sessions beyond the quota are not counted (no overage).")
    reason: StopReason | None = Field(description="Why tracking must stop; null when active.")
    detail: str


# The batch body is validated event by event in usage.events (a bad event is rejected alone,
# the rest of the batch goes on), so it is documented here rather than parsed by pydantic.
# USAGE_EVENT_SCHEMA is what a good event looks like. The batch's items accept anything, because
# the endpoint does: an item that breaks these rules (a malformed timestamp, a missing id, not an
# object) is answered 200 with a rejection for that item, never 422 (docs/api.md). Only what
# fails the whole batch is a constraint of the body: an object with an `events` list of at most
# MAX_BATCH_EVENTS items.
USAGE_EVENT_SCHEMA = {
    "title": "UsageEvent",
    "type": "object",
    "required": ["id", "tracking_tag", "type", "timestamp"],
    "properties": {
        "id": {"type": "string", "minLength": 1, "maxLength": 100,
               "description": "Unique per event; an id already seen is ignored (USE-1)."},
        "tracking_tag": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,40}$"},
        "type": {"type": "string", "enum": ["session"]},
        "timestamp": {"type": "string", "format": "date-time",
                      "description": "When the session started, with a UTC offset; at most 35 days old."},
    },
}
USAGE_BATCH_SCHEMA = {
    "type": "object",
    "required": ["events"],
    "properties": {
        "events": {
            "type": "array",
            "maxItems": MAX_BATCH_EVENTS,
            "description": f"Up to {MAX_BATCH_EVENTS:,} events. More gives 413 and nothing is recorded.",
            "items": {
                "description": "A UsageEvent. Any other item (a malformed timestamp, a missing or overlong id, "
                               "an unknown tag, not an object) is not an error for the request: it is answered "
                               "200 and listed in `rejections` with its reason, and the rest of the batch is "
                               "recorded.",
                "anyOf": [USAGE_EVENT_SCHEMA, {"description": "Anything else: rejected alone, with a reason."}],
            },
        }
    },
}
