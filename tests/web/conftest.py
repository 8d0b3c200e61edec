"""Fixtures for the billing page's view tests: an account with an owner, a billing user and a
member, each with a logged-in test client. The engine runs for real (sandbox gateway)."""

import pytest
import time_machine
from django.test import Client

from accounts.models import Membership, Role
from subscriptions import billing
from tests.factories import AccountFactory, PropertyFactory, UserFactory
from tests.subscriptions.conftest import at


@pytest.fixture(autouse=True)
def long_sessions(settings):
    """The tests move the clock by weeks; a session must outlive that."""
    settings.SESSION_COOKIE_AGE = 10 * 365 * 24 * 3600


@pytest.fixture
def travel():
    """travel("2026-04-16") pins the clock (the views call the engine with the real now)."""
    travellers = []

    def go(text: str):
        if travellers:
            travellers.pop().stop()
        traveller = time_machine.travel(at(text), tick=False)
        traveller.start()
        travellers.append(traveller)

    yield go
    for traveller in travellers:
        traveller.stop()


@pytest.fixture
def owner(catalog):
    return UserFactory()


@pytest.fixture
def account(owner):
    """On Free, with a working card on file."""
    acct = AccountFactory(owner=owner)
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-01-01"))
    return acct


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client_owner(account, owner):
    return login(owner)


@pytest.fixture
def billing_user(account):
    user = UserFactory()
    Membership.objects.create(user=user, account=account, role=Role.BILLING)
    return user


@pytest.fixture
def member_user(account):
    user = UserFactory()
    Membership.objects.create(user=user, account=account, role=Role.MEMBER)
    return user


@pytest.fixture
def other_account(catalog):
    acct = AccountFactory()
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-01-01"))
    return acct


def current(account):
    return account.subscriptions.select_related("plan", "scheduled_plan").order_by("-id").first()


def add_properties(account, n):
    return [PropertyFactory(account=account) for _ in range(n)]
