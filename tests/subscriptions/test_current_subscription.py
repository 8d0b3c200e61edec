"""The current subscription is a database fact (issue 24): `Subscription.is_current`, one per
account (the partial unique constraint `one_current_per_account`), kept by the lifecycle when a
subscription replaces another, and set on each account's newest row by the migration that added it."""

import importlib

import pytest
from django.apps import apps as django_apps

from subscriptions import billing
from subscriptions.errors import InvalidChange
from subscriptions.locks import account_subscription_lock, subscription_lock_current
from subscriptions.models import Subscription
from tests.factories import AccountFactory

from .conftest import at


def test_ren4_a_paid_subscription_replaces_free_as_the_one_current_subscription(account):
    """REN-4: subscribing ends Free and starts the paid subscription: the new row is the account's
    only current one, the Free row stays as history, and a page still showing Free is refused."""
    free = Subscription.objects.current_of(account)
    paid = billing.subscribe(account, "personal", now=at("2026-03-01T10:00"))
    free.refresh_from_db()
    assert (paid.plan.code, paid.is_current, free.is_current) == ("personal", True, False)
    assert list(Subscription.objects.current().filter(account=account)) == [paid]
    assert account.subscription == paid
    with pytest.raises(InvalidChange, match="has changed in the meantime"):
        subscription_lock_current(free)
    assert account_subscription_lock(account) == paid


def test_the_migration_marks_each_accounts_newest_subscription_current(catalog):
    """The data migration keeps what "current" meant before it (the newest row of each account):
    that row is marked current, every older one is not. (The suite runs without migrations, so the
    migration's function is run on rows marked the other way round.)"""
    migration = importlib.import_module("subscriptions.migrations.0010_current_subscription")
    account = AccountFactory()
    older = Subscription.objects.current_of(account)
    newer = Subscription.objects.create(account=account, plan=catalog["personal"], is_current=False)
    single = Subscription.objects.current_of(AccountFactory())
    Subscription.objects.filter(pk=single.pk).update(is_current=False)
    migration.mark_newest_current(django_apps, None)
    marked = dict(Subscription.objects.filter(pk__in=[older.pk, newer.pk, single.pk]).values_list("pk", "is_current"))
    assert marked == {older.pk: False, newer.pk: True, single.pk: True}
