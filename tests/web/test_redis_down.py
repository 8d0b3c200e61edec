"""Redis is a cache and a broker, never the source of truth (issue 16): with REDIS_URL pointing at a
port where nothing listens, or at one that accepts connections and never answers, the API, the
billing page, a plan change and an extra-properties purchase all succeed, every committed action
is whole, and what the broker could not take (e-mails, outbox events) is delivered by the schedule.

Transactional tests: the commit hooks (cache invalidations, the outbox's hand-off, e-mails) run
for real after each commit, as they do in production, where a hook that raised turned a committed
purchase into a 500."""

import re
import socket
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse
from django_q.conf import Conf

from api.services import api_key_cache_clear_local, api_key_create
from config.settings.base import redis_with_timeouts
from core.models import PendingEvent
from invoices.models import Invoice, InvoiceStatus, Payment, PaymentStatus
from notifications.models import EmailLog, EmailStatus
from notifications.services import STUCK_AFTER, email_retry_due
from subscriptions import billing
from tests.factories import PropertyFactory
from usage.entitlements import entitlement_cache_clear_local

from .conftest import current

pytestmark = pytest.mark.django_db(transaction=True)


def quoted(response) -> str:
    """The amount a quote page asks the customer to confirm."""
    assert response.status_code == 200
    return re.search(r'name="quoted_amount" value="([0-9.]+)"', response.content.decode())[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(params=["refused", "hung"])
def redis_down(request, settings, monkeypatch):
    """REDIS_URL (cache, API throttle and django-q2's broker) at a port where nothing listens
    ("refused"), or where a socket accepts connections and never answers ("hung": what a wedged
    Redis or a dropped network looks like, caught by REDIS_TIMEOUT)."""
    listener = None
    if request.param == "hung":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)  # the kernel completes connections; nobody ever reads them
        port = listener.getsockname()[1]
    else:
        port = _free_port()
    url = redis_with_timeouts(f"redis://127.0.0.1:{port}/0", 0.2, 0.3)
    settings.REDIS_URL = url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", url)
    entitlement_cache_clear_local()
    api_key_cache_clear_local()
    yield request.param
    entitlement_cache_clear_local()
    api_key_cache_clear_local()
    if listener is not None:
        listener.close()


def test_redis_down_api_billing_page_plan_change_and_extra_properties_all_succeed(
        redis_down, account, client_owner, travel):
    """Reliability (issue 16): every request answers as with Redis up, no half-written purchase
    (no draft invoice, no `unknown` payment), and the e-mails the broker could not take are sent
    by the retry schedule."""
    travel("2026-06-01")
    billing.subscribe(account, "personal", "monthly")
    travel("2026-06-16")
    prop = PropertyFactory(account=account)
    _, raw = api_key_create(name="tracking")
    api = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    started = time.monotonic()

    assert client_owner.get(reverse("billing:overview")).status_code == 200
    upgrade = {"plan": "advanced", "cycle": "monthly"}
    amount = quoted(client_owner.get(reverse("billing:change"), upgrade))
    response = client_owner.post(reverse("billing:change_confirm"), {**upgrade, "quoted_amount": amount})
    assert response.status_code == 302
    assert current(account).plan.code == "advanced"

    amount = quoted(client_owner.get(reverse("billing:extra_properties"), {"quantity": "2"}))
    response = client_owner.post(reverse("billing:extra_properties_confirm"),
                                 {"quantity": "2", "quoted_amount": amount})
    assert response.status_code == 302
    assert current(account).extra_properties == 2
    assert client_owner.get(reverse("billing:overview")).status_code == 200

    answer = client_owner.get(f"/api/v1/entitlements/{prop.tracking_tag}", **api)
    assert answer.status_code == 200 and answer.json()["plan"] == "advanced"
    body = {"events": [{"id": f"e{i}", "tracking_tag": prop.tracking_tag, "type": "session",
                        "timestamp": "2026-06-15T10:00:00Z"} for i in range(3)]}
    posted = client_owner.post("/api/v1/usage/events", body, content_type="application/json", **api)
    assert posted.status_code == 200 and posted.json()["accepted"] == 3
    elapsed = time.monotonic() - started

    # nothing half-written: every invoice is issued and paid, every payment settled
    invoices = Invoice.objects.filter(account=account)
    assert invoices.exists()
    assert not invoices.exclude(status=InvoiceStatus.PAID).exists()
    assert not Payment.objects.filter(invoice__account=account).exclude(status=PaymentStatus.SUCCEEDED).exists()
    assert invoices.get(kind="add_on").total == Decimal(amount) > 0
    assert not PendingEvent.objects.exists()  # the outbox delivered in process, not lost
    # the broker could not take the e-mails: they wait in their log rows, none sent, none failed
    queued = EmailLog.objects.filter(account=account, status=EmailStatus.QUEUED)
    assert queued.exists() and not mail.outbox
    # with "hung", each Redis call waits its 0.3 s timeout, then the process leaves Redis alone
    assert elapsed < 15, elapsed

    # Redis is back (the broker runs tasks again): the retry schedule sends every queued e-mail
    Conf.SYNC = True
    waiting = queued.count()
    counts = email_retry_due(now=max(row.queued_at for row in queued) + STUCK_AFTER)
    assert counts == {"sent": waiting, "failed": 0, "skipped": 0}
    assert not EmailLog.objects.filter(account=account, status=EmailStatus.QUEUED).exists()
    assert len(mail.outbox) == waiting
