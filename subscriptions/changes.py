"""A change to a subscription, in one vocabulary (issue 24): what a quote offers, what a charged
invoice holds until it is paid (`Invoice.pending_change`), and what `lifecycle.change_apply`
makes of a subscription. Pure: no ORM, no clock.

The JSON an invoice stores is written and read here only (`PendingChange.to_json` /
`PendingChange.from_json`), with the keys stored since the first charged change: `action` names
the kind; an upgrade's new period start is `new_start`, the others' `start`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from enum import StrEnum


class ChangeKind(StrEnum):
    """Every kind of change a customer (or dunning) makes to a subscription."""

    START_TRIAL = "start_trial"  # TRI-1: a free trial replaces Free or an ended subscription
    TRIAL_CHANGE = "trial_change"  # TRI-6: the trial's plan switched, its end date kept
    SUBSCRIBE = "subscribe"  # REN-4, UPG-6: a first paid period from the payment date (charged now)
    UPGRADE = "upgrade"  # UPG-2 same cycle, anchor kept; UPG-3 a new yearly period (charged now)
    SCHEDULE = "schedule"  # DWN-1..3: another plan from the period's (or the trial's) end
    DOWNGRADE_NOW = "downgrade_now"  # DWN-4: a lower plan at once, the unused value as credit
    ADD_ON = "add_on"  # ADD-1: more extra properties at once (charged now)
    ADD_ON_SCHEDULED = "add_on_scheduled"  # ADD-2: fewer extra properties from the period end
    REACTIVATE = "reactivate"  # DUN-3: a full new period after a suspension for non-payment (charged now)


# The kinds an invoice holds until its payment applies them (`lifecycle.paid_change_apply`).
CHARGED = frozenset({ChangeKind.SUBSCRIBE, ChangeKind.UPGRADE, ChangeKind.ADD_ON, ChangeKind.REACTIVATE})


@dataclass(frozen=True)
class PendingChange:
    """One change to a subscription: its kind and what it needs to be applied."""

    kind: ChangeKind
    plan: str = ""  # the plan's code ("" when the plan stays)
    cycle: str = ""  # "" when the cycle stays
    start: datetime | None = None  # a new series' first period start (subscribe, UPG-3, reactivate, a trial)
    timezone: str = ""  # the zone that period was quoted and invoiced on (PAY-4); "": before issue 15, UTC
    quantity: int | None = None  # extra properties (ADD-1, ADD-2)
    from_plan: str = ""  # what the upgrade replaced, as a record
    from_cycle: str = ""
    period_start: str = ""  # the period in force when an upgrade was quoted (ISO), as a record
    forfeited_days: int = 0  # UPG-3: the monthly days given up (restorable on request)
    from_subscription: int | None = None  # the subscription a first paid period replaces
    actor_id: int | None = None  # who asked for it

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ChangeKind(self.kind))
        object.__setattr__(self, "forfeited_days", int(self.forfeited_days or 0))

    @property
    def new_series(self) -> bool:
        """Whether the change starts a new series of periods (a new anchor) at `start`."""
        if self.kind == ChangeKind.UPGRADE:
            return bool(self.from_cycle) and self.cycle != self.from_cycle  # UPG-3
        return self.kind in (ChangeKind.SUBSCRIBE, ChangeKind.REACTIVATE, ChangeKind.START_TRIAL)

    def to_json(self) -> dict:
        """What `Invoice.pending_change` stores (the charged kinds)."""
        if self.kind not in CHARGED:
            raise ValueError(f"A {self.kind} change is not charged: no invoice holds it.")
        keep = JSON_KEYS[self.kind]
        data = {"action": str(self.kind)}
        for name in keep:
            value = getattr(self, name)
            if name == "start":
                data["new_start" if self.kind == ChangeKind.UPGRADE else "start"] = value.isoformat()
            else:
                data[name] = value
        return data

    @classmethod
    def from_json(cls, data: dict | None) -> PendingChange | None:
        """The change an invoice holds, or None (an invoice that applies no change)."""
        if not data or not data.get("action"):
            return None
        start = data.get("new_start") or data.get("start")
        known = {f.name for f in fields(cls)} - {"kind", "start"}
        return cls(kind=ChangeKind(data["action"]), start=datetime.fromisoformat(start) if start else None,
                   **{key: value for key, value in data.items() if key in known and value is not None})


# The fields each charged kind stores, in the order they have been written.
JSON_KEYS = {
    ChangeKind.SUBSCRIBE: ("plan", "cycle", "start", "timezone", "from_subscription", "actor_id"),
    ChangeKind.UPGRADE: ("plan", "cycle", "from_plan", "from_cycle", "period_start", "start", "timezone",
                         "forfeited_days", "actor_id"),
    ChangeKind.ADD_ON: ("quantity", "actor_id"),
    ChangeKind.REACTIVATE: ("start", "timezone", "actor_id"),
}
