"""API keys: create (shown once), revoke, authenticate."""

import secrets

from django.db import transaction

from accounts.audit import audit
from core.cache import LayeredCache
from core.clock import clock

from .models import ApiKey, api_key_hash

KEY_PREFIX = "prk_"
# A valid key is looked up once per AUTH_CACHE_SECONDS per process (or per Redis); revoking drops
# the entry, so with a shared cache revocation is immediate and with process memory it takes at
# most this long in the other workers.
AUTH_CACHE_SECONDS = 10
LOCAL_AUTH_SECONDS = 2  # a per-process layer in front of the shared cache, for the hot path
_valid_keys = LayeredCache("apikey:v1:", local_seconds=LOCAL_AUTH_SECONDS, local_max=1000)


@transaction.atomic
def api_key_create(*, name: str, actor=None, now=None) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw key, which is never stored and cannot be shown again."""
    name = name.strip()
    if not name:
        raise ValueError("Give the key a name that says who uses it, like tracking-prod.")
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(
        name=name[:100], prefix=raw[:12], key_hash=api_key_hash(raw), created_by=actor,
        created_at=clock(now),
    )
    audit(account=None, actor=actor, action="api_key.created", obj=key, after={"name": key.name, "prefix": key.prefix},
          now=now)
    return key, raw


@transaction.atomic
def api_key_revoke(key: ApiKey, *, actor=None, now=None) -> bool:
    """Revoke a key at once. Returns False when it was already revoked."""
    now = clock(now)
    updated = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now)
    if updated:
        key.revoked_at = now
        audit(account=None, actor=actor, action="api_key.revoked", obj=key, before={"revoked_at": None},
              after={"revoked_at": now.isoformat()}, now=now)
        transaction.on_commit(lambda: _forget(key.key_hash))
    return bool(updated)


def _forget(key_hash: str) -> None:
    _valid_keys.forget(key_hash)


def api_key_cached(raw: str) -> int | None:
    """The id of the active key `raw` when a cache remembers it as valid, else None (unknown,
    revoked, or not looked up lately). Never reads the database: the WSGI fast path
    (api/fastpath.py) authenticates with this alone and leaves a miss to Django."""
    if not raw or len(raw) > 200:
        return None
    return _valid_keys.get(api_key_hash(raw))


def api_key_authenticate(raw: str) -> int | None:
    """The id of the active key `raw`, or None. Only valid keys are cached."""
    key_id = api_key_cached(raw)
    if key_id is not None or not raw or len(raw) > 200:
        return key_id
    digest = api_key_hash(raw)
    key_id = ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).values_list("pk", flat=True).first()
    if key_id is None:
        return None
    _valid_keys.set(digest, key_id, AUTH_CACHE_SECONDS)
    return key_id


def api_key_cache_clear_local() -> None:
    _valid_keys.clear_local()
