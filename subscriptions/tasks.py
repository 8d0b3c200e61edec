"""django-q2 entry points. The schedule calls `scheduled_run` every BILLING_RUN_EVERY_MINUTES."""

from .scheduler import run


def scheduled_run() -> str:
    """Run everything due now; inside a cluster with a Redis broker the work fans out to workers."""
    return str(run())
