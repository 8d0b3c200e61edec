"""django-q2 tasks. Run by the cluster; inline in tests (Q_CLUSTER sync=True)."""

from django.utils import timezone

from core.events import drain

from .models import EmailLog, EmailStatus
from .services import EmailNotSent, email_deliver, email_retry_due

__all__ = ["EmailNotSent", "email_send"]


def email_send(log_id: int) -> str:
    entry = EmailLog.objects.filter(pk=log_id).only("status", "next_attempt_at").first()
    if entry is None:
        return "missing"
    if entry.status == EmailStatus.FAILED and entry.next_attempt_at and entry.next_attempt_at > timezone.now():
        return "not due"  # a redelivery before the backoff has passed: the scheduled retry sends it
    outcome = email_deliver(log_id)
    if outcome == "failed":
        raise EmailNotSent(f"E-mail {log_id} failed; see its log entry")
    return outcome



def scheduled_email_retries() -> str:
    """Deliver what the events outbox still holds, then send e-mails whose retry is due (NOT-3).
    Run by the `email-retries` schedule (setup_schedules)."""
    delivered = drain()
    return f"outbox {delivered}, {email_retry_due()}"
