"""A request rate shared by every worker: a token bucket in Redis (REDIS_URL), or in this process.

The payment gateway answers "too many requests" (Stripe: 429) past a rate per account, and every
billing-run worker, web process and webhook handler talks to the same account. So each request
takes a token first from one bucket that all of them share. The bucket is GCRA (the generic cell
rate algorithm, a token bucket kept as one timestamp): it holds `burst` tokens and gains `rate` a
second; a caller that finds it empty reserves the next free slot and sleeps until then, so callers
queue in arrival order and together never go over `rate` a second on average, nor over `burst` at
once. In Redis the bucket is one key updated by one Lua script, on Redis's clock (atomic, no clock
skew between machines); its wait is bounded by the callers in flight (a billing worker holds at
most STRIPE_CONCURRENCY of them), not by the length of a run.

Redis is never the source of truth and never blocks a request for long (as core/cache.py and
core/broker.py): when it cannot be reached, the call takes a token from this process's own bucket
at the process's share of the rate (the rate divided by the task workers, Q_CLUSTER's `workers`)
and the process leaves Redis alone for PAUSE_SECONDS, so a Redis that is down costs one call its
timeout (REDIS_TIMEOUT). Without REDIS_URL there is no fan-out (subscriptions.scheduler runs the
billing run in one process), so that process's bucket has the whole rate.
"""

import logging
import threading
import time

from django.conf import settings

from .pause import Pause

log = logging.getLogger(__name__)

PAUSE_SECONDS = 5.0
WARN_EVERY_SECONDS = 60.0
KEY_PREFIX = "prorata:ratelimit:"

# KEYS[1]: the bucket (its theoretical arrival time, µs on Redis's clock); ARGV: µs per token, the
# burst tolerance in µs. Reserves the caller's slot and returns how many µs to wait for it.
RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
redis.call('SET', KEYS[1], string.format('%.0f', tat + interval), 'PX', math.ceil((tat + interval - now) / 1000) + 1000)
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
return math.floor(wait)
"""


class LocalBucket:
    """The same bucket in this process's memory (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tat = 0.0

    def reserve(self, rate: float, burst: int) -> float:
        interval = 1.0 / rate
        with self._lock:
            now = time.monotonic()
            tat = max(self._tat, now)
            self._tat = tat + interval
        return max(0.0, tat - (burst - 1) * interval - now)


_clients: dict[str, object] = {}
_clients_lock = threading.Lock()
_pause = Pause(PAUSE_SECONDS)
_last_warning = [0.0]


def _script(url: str):
    """One Redis client (its own connection pool, thread-safe) and the registered script per URL."""
    with _clients_lock:
        if url not in _clients:
            import redis

            _clients[url] = redis.Redis.from_url(url).register_script(RESERVE)
        return _clients[url]


class RateLimit:
    """One shared bucket, named `name` (two objects with the same name and Redis share it)."""

    def __init__(self, name: str, *, redis_url: str | None = None, prefix: str = KEY_PREFIX):
        self.key = prefix + name
        self._redis_url = redis_url  # None: settings.REDIS_URL, read at each call
        self._local = LocalBucket()

    @property
    def redis_url(self) -> str:
        return settings.REDIS_URL if self._redis_url is None else self._redis_url

    def acquire(self, rate: float, burst: int | None = None) -> float:
        """Take one token, sleeping until it is this caller's turn; returns the seconds waited.
        `burst` is how many may go at once: by default half a second's worth, so that a limiter
        like Stripe's (a bucket of one second's worth) keeps the other half for the jitter between
        the moment a request leaves and the moment it is counted there."""
        wait = self.reserve(rate, burst)
        if wait > 0:
            time.sleep(wait)
        return wait

    def reserve(self, rate: float, burst: int | None = None) -> float:
        """Reserve the next token; returns the seconds until it may be used. A rate of 0 or less
        is no limit."""
        if rate <= 0:
            return 0.0
        burst = max(1, int(rate / 2) if burst is None else burst)
        url = self.redis_url
        if url and not _pause.active():
            interval = 1_000_000 / rate
            try:
                return _script(url)(keys=[self.key], args=[interval, (burst - 1) * interval]) / 1_000_000
            except Exception as exc:  # redis.RedisError, OSError: this process's share, for a while
                _failed(exc)
        if url:  # Redis is configured but failing: other processes take tokens too
            workers = max(1, int(settings.Q_CLUSTER.get("workers", 1)))
            rate, burst = rate / workers, max(1, burst // workers)
        return self._local.reserve(rate, burst)

    def forget(self) -> None:
        """Drop the shared bucket (tests and benches that used a key of their own)."""
        import redis

        self._local = LocalBucket()
        if self.redis_url:
            redis.Redis.from_url(self.redis_url).delete(self.key)


def _failed(exc: Exception) -> None:
    _pause.start()
    clock = time.monotonic()
    if clock - _last_warning[0] >= WARN_EVERY_SECONDS:
        _last_warning[0] = clock
        log.warning("Rate limit's Redis unreachable (%s: %s); each process keeps its share for %.0f s",
                    type(exc).__name__, exc, PAUSE_SECONDS)


def ratelimit_resume() -> None:
    """Ask Redis again from the next call (tests)."""
    _pause.end()
