"""The one clock. Every service and command takes `now` (D-4: tests, `--now` and the simulation
replay the past through it) and reads it here, so there is one spelling of "the moment this runs".
"""

from datetime import datetime

from django.utils import timezone


def clock(now: datetime | None = None) -> datetime:
    """The moment an operation runs at: the `now` it was given, else the current time (D-4)."""
    return now or timezone.now()
