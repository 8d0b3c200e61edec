from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    """Staff surfaces above the engine: the admin of every app's models (admin/), the account
    actions and the trial-abuse evidence, the demo customers, the simulation and the schedules."""

    name = "backoffice"
    verbose_name = "Back office"
