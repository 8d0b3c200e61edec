from django.apps import AppConfig


class InvoicesConfig(AppConfig):
    name = "invoices"
    verbose_name = "Invoices and payments"

    def ready(self):
        from . import checks, stripe_endpoint  # noqa: F401  (the check, the webhook endpoint)
        from .gateways.stripe import configure_stripe

        checks.raise_on_payment_settings_errors()
        configure_stripe()
