"""Fixtures for the usage API: a key, an authorised client, accounts on each demo plan."""

import itertools
from datetime import UTC, datetime

import pytest
from django.core.cache import cache

from accounts.models import Property
from api.services import api_key_cache_clear_local, api_key_create
from subscriptions.models import Status
from tests.factories import AccountFactory, PropertyFactory, subscription_replace
from usage.entitlements import entitlement_cache_clear_local

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)


def clear_caches():
    cache.clear()
    entitlement_cache_clear_local()
    api_key_cache_clear_local()


@pytest.fixture(autouse=True)
def _empty_cache():
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def api_key(db):
    _, raw = api_key_create(name="tracking-test")
    return raw


@pytest.fixture
def auth(api_key):
    return {"Authorization": f"Bearer {api_key}"}


def on_plan(plan, **account_fields) -> Property:
    """A property whose account's current subscription is on `plan`."""
    account = AccountFactory(**account_fields)
    if plan.code != "free":
        subscription_replace(account, plan, status=Status.ACTIVE)
    return PropertyFactory(account=account)


@pytest.fixture
def free_prop(catalog):
    return on_plan(catalog["free"])


@pytest.fixture
def personal_prop(catalog):
    return on_plan(catalog["personal"])


def event(prop_or_tag, at: datetime = NOW, event_id: str | None = None, **overrides) -> dict:
    tag = prop_or_tag if isinstance(prop_or_tag, str) else prop_or_tag.tracking_tag
    body = {
        "id": event_id or f"evt-{next(_ids)}",
        "tracking_tag": tag,
        "type": "session",
        "timestamp": at.isoformat().replace("+00:00", "Z"),
    }
    body.update(overrides)
    return body


def events(prop, n: int, at: datetime = NOW) -> list[dict]:
    return [event(prop, at) for _ in range(n)]
