from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Usage and entitlements API"

    def ready(self):
        from . import signals
        from .throttle import api_key_rate

        api_key_rate()  # a malformed API_KEY_RATE stops the start with its message
        signals.connect()
