"""django-q2 entry points of the usage app, called by the schedules that `setup_schedules` creates."""

from .ingest import usage_events_prune


def scheduled_usage_events_prune() -> str:
    return f"{usage_events_prune()} usage event IDs past the replay window deleted"
