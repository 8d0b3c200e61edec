"""OPS-1: /healthz, /readyz and the Prometheus metrics at /metrics, with the billing gauges' values
on a known ledger."""

from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import OperationalError, connection
from django.test import Client
from django_q.models import Task
from djstripe.models import WebhookEventTrigger
from prometheus_client.parser import text_string_to_metric_families

from core.models import PendingEvent
from invoices.models import Invoice, Payment
from notifications.models import EmailLog
from subscriptions import scheduler
from tests.bulk import DUE_AT, make_due_subscriptions
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
DEAD_REDIS = "redis://127.0.0.1:1/0?socket_connect_timeout=0.2&socket_timeout=0.2"


@pytest.fixture
def database_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("connection to server at 10.0.0.5 failed: password authentication failed")

    monkeypatch.setattr(connection, "cursor", refuse)


def test_ops1_healthz_answers_while_the_process_lives_even_with_the_database_down(client, database_down):
    """OPS-1: /healthz touches nothing, so it answers 200 with the database down."""
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "alive"}


def test_ops1_readyz_is_ready_when_the_database_answers(client):
    """OPS-1: /readyz answers 200 with the database up and names no failing dependency."""
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ready" and body["checks"]["database"] == "ok"
    assert body["failing"] == []


def test_ops1_readyz_fails_naming_the_database_and_no_secret(client, database_down):
    """OPS-1: 503, the failing dependency named, the error's class only (not its host or message)."""
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "not ready"
    assert body["checks"]["database"] == "down (OperationalError)" and body["failing"] == ["database"]
    assert "10.0.0.5" not in response.content.decode() and "password" not in response.content.decode()


def test_ops1_readyz_reports_redis_down_but_stays_ready(client, settings):
    """OPS-1: the cache and the broker (Redis) down are reported; readiness holds (the app works without Redis)."""
    settings.REDIS_URL = DEAD_REDIS
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": DEAD_REDIS}}
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": DEAD_REDIS}
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200 and body["status"] == "ready"
    assert body["checks"]["cache"].startswith("down (") and body["checks"]["broker"].startswith("down (")
    assert set(body["failing"]) == {"cache", "broker"} and "127.0.0.1:1" not in response.content.decode()


def scrape(client, **headers) -> dict[str, float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_ops1_metrics_need_the_token_or_a_staff_session(client, settings):
    """OPS-1: /metrics answers 401 to anyone else (a customer included)."""
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    customer = Client()
    customer.force_login(UserFactory())
    assert customer.get("/metrics").status_code == 401
    staff = Client()
    staff.force_login(UserFactory(is_staff=True))
    assert staff.get("/metrics").status_code == 200
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_ops1_billing_gauges_on_a_known_ledger(client, settings):
    """OPS-1: three renewals late by an hour, one unknown payment past the grace and one within it,
    two more outbox events (the oldest 5 minutes old), one failing e-mail, one invalid and one unprocessed
    webhook, and the last scheduled run's duration; then the run catches up."""
    settings.METRICS_TOKEN = "t"
    auth = {"HTTP_AUTHORIZATION": "Bearer t"}
    make_due_subscriptions(3)
    now = DUE_AT + timedelta(hours=1)
    with time_machine.travel(now, tick=False):
        before = scrape(client, **auth)
        assert before["prorata_renewals_overdue"] == 3
        scheduler.run(now)
        invoice = Invoice.objects.filter(kind="renewal").first()
        for minutes, key in ((10, "old"), (1, "young")):
            Payment.objects.create(invoice=invoice, account=invoice.account, amount=Decimal("1.00"), gateway="sandbox",
                                   idempotency_key=f"gauge-{key}", attempted_at=now - timedelta(minutes=minutes))
        undelivered = PendingEvent.objects.count()  # the run's own announcements, not drained here
        for seconds in (300, 60):
            PendingEvent.objects.create(kind="test.event", account_id=invoice.account_id,
                                        occurred_at=now - timedelta(seconds=seconds))
        EmailLog.objects.create(recipient="a@example.test", kind="receipt", category="billing", subject="s",
                                body_text="b", body_html="b", status="failed")
        WebhookEventTrigger.objects.create(remote_ip="127.0.0.1", body="{}", headers={}, valid=False, processed=False)
        WebhookEventTrigger.objects.create(remote_ip="127.0.0.1", body="{}", headers={}, valid=True, processed=False)
        Task.objects.create(id="run1", name="billing-run", func="subscriptions.tasks.scheduled_run",
                            started=now - timedelta(seconds=42), stopped=now - timedelta(seconds=30), success=True)
        after = scrape(client, **auth)
    assert after["prorata_renewals_overdue"] == 0
    assert after["prorata_payments_unknown_unsettled"] == 1
    assert after["prorata_outbox_backlog"] == undelivered + 2 and after["prorata_outbox_oldest_age_seconds"] == 300
    assert after["prorata_emails_failing"] == 1
    assert after["prorata_webhooks_failing{reason=invalid}"] == 1
    assert after["prorata_webhooks_failing{reason=not_processed}"] == 1
    assert after["prorata_billing_run_last_duration_seconds"] == 12 and after["prorata_billing_run_last_success"] == 1


def test_ops1_metrics_count_requests_with_django_prometheus(client, settings):
    """OPS-1: /metrics carries django-prometheus' request counts and latencies by view."""
    settings.METRICS_TOKEN = "t"
    client.get("/healthz")
    samples = scrape(client, HTTP_AUTHORIZATION="Bearer t")
    assert any(name.startswith("django_http_requests_total_by_view_transport_method_total") and "view=healthz" in name
               for name in samples), [n for n in samples if n.startswith("django_http")][:10]
    assert any(name.startswith("django_http_requests_latency_seconds_by_view_method") for name in samples)
