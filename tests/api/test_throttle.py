"""Requests per API key (issue 16, api/throttle.py): past API_KEY_RATE a key gets 429 with
Retry-After, on every operation, for that key only, until its window ends; nothing is recorded
from a refused batch; a cache that cannot be reached lets requests through (fail open)."""

import json
import socket
import time
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from accounts.models import UsageEvent
from api import throttle
from api.services import api_key_create

from .conftest import event

# 30 s into a minute: a "N/m" window has 30 s left.
AT = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def rate(settings):
    def set_rate(text):
        settings.API_KEY_RATE = text
    set_rate("3/m")
    return set_rate


def post_batch(client, auth, prop, n=1):
    return client.post("/api/v1/usage/events", data=json.dumps({"events": [event(prop) for _ in range(n)]}),
                       content_type="application/json", headers=auth)


def test_throttle_a_key_over_its_rate_gets_429_with_retry_after_and_nothing_is_recorded(client, auth, personal_prop,
                                                                                       rate):
    """Safety: a key over its rate gets 429 with Retry-After, and the refused batch records nothing (USE-1)."""
    with time_machine.travel(AT, tick=False):
        answers = [post_batch(client, auth, personal_prop).status_code for _ in range(3)]
        refused = post_batch(client, auth, personal_prop, n=5)

    assert answers == [200, 200, 200]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    assert refused.json() == {"detail": "Too many requests with this API key: the limit is 3 requests per 60 s. "
                                        "Send again in 30 s (Retry-After); nothing was recorded from this request."}
    assert UsageEvent.objects.count() == 3  # the refused batch of 5 wrote nothing


def test_throttle_is_per_key(client, auth, personal_prop, rate):
    """Safety: one key's traffic never throttles another key."""
    _, other_key = api_key_create(name="tracking-eu")
    with time_machine.travel(AT, tick=False):
        for _ in range(4):
            client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth)
        assert client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth).status_code == 429

        other = client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}",
                           headers={"Authorization": f"Bearer {other_key}"})

    assert other.status_code == 200


def test_throttle_counts_every_operation_and_lifts_when_the_window_ends(client, auth, personal_prop, rate):
    """Safety: every API operation counts against the key, and the throttle lifts when its window ends."""
    with time_machine.travel(AT, tick=False) as clock:
        post_batch(client, auth, personal_prop)
        client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth)
        client.get("/api/v1/entitlements/PR-unknown", headers=auth)  # a 404 counts too
        refused = client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth)
        assert (refused.status_code, refused["Retry-After"]) == (429, "30")
        clock.shift(timedelta(seconds=29))
        assert client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}",
                          headers=auth)["Retry-After"] == "1"
        clock.shift(timedelta(seconds=1))

        again = client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth)

    assert again.status_code == 200


def test_throttle_does_not_count_requests_without_a_valid_key(client, auth, personal_prop, rate):
    """Safety: requests with a wrong key are refused (401) and do not use up a real key's allowance."""
    with time_machine.travel(AT, tick=False):
        for _ in range(10):
            assert client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}",
                              headers={"Authorization": "Bearer prk_wrong"}).status_code == 401
        assert client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth).status_code == 200


def test_throttle_off_when_the_rate_is_empty(client, auth, personal_prop, rate):
    """Configuration: API_KEY_RATE=off turns the throttle off."""
    rate("off")
    with time_machine.travel(AT, tick=False):
        assert {client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth).status_code
                for _ in range(10)} == {200}


@pytest.mark.parametrize("text", ["lots", "0/s", "10/fortnight"])
def test_throttle_a_malformed_rate_is_refused_with_its_name(text):
    """Configuration: a malformed API_KEY_RATE is refused (ValueError), not read as some other rate."""
    with pytest.raises(ValueError):
        throttle.rate_parse(text)


def test_throttle_the_default_rate_is_far_above_the_benchmarked_load(settings):
    """Speed: the default rate stays far above the benchmarked entitlement load."""
    rate = throttle.rate_parse(settings.API_KEY_RATE)
    assert rate.requests / rate.seconds >= 10 * 2000  # bench/entitlements.py: ~2,000 requests/s, one key


def test_throttle_schema_documents_the_429(client, db):
    """API: the OpenAPI schema documents the 429 the throttle answers."""
    paths = client.get("/api/v1/openapi.json").json()["paths"]
    assert "429" in paths["/api/v1/usage/events"]["post"]["responses"]
    assert "429" in paths["/api/v1/entitlements/{tracking_tag}"]["get"]["responses"]


# -- the cache behind it ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_throttle_fails_open_when_redis_cannot_be_reached(client, auth, personal_prop, rate, monkeypatch):
    """Nothing listens on the port: every request is answered as without a throttle, none is a 500,
    and the process stops asking Redis after the first failure (no timeout per request)."""
    dead = throttle.RedisCounter(f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setattr(throttle, "counter", lambda: dead)
    started = time.monotonic()

    answers = [client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth).status_code
               for _ in range(20)] + [post_batch(client, auth, personal_prop).status_code for _ in range(5)]

    assert answers == [200] * 25
    assert time.monotonic() - started < 5
    assert dead.paused_until > time.monotonic()
    assert UsageEvent.objects.count() == 5


def test_throttle_fails_open_on_any_cache_error(client, auth, personal_prop, rate, monkeypatch):
    """Reliability: any cache error lets the request through (the cache is never the source of truth)."""
    class Broken:
        def incr(self, key, ttl):
            raise OSError("cache backend exploded")

    monkeypatch.setattr(throttle, "counter", lambda: Broken())
    assert {client.get(f"/api/v1/entitlements/{personal_prop.tracking_tag}", headers=auth).status_code
            for _ in range(5)} == {200}


def redis_or_skip() -> throttle.RedisCounter:
    counter = throttle.RedisCounter("redis://127.0.0.1:6379/15")
    try:
        counter.client.ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    return counter


def test_throttle_redis_counter_counts_once_per_request_and_expires_the_window(db):
    """Safety: the Redis counter counts each request once and expires with its window."""
    counter = redis_or_skip()
    key = f"{throttle.KEY_PREFIX}test:{time.time_ns()}"
    try:
        assert [counter.incr(key, ttl=5) for _ in range(4)] == [1, 2, 3, 4]
        assert 0 < counter.client.ttl(key) <= 5  # set once, on the window's first request
    finally:
        counter.client.delete(key)


def test_throttle_uses_the_redis_counter_when_the_cache_is_redis(settings):
    """Safety: with Redis as the cache, workers share one counter per key."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:6379/15"}}
    assert isinstance(throttle.counter(), throttle.RedisCounter)
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert isinstance(throttle.counter(), throttle.CacheCounter)


def test_throttle_redis_counter_sends_a_process_s_counts_in_batches_and_judges_in_between(db):
    """At the default rate a process sends its counts every 1 % of the rate (or 0.1 s), not per request."""
    counter = redis_or_skip()
    key = f"{throttle.KEY_PREFIX}test:{time.time_ns()}"
    try:
        seen = [counter.incr(key, ttl=5, batch=10) for _ in range(25)]

        assert seen == list(range(1, 26))  # the estimate counts every request
        assert int(counter.client.get(key)) == 21  # sent: the first, then 10 and 10; 4 still local
    finally:
        counter.client.delete(key)
