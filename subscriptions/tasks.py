"""django-q2 entry points, called by the schedules that `setup_schedules` creates."""

from .scheduler import run


def scheduled_run() -> str:
    """Run everything due now; inside a cluster with a Redis broker the work fans out to workers."""
    return str(run())

