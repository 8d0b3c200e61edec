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
