"""A shared cache (Redis in production) with a short per-process layer in front of it.

The entitlements hot path reads a cached answer and a cached API key on every request; the
process layer saves the network round trip. Invalidation drops both layers in this process and
the shared entry; other processes see the change within `local_seconds`.
"""

import time

from django.core.cache import cache


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
        """The value from this process's layer, else from the shared cache; None when neither has it."""
        clock = time.time()
        hit = self._local.get(key)
        if hit is not None and hit[0] > clock:
            return hit[1]
        value = cache.get(self.shared_key(key))
        if value is not None:
            self._put_local(key, value, clock)
        return value

    def set(self, key: str, value, ttl: int) -> None:
        cache.set(self.shared_key(key), value, ttl)
        self._put_local(key, value, time.time())

    def forget(self, *keys: str) -> None:
        for key in keys:
            self._local.pop(key, None)
        cache.delete_many([self.shared_key(key) for key in keys])

    def clear_local(self) -> None:
        self._local.clear()

    def _put_local(self, key: str, value, clock: float) -> None:
        if len(self._local) >= self.local_max:
            self._local.clear()
        self._local[key] = (clock + self.local_seconds, value)
