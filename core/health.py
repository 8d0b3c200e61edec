"""Health endpoints (OPS-1) for a load balancer or an orchestrator.

`/healthz` answers 200 while the process can answer at all: it touches nothing (no database, no
session), so a restart is asked for only when the process itself is stuck.

`/readyz` answers 200 only when the database answers `SELECT 1`; otherwise 503, naming the
dependency that fails. The shared cache and the task broker (Redis) are reported but never fail
readiness: Prorata works without Redis (the cache falls back to the database, a task that cannot
be queued is picked up by its schedule; docs/reliability.md). The answers name a dependency's
state and the error's class only, never a host, a URL or a message that could carry a secret.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

log = logging.getLogger(__name__)

OK = "ok"


def failure(exc: Exception) -> str:
    return f"down ({type(exc).__name__})"


def database_state() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        log.warning("readyz: the database does not answer (%s)", type(exc).__name__)
        return failure(exc)
    return OK


def cache_state() -> str:
    if not settings.REDIS_URL:
        return "not used (process memory)"
    try:
        cache.set("readyz", "1", 5)
        cache.get("readyz")
    except Exception as exc:
        return failure(exc)
    return OK


def broker_state() -> str:
    url = settings.Q_CLUSTER.get("redis")
    if not url:
        return "not used (tasks queue in the database)"
    try:
        import redis

        client = redis.Redis.from_url(url)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return failure(exc)
    return OK


@never_cache
def healthz(request):
    return JsonResponse({"status": "alive"})


@never_cache
def readyz(request):
    checks = {"database": database_state(), "cache": cache_state(), "broker": broker_state()}
    ready = checks["database"] == OK
    failing = [name for name, state in checks.items() if state.startswith("down")]
    body = {"status": "ready" if ready else "not ready", "checks": checks,
            "required": ["database"], "failing": failing}
    return JsonResponse(body, status=200 if ready else 503)
