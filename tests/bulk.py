"""Many due subscriptions, fast (bulk inserts): for concurrency tests and bench/billing_run.py."""

from datetime import UTC, datetime
from decimal import Decimal

from django.contrib.auth import get_user_model

from accounts.models import Account, Membership, Role
from invoices.models import PaymentMethod, SandboxCard
from plans.models import Plan
from plans.services import DEMO_CATALOG, catalog_load_file
from subscriptions.models import Status, Subscription

START = datetime(2026, 4, 1, tzinfo=UTC)
END = datetime(2026, 5, 1, tzinfo=UTC)
DUE_AT = datetime(2026, 4, 30, tzinfo=UTC)  # 24 hours before the period ends on 05-01


def make_due_subscriptions(n: int, *, batch: int = 2000) -> list[int]:
    """`n` accounts on Personal monthly (2026-04-01 → 05-01), each with an owner who gets the
    receipt and a working sandbox card, all due for renewal at DUE_AT. Returns the subscription ids."""
    if not Plan.objects.filter(code="personal").exists():
        catalog_load_file(DEMO_CATALOG)
    plan = Plan.objects.get(code="personal")
    first = Account.objects.count()
    ids = []
    for offset in range(0, n, batch):
        size = min(batch, n - offset)
        accounts = Account.objects.bulk_create(
            [Account(name=f"Bulk {first + offset + i}", created_at=START) for i in range(size)]
        )
        for account in accounts:
            account.gateway_customer_id = f"cus_sbx_{account.pk}"
        Account.objects.bulk_update(accounts, ["gateway_customer_id"])
        owners = get_user_model().objects.bulk_create(
            [get_user_model()(username=f"owner{a.pk}@bulk.example", email=f"owner{a.pk}@bulk.example",
                              password="!") for a in accounts]
        )
        Membership.objects.bulk_create([Membership(user=user, account=a, role=Role.OWNER)
                                        for user, a in zip(owners, accounts, strict=True)])
        SandboxCard.objects.bulk_create(
            [SandboxCard(gateway_id=f"pm_sbx_bulk{a.pk}", customer=a.gateway_customer_id, token="pm_card_visa")
             for a in accounts]
        )
        PaymentMethod.objects.bulk_create(
            [PaymentMethod(account=a, gateway="sandbox", gateway_id=f"pm_sbx_bulk{a.pk}", brand="visa", last4="4242",
                           exp_month=12, exp_year=2030, fingerprint=f"fp_bulk{a.pk}", is_default=True)
             for a in accounts]
        )
        subs = Subscription.objects.bulk_create(
            [Subscription(account=a, plan=plan, cycle="monthly", status=Status.ACTIVE, anchor_at=START,
                          period_index=0, current_period_start=START, current_period_end=END,
                          current_price=Decimal("14.00"), created_at=START)
             for a in accounts]
        )
        ids += [s.pk for s in subs]
    return ids
