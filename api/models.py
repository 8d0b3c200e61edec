import hashlib

from django.conf import settings
from django.db import models
from django.utils.timezone import now as tz_now


def api_key_hash(raw_key: str) -> str:
    """SHA-256 of the key. Keys are 256 random bits, so a fast hash is safe here (a slow password
    hash guards low-entropy secrets) and keeps per-request authentication cheap."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(models.Model):
    """A server-to-server key for the usage and entitlements API. Only its hash is stored; the key
    itself is shown once, when it is created. Revoked keys stay for the audit trail."""

    name = models.CharField(max_length=100, help_text="Who uses it, e.g. 'tracking-prod'.")
    prefix = models.CharField(max_length=12, editable=False, help_text="The key's first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=tz_now, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
