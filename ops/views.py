"""/metrics (OPS-1): django-prometheus' request metrics and the billing gauges, in Prometheus'
text format, for a staff session or `Authorization: Bearer <METRICS_TOKEN>`."""

from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily

from .gauges import billing_gauges


class BillingCollector:
    """Collected at scrape time only (a registry of its own, read by this view alone)."""

    def collect(self):
        families: dict[str, GaugeMetricFamily] = {}
        for gauge in billing_gauges(timezone.now()):
            family = families.get(gauge.name)
            if family is None:
                family = families[gauge.name] = GaugeMetricFamily(
                    gauge.name, gauge.help, labels=[name for name, _value in gauge.labels])
            family.add_metric([value for _name, value in gauge.labels], gauge.value)
        yield from families.values()


BILLING = CollectorRegistry(auto_describe=False)
BILLING.register(BillingCollector())


def metrics_allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff)


@never_cache
def metrics(request):
    if not metrics_allowed(request):
        response = HttpResponse("Send `Authorization: Bearer <METRICS_TOKEN>` or log in as staff.\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(generate_latest(request_registry()) + generate_latest(BILLING),
                        content_type=CONTENT_TYPE_LATEST)


def request_registry():
    """The request metrics: this process's, or with PROMETHEUS_MULTIPROC_DIR set (several gunicorn
    workers) every worker's, added up by prometheus-client's multiprocess collector."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry
