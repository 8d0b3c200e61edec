from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from . import checks, signals  # noqa: F401  (checks registers the deployment check)

        signals.connect()
