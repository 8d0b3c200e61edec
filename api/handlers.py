"""Listeners that keep the entitlement cache and the month's quota in step with billing changes."""

from django.db import transaction

from usage.entitlements import entitlement_invalidate, entitlement_invalidate_tag
from usage.quota import usage_month_note_plan


def entitlement_on_event(event) -> None:
    entitlement_invalidate(event.account_id)


def usage_month_on_plan_event(event) -> None:
    usage_month_note_plan(event.account_id, now=event.occurred_at)
    entitlement_invalidate(event.account_id)


def entitlement_on_property_save(sender, instance, **kwargs) -> None:
    tag = instance.tracking_tag
    transaction.on_commit(lambda: entitlement_invalidate_tag(tag))


def entitlement_on_account_save(sender, instance, created, **kwargs) -> None:
    if not created:
        transaction.on_commit(lambda: entitlement_invalidate(instance.pk))


def entitlement_on_subscription_save(sender, instance, **kwargs) -> None:
    account_id = instance.account_id
    transaction.on_commit(lambda: entitlement_invalidate(account_id))
