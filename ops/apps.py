from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Running Prorata as a service (OPS-1, OPS-2): the billing metrics and the nightly ledger
    check. Above the engine and the ledger: it reads their rows and changes none of them."""

    name = "ops"
    verbose_name = "Operations"
