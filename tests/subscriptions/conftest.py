from datetime import UTC, datetime
from decimal import Decimal

import pytest

from subscriptions import billing
from tests.factories import AccountFactory, PlanFactory, PropertyFactory


def at(text: str) -> datetime:
    """A UTC moment from 'YYYY-MM-DD' or 'YYYY-MM-DDTHH:MM'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def account(catalog):
    """A customer on Free with a working card on file."""
    acct = AccountFactory()
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-01-01"))
    return acct


@pytest.fixture
def premium(catalog):
    """A custom higher tier, to chain upgrades (rank 3, $49/month)."""
    return PlanFactory(code="premium", name="Premium", rank=3, monthly_price=Decimal("49.00"),
                       yearly_price=Decimal("470.40"), limit_properties=25, limit_sessions=500000,
                       overage_per_1000=Decimal("1.00"), extra_property_monthly=Decimal("25.00"))


def add_properties(account, n):
    return [PropertyFactory(account=account) for _ in range(n)]


def current(account):
    return account.subscriptions.select_related("plan", "scheduled_plan").order_by("-id").first()
