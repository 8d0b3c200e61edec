from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from core import events

        from . import checks  # noqa: F401  (registers the deployment check)
        from .services import notify_event

        # Every event the engine emits becomes an e-mail (kinds.NOTIFICATIONS covers events.KINDS).
        for kind in events.KINDS:
            events.subscribe(kind, notify_event)
