"""Shared fixtures. Tests run on SQLite by default and on PostgreSQL with TEST_DATABASE_URL."""

import pytest
from django.db import connection

from plans.services import DEMO_CATALOG, catalog_load_file


@pytest.fixture
def catalog(db):
    """The demo catalog of CAT-2: free, personal, advanced."""
    catalog_load_file(DEMO_CATALOG)
    from plans.models import Plan

    return {p.code: p for p in Plan.objects.all()}


@pytest.fixture
def is_postgres():
    return connection.vendor == "postgresql"


def pytest_collection_modifyitems(config, items):
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL (set TEST_DATABASE_URL)")
    from django.conf import settings

    on_pg = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    for item in items:
        if "postgres_only" in item.keywords and not on_pg:
            item.add_marker(skip_pg)


MONEY_CALLS = ("attach", "charge", "charge_many", "detach", "refund")


@pytest.fixture(autouse=True)
def gateway_never_called_in_a_transaction(monkeypatch):
    """Safety: the gateway is never called inside an open transaction (record the intent, commit,
    call, record the outcome). Every test checks it: a money call made while a transaction other
    than the test harness's own is open on this thread fails the test."""
    from django.db import connections

    from invoices.gateways.sandbox import SandboxGateway
    from invoices.gateways.stripe import StripeGateway

    def guarded(method):
        def call(self, *args, **kwargs):
            for conn in connections.all(initialized_only=True):
                open_blocks = [block for block in conn.atomic_blocks if not getattr(block, "_from_testcase", False)]
                assert not open_blocks, f"{type(self).__name__}.{method.__name__} called inside a transaction"
            return method(self, *args, **kwargs)

        return call

    for gateway in (SandboxGateway, StripeGateway):
        for name in MONEY_CALLS:
            if hasattr(gateway, name):
                monkeypatch.setattr(gateway, name, guarded(getattr(gateway, name)))


@pytest.fixture(autouse=True)
def shared_cache_and_broker_asked_again():
    """Isolation: a test that made the shared cache or the broker fail leaves this process's pause
    (core.cache, core.broker) behind; the next test starts with both asked again."""
    from core.broker import broker_resume
    from core.cache import shared_cache_resume

    yield
    shared_cache_resume()
    broker_resume()
