from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Infrastructure every app shares: money formatting, the calendar of a time zone, the events
    outbox, the SQL helper, the layered cache and the admin base. Imports only Django and the
    standard library, so that any app may import it and it imports no app."""

    name = "core"
    verbose_name = "Events outbox"

    def ready(self):
        from . import sql  # noqa: F401  registers the `__any` lookup (core.sql.AnyOf)
        from .logs import task_logging_connect

        task_logging_connect()  # OPS-3: a django-q2 task's log lines carry its id
