"""The billing gauges of /metrics (OPS-1), read from the database at scrape time.

Each is one indexed query (or two), so a scrape every 15 to 60 s costs milliseconds; nothing is
kept in the process, so every gunicorn worker answers the same figures. What a healthy system
shows, and the alert rules, are in docs/operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Min, Q
from django_q.models import Task
from djstripe.models import WebhookEventTrigger

from core.models import PendingEvent
from invoices.models import Payment, PaymentStatus
from notifications.models import EmailLog, EmailStatus
from subscriptions import selectors

RUN_FUNC = "subscriptions.tasks.scheduled_run"
WEBHOOK_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


def renewals_overdue(now) -> int:
    """Subscriptions whose renewal was due more than two billing runs ago and is not invoiced:
    0 while the runs keep up (a renewal due now is the next run's work, not a fault)."""
    late = now - timedelta(minutes=2 * settings.BILLING_RUN_EVERY_MINUTES)
    return selectors.due_renewals(late).count()


def billing_gauges(now) -> list[Gauge]:
    grace = timedelta(seconds=settings.BILLING_SETTLE_GRACE_SECONDS)
    outbox = PendingEvent.objects.aggregate(oldest=Min("occurred_at"))
    backlog = PendingEvent.objects.count()
    last_run = Task.objects.filter(func=RUN_FUNC).order_by("-stopped").values("started", "stopped", "success").first()
    webhooks = WebhookEventTrigger.objects.filter(created__gte=now - WEBHOOK_WINDOW)
    gauges = [
        Gauge("prorata_renewals_overdue", "Renewals due for longer than two billing runs and not invoiced (REN-1).",
              renewals_overdue(now)),
        Gauge("prorata_payments_unknown_unsettled",
              "Payments whose outcome is unknown, older than the settle grace (PAY-2).",
              Payment.objects.filter(status=PaymentStatus.UNKNOWN, attempted_at__lte=now - grace).count()),
        Gauge("prorata_outbox_backlog", "Events in the outbox not delivered yet.", backlog),
        Gauge("prorata_outbox_oldest_age_seconds", "Age of the oldest undelivered outbox event (0 when empty).",
              (now - outbox["oldest"]).total_seconds() if outbox["oldest"] else 0),
        Gauge("prorata_emails_failing", "E-mails whose last send failed (NOT-3), waiting for a retry or given up.",
              EmailLog.objects.filter(status=EmailStatus.FAILED).count()),
        Gauge("prorata_webhooks_failing", "Stripe webhooks of the last 24 hours that failed, by reason.",
              webhooks.filter(valid=False).count(), (("reason", "invalid"),)),
        Gauge("prorata_webhooks_failing", "Stripe webhooks of the last 24 hours that failed, by reason.",
              webhooks.filter(valid=True).filter(Q(processed=False) | ~Q(exception="")).count(),
              (("reason", "not_processed"),)),
    ]
    if last_run:
        gauges += [
            Gauge("prorata_billing_run_last_duration_seconds", "Duration of the last scheduled billing run.",
                  (last_run["stopped"] - last_run["started"]).total_seconds()),
            Gauge("prorata_billing_run_last_success", "1 when the last scheduled billing run succeeded, else 0.",
                  1 if last_run["success"] else 0),
            Gauge("prorata_billing_run_last_finished_timestamp_seconds", "When the last scheduled billing run ended.",
                  last_run["stopped"].timestamp()),
        ]
    return gauges
