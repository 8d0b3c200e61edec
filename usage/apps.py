from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Usage metering above the engine: ingest, quota and alerts, entitlements. Its tables stay
    in accounts (UsageEvent, UsageDay, UsageMonth), which the engine reads."""

    name = "usage"
    verbose_name = "Usage metering"
