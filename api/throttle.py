"""Requests per API key (issue 16): past `API_KEY_RATE` a key is answered 429 with `Retry-After`.

One function decides, `api_key_throttle_wait`, called by django-ninja's throttle hook for every
operation of /api/v1/ (`ApiKeyThrottle`) and by the WSGI fast path before it answers a cached
entitlement itself (api/fastpath.py): a request is counted once, on whichever path answers it,
and both paths answer the same 429 (`throttled_body`, the same headers).

The count is a fixed window per key (`throttle:apikey:<key id>:<window number>`) in the shared
cache: with Redis a pipelined INCRBY + EXPIRE that each process sends every 1 % of the rate or
0.1 s (`RedisCounter`; Django's `cache.incr` would be an EXISTS and an INCR for every request of
the hot path), with the process-memory cache `cache.add`/`cache.incr` per request. Not
django-ninja's `SimpleRateThrottle`: it keeps the timestamp of every request of the window in one
cache entry and writes the whole list back on each request (20,000 floats a second here), and two
workers writing the same list lose each other's counts.

The throttle fails open: when the cache cannot be reached the request goes on unthrottled (a
warning in the log), and the process stops asking Redis for `REDIS_RETRY_SECONDS`, so a Redis
outage costs one connection timeout per process every few seconds, not one per request.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings
from django.core.cache import cache
from ninja.throttling import BaseThrottle, SimpleRateThrottle

logger = logging.getLogger(__name__)

KEY_PREFIX = "throttle:apikey:"
REDIS_TIMEOUT_SECONDS = 0.25  # a throttle that waits longer than this for Redis does more harm than good
REDIS_RETRY_SECONDS = 5.0  # after a Redis error, count nothing in this process for this long
FLUSH_SECONDS = 0.1  # a process sends its unsent counts at least this often (RedisCounter)
MAX_LOCAL_WINDOWS = 10_000


@dataclass(frozen=True)
class Rate:
    requests: int
    seconds: int

    def __str__(self):
        return f"{self.requests:,} requests per {self.seconds} s" if self.seconds != 1 else \
            f"{self.requests:,} requests per second"


@lru_cache(maxsize=8)
def rate_parse(text: str) -> Rate | None:
    """`API_KEY_RATE` in django-ninja's format ("20000/s", "600/10s", "100000/m"); empty or "off"
    turns the throttle off. A malformed value raises ValueError at start (AppConfig.ready)."""
    text = (text or "").strip()
    if text.lower() in ("", "off", "none"):
        return None
    parsed = SimpleRateThrottle(rate=text)  # raises ValueError on a malformed rate
    requests, seconds = parsed.num_requests, parsed.duration
    if requests <= 0 or seconds <= 0:
        raise ValueError(f"API_KEY_RATE={text!r}: give a positive number of requests per period, like 20000/s.")
    return Rate(requests, seconds)


def api_key_rate() -> Rate | None:
    return rate_parse(settings.API_KEY_RATE)


# -- the counters -------------------------------------------------------------------------


class CacheCounter:
    """Django's cache (process memory, or any backend without a faster path)."""

    def incr(self, key: str, ttl: int, batch: int = 1) -> int:
        if cache.add(key, 1, ttl):
            return 1
        try:
            return cache.incr(key)
        except ValueError:  # expired between add and incr: this request opens the window again
            cache.add(key, 1, ttl)
            return 1


class RedisCounter:
    """Counts on the cache's Redis with one pipelined INCRBY + EXPIRE per send, short timeouts and a
    pause after an error (fail open).

    Sending every request cost the entitlement fast path 0.2 ms of CPU per request, about half of
    what it spent before (bench/entitlements.py, docs/api.md). So each process adds a key's
    requests up locally and sends them every `batch` requests (1 % of the rate) or FLUSH_SECONDS,
    whichever comes first, and judges in between on the last total Redis gave plus its own unsent
    requests. A window's first request is always sent; with a rate under 100 per window every
    request is (exact). Across N processes a key can go over its rate by at most N % plus what the
    other processes received in the last FLUSH_SECONDS."""

    def __init__(self, url: str):
        self.client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                           socket_timeout=REDIS_TIMEOUT_SECONDS)
        self.paused_until = 0.0
        self.lock = threading.Lock()
        self.windows: dict[str, list] = {}  # key -> [unsent requests, last total from Redis, monotonic of last send]

    def incr(self, key: str, ttl: int, batch: int = 1) -> int | None:
        now = time.monotonic()
        if now < self.paused_until:
            return None
        with self.lock:
            entry = self.windows.get(key)
            if entry is None:
                if len(self.windows) >= MAX_LOCAL_WINDOWS:  # windows of past periods: forget them
                    self.windows.clear()
                entry = self.windows[key] = [0, 0, 0.0]
            entry[0] += 1
            if entry[0] < batch and now - entry[2] < FLUSH_SECONDS:
                return entry[1] + entry[0]
            unsent, entry[0], entry[2] = entry[0], 0, now
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.incrby(key, unsent)
            pipe.expire(key, ttl, nx=True)
            total, _ = pipe.execute()
        except redis.RedisError as exc:
            self.paused_until = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning("API key throttle off for %s s: Redis did not answer (%s)", REDIS_RETRY_SECONDS, exc)
            return None
        with self.lock:
            entry[1] = max(entry[1], int(total))
        return int(total)


_counters: dict[tuple, CacheCounter | RedisCounter] = {}
_counters_lock = threading.Lock()


def counter():
    """The counter for the default cache in use (Redis when CACHES points at Redis)."""
    config = settings.CACHES["default"]
    location = config.get("LOCATION") or ""
    key = (config["BACKEND"], str(location))
    found = _counters.get(key)
    if found is None:
        with _counters_lock:
            if config["BACKEND"].endswith("RedisCache") and location:
                found = RedisCounter(location if isinstance(location, str) else location[0])
            else:
                found = CacheCounter()
            _counters[key] = found
    return found


# -- the decision -------------------------------------------------------------------------


def api_key_throttle_wait(key_id: int, *, now: float | None = None) -> int | None:
    """Count one request of key `key_id`. None when it may go on; else the seconds until the
    key's window ends (the Retry-After). Never raises: a cache error lets the request go on."""
    rate = api_key_rate()
    if rate is None or key_id is None:
        return None
    now = time.time() if now is None else now
    window = int(now // rate.seconds)
    try:
        count = counter().incr(f"{KEY_PREFIX}{key_id}:{window}", rate.seconds + 1, batch=max(1, rate.requests // 100))
    except Exception as exc:  # any cache backend error: fail open
        logger.warning("API key throttle skipped: the cache did not answer (%s)", exc)
        return None
    if count is None or count <= rate.requests:
        return None
    return max(1, math.ceil((window + 1) * rate.seconds - now))


def throttled_body(wait: int) -> bytes:
    """The 429 answer's body, the same on both paths."""
    rate = api_key_rate()
    return json.dumps({"detail": f"Too many requests with this API key: the limit is {rate}. Send again in "
                                 f"{wait} s (Retry-After); nothing was recorded from this request."}).encode()


class ApiKeyThrottle(BaseThrottle):
    """django-ninja's throttle hook (NinjaAPI(throttle=...)), after authentication: `request.auth`
    is the key's id. The wait is kept per thread between allow_request() and wait()."""

    _local = threading.local()

    def allow_request(self, request) -> bool:
        self._local.wait = api_key_throttle_wait(getattr(request, "auth", None))
        return self._local.wait is None

    def wait(self) -> float | None:
        return getattr(self._local, "wait", None)
