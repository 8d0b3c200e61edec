"""The billing engine's public API. Views, admin actions, commands and other systems call only
these functions to change billing state. See docs/billing-engine.md."""

from django.db import transaction
from django.utils import timezone

from accounts.services import audit
from plans.models import Plan

from .models import Status, Subscription


class BillingError(Exception):
    """A refused billing request. The message is fit to show a customer."""


@transaction.atomic
def start_free(account, *, actor=None, now=None) -> Subscription:
    """Put a new account on the Free plan (no card, no periods to charge)."""
    now = now or timezone.now()
    plan = Plan.objects.get(code="free")
    subscription = Subscription.objects.create(
        account=account, plan=plan, status=Status.ACTIVE, current_period_start=now, created_at=now
    )
    audit(account=account, actor=actor, action="subscription.started_free", obj=subscription,
          after={"plan": plan.code}, now=now)
    return subscription
