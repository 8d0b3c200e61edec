"""An account row is locked FOR NO KEY UPDATE everywhere (`accounts.locks`, issue 24): a customer's
request that holds its account's lock never makes the billing run wait to insert rows that refer
to the account (PostgreSQL's foreign-key check takes FOR KEY SHARE, which a plain FOR UPDATE
blocks). On PostgreSQL, with two real connections."""

import threading

import pytest
from django.db import connections, transaction

from accounts.models import AuditEvent
from accounts.services import property_add
from notifications.models import Category
from notifications.services import preference_set
from tests.factories import AccountFactory

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def insert_referring_row(account_id: int) -> str:
    """From another connection, insert a row that refers to the account, as the billing run's
    set-wise inserts do; waits at most 2 s for a lock. Returns "inserted" or the error."""
    outcome = {}

    def run():
        try:
            with transaction.atomic(), connections["default"].cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '2s'")
                AuditEvent.objects.create(account_id=account_id, action="test.insert", object_type="Account",
                                          object_id=str(account_id), actor_label="system")
            outcome["result"] = "inserted"
        except Exception as exc:  # the lock timeout, reported to the test
            outcome["result"] = f"{type(exc).__name__}: {exc}"
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    return outcome.get("result", "still waiting")


@pytest.mark.parametrize("request_holding_the_lock", ["property_add", "preference_set"])
def test_a_customers_request_holding_the_account_lock_never_blocks_the_runs_inserts(catalog,
                                                                                     request_holding_the_lock):
    """Safety (issue 24): adding a property and switching an e-mail category lock the account FOR NO
    KEY UPDATE, so a concurrent insert that refers to the account goes through at once."""
    account = AccountFactory()
    with transaction.atomic():
        if request_holding_the_lock == "property_add":
            property_add(account=account, name="Site", domain="site.example")
        else:
            preference_set(account=account, category=Category.PRODUCT_NEWS, enabled=False)
        assert insert_referring_row(account.pk) == "inserted"
