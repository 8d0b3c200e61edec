"""django-q2 entry points, called by the schedules that `setup_schedules` creates."""

from .scheduler import run


def scheduled_run() -> str:
    """Run everything due now; inside a cluster with a Redis broker the work fans out to workers."""
    return str(run())


def scheduled_email_retries() -> str:
    """Deliver what the events outbox still holds, then send e-mails whose retry is due (NOT-3)."""
    from core.events import drain
    from notifications.services import email_retry_due

    delivered = drain()
    return f"outbox {delivered}, {email_retry_due()}"
