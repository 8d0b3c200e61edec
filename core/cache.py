"""A shared cache (Redis in production) with a short per-process layer in front of it.

The entitlements hot path reads a cached answer and a cached API key on every request; the
process layer saves the network round trip. Invalidation drops both layers in this process and
the shared entry; other processes see the change within `local_seconds`.

The cache is never the source of truth: when the shared cache cannot be reached, a read is a
miss (the caller computes the answer from the database), and a write or an invalidation is
logged and given up. An invalidation that could not reach Redis is therefore bounded by the
entry's own lifetime (the `ttl` it was written with), never longer.
"""

import logging
import time

from django.core.cache import cache

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60.0  # one warning a minute per process while the shared cache is down


class LayeredCache:
    def __init__(self, prefix: str, *, local_seconds: float, local_max: int):
        self.prefix = prefix
        self.local_seconds = local_seconds
        self.local_max = local_max
        self._local: dict[str, tuple[float, object]] = {}

    def shared_key(self, key: str) -> str:
        """The entry's name in the shared cache."""
        return f"{self.prefix}{key}"

    def get(self, key: str):
        """The value from this process's layer, else from the shared cache; None when neither has
        it, or when the shared cache cannot be reached."""
        clock = time.time()
        hit = self._local.get(key)
        if hit is not None and hit[0] > clock:
            return hit[1]
        try:
            value = cache.get(self.shared_key(key))
        except Exception as exc:  # Redis down: a miss, answered from the database
            shared_cache_failed("get", exc)
            return None
        if value is not None:
            self._put_local(key, value, clock)
        return value

    def set(self, key: str, value, ttl: int) -> None:
        self._put_local(key, value, time.time())
        try:
            cache.set(self.shared_key(key), value, ttl)
        except Exception as exc:
            shared_cache_failed("set", exc)

    def forget(self, *keys: str) -> None:
        for key in keys:
            self._local.pop(key, None)
        if not keys:
            return
        try:
            cache.delete_many([self.shared_key(key) for key in keys])
        except Exception as exc:  # bounded by the entries' lifetime (see the module's docstring)
            shared_cache_failed("delete", exc)

    def clear_local(self) -> None:
        self._local.clear()

    def _put_local(self, key: str, value, clock: float) -> None:
        if len(self._local) >= self.local_max:
            self._local.clear()
        self._local[key] = (clock + self.local_seconds, value)


_last_warning = [0.0]


def shared_cache_failed(operation: str, exc: Exception) -> None:
    """Log that the shared cache failed, at most once a minute per process (not once a request)."""
    clock = time.monotonic()
    if clock - _last_warning[0] >= WARN_EVERY_SECONDS:
        _last_warning[0] = clock
        log.warning("Shared cache unreachable (%s: %s: %s); answering from the database",
                    operation, type(exc).__name__, exc)
