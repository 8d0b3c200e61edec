"""What drops or refreshes the cached entitlement answers: the domain events after which an answer
may differ, and the saves that change one without an event. Connected once by ApiConfig.ready()
(models are loaded by then, so this module imports them at its top)."""

from django.db.models.signals import post_save

from accounts.models import Account, Property
from core import events
from subscriptions.models import Subscription

from . import handlers

# Domain events after which an entitlement answer may differ (SUS-1, plan limits, quotas).
INVALIDATING_EVENTS = (
    "account.suspended", "account.reactivated", "downgrade.applied", "cancellation.effective",
    "subscription.upgraded", "subscription.started", "trial.started", "trial.canceled", "trial.converted",
    "subscription.resumed", "subscription.trial_plan_changed",
)
# Events that put a plan in force this month: its quota may raise the month's included sessions (USE-3).
PLAN_EVENTS = (
    "subscription.upgraded", "subscription.started", "trial.started", "trial.converted",
    "subscription.resumed", "subscription.trial_plan_changed",
)


def connect() -> None:
    for kind in INVALIDATING_EVENTS:
        events.subscribe(kind, handlers.entitlement_on_event)
    for kind in PLAN_EVENTS:
        events.subscribe(kind, handlers.usage_month_on_plan_event)
    # Saves that change an answer without a domain event (a property paused or deleted, staff
    # editing an account in the admin) drop the cached answers too.
    post_save.connect(handlers.entitlement_on_property_save, sender=Property, dispatch_uid="api.property")
    post_save.connect(handlers.entitlement_on_account_save, sender=Account, dispatch_uid="api.account")
    post_save.connect(handlers.entitlement_on_subscription_save, sender=Subscription,
                      dispatch_uid="api.subscription")
