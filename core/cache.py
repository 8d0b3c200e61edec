"""A shared cache (Redis in production) with a short per-process layer in front of it.

The entitlements hot path reads a cached answer and a cached API key on every request; the
process layer saves the network round trip. Invalidation drops both layers in this process and
the shared entry; other processes see the change within `local_seconds`.

With `stale_seconds` (stale-while-revalidate), an entry outlives its `ttl` by that long in the
shared cache. Once stale, the first caller that asks with `refresh=True` claims its recompute (one
`add` of a claim key: one recompute per key across processes) and gets a miss; every other caller
gets the stale value meanwhile, instead of all of them recomputing at once when entries cached
together expire together. A caller that never recomputes (`refresh=False`: the WSGI fast path)
gets the stale value only while someone else's recompute is claimed, else a miss. So an answer
older than its `ttl` is served only while its recompute is under way (at most REFRESH_SECONDS).

The cache is never the source of truth: when the shared cache cannot be reached, a read is a
miss (the caller computes the answer from the database), and a write or an invalidation is
logged and given up. An invalidation that could not reach Redis is therefore bounded by the
entry's own lifetime (the `ttl` it was written with), never longer. After a failure the process
leaves the shared cache alone for PAUSE_SECONDS (misses and given-up writes at once), so that a
Redis that is down or hung costs one request its timeout (REDIS_TIMEOUT), not every request.
"""

import logging
import time

from django.core.cache import cache

from .pause import Pause

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60.0  # one warning a minute per process while the shared cache is down
REFRESH_SECONDS = 10  # how long one caller's claim to recompute a stale entry holds off the others
PAUSE_SECONDS = 5.0  # after a failure, this process does not ask the shared cache for this long


class LayeredCache:
    def __init__(self, prefix: str, *, local_seconds: float, local_max: int, stale_seconds: int = 0):
        self.prefix = prefix
        self.local_seconds = local_seconds
        self.local_max = local_max
        self.stale_seconds = stale_seconds
        self._local: dict[str, tuple[float, float, object]] = {}  # key -> (local until, fresh until, value)

    def shared_key(self, key: str) -> str:
        """The entry's name in the shared cache."""
        return f"{self.prefix}{key}"

    def get(self, key: str, *, refresh: bool = False, background=None):
        """The value from this process's layer, else from the shared cache; None when neither has
        it, or when the shared cache cannot be reached. A stale value (see the module's docstring):
        None for the one caller that claims its recompute (`refresh=True`), the value for the
        others while that recompute is claimed. With `background` (a callable taking the key), the
        claiming caller hands the recompute to it and gets the stale value too."""
        clock = time.time()
        hit = self._local.get(key)
        if hit is not None and hit[0] > clock and hit[1] > clock:
            return hit[2]
        if shared_cache_paused():
            return None
        try:
            stored = cache.get(self.shared_key(key))
        except Exception as exc:  # Redis down: a miss, answered from the database
            shared_cache_failed("get", exc)
            return None
        if stored is None:
            return None
        fresh_until, value = stored if self.stale_seconds else (clock + self.local_seconds, stored)
        if fresh_until > clock:
            self._put_local(key, value, clock, fresh_until)
            return value
        if not self._recompute_claimed(key, refresh or background is not None):
            return value
        if background is None:
            return None
        background(key)
        return value

    def _recompute_claimed(self, key: str, claim: bool) -> bool:
        """Stale: True when this caller is to recompute (it claimed it, or nobody has and it may
        not claim), False when another caller's recompute is under way."""
        claim_key = self.shared_key(key) + ":refresh"
        if shared_cache_paused():
            return True
        try:
            if claim:
                return bool(cache.add(claim_key, 1, REFRESH_SECONDS))
            return cache.get(claim_key) is None
        except Exception as exc:  # a cache failure is a miss
            shared_cache_failed("refresh", exc)
            return True

    def set(self, key: str, value, ttl: int) -> None:
        clock = time.time()
        self._put_local(key, value, clock, clock + ttl)
        if shared_cache_paused():
            return
        try:
            if self.stale_seconds:
                cache.set(self.shared_key(key), (clock + ttl, value), ttl + self.stale_seconds)
                cache.delete(self.shared_key(key) + ":refresh")  # recomputed: the next stale entry may be claimed
            else:
                cache.set(self.shared_key(key), value, ttl)
        except Exception as exc:
            shared_cache_failed("set", exc)

    def forget(self, *keys: str) -> None:
        for key in keys:
            self._local.pop(key, None)
        if not keys or shared_cache_paused():  # bounded by the entries' lifetime
            return
        try:
            cache.delete_many([self.shared_key(key) for key in keys])
        except Exception as exc:  # bounded by the entries' lifetime (see the module's docstring)
            shared_cache_failed("delete", exc)

    def clear_local(self) -> None:
        self._local.clear()

    def _put_local(self, key: str, value, clock: float, fresh_until: float) -> None:
        if len(self._local) >= self.local_max:
            self._local.clear()
        self._local[key] = (clock + self.local_seconds, fresh_until, value)


_last_warning = [0.0]
_pause = Pause(PAUSE_SECONDS)


def shared_cache_paused() -> bool:
    """True for PAUSE_SECONDS after the shared cache failed in this process."""
    return _pause.active()


def shared_cache_resume() -> None:
    """Ask the shared cache again from the next call (tests)."""
    _pause.end()


def shared_cache_failed(operation: str, exc: Exception) -> None:
    """Leave the shared cache alone for PAUSE_SECONDS, and log that it failed, at most once a
    minute per process (not once a request)."""
    _pause.start()
    clock = time.monotonic()
    if clock - _last_warning[0] >= WARN_EVERY_SECONDS:
        _last_warning[0] = clock
        log.warning("Shared cache unreachable (%s: %s: %s); answering from the database",
                    operation, type(exc).__name__, exc)
