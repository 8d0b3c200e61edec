from django.apps import AppConfig


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = "Billing engine"

    def ready(self):
        from . import stripe_webhooks  # noqa: F401  (registers the dj-stripe webhook receivers)
