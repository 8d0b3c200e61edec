"""E-mail log (NOT-3): one row per message and recipient, kept as the proof of what was sent."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class EmailStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # rendered and waiting for the send task
    SENT = "sent", "Sent"  # handed to the mail server
    FAILED = "failed", "Failed"  # the last attempt failed; see error and next_attempt_at


class Category(models.TextChoices):
    BILLING = "billing", "Billing"  # NOT-1: always sent, cannot be unsubscribed
    USAGE_ALERTS = "usage_alerts", "Usage alerts"  # NOT-2: Account.email_usage_alerts
    PRODUCT_NEWS = "product_news", "Product news"  # NOT-2: Account.email_product_news


class EmailLog(models.Model):
    recipient = models.EmailField()
    kind = models.CharField(max_length=50, help_text="The event kind, or product.news.")
    category = models.CharField(max_length=20, choices=Category)
    subject = models.CharField(max_length=300)
    body_text = models.TextField()
    body_html = models.TextField()
    account = models.ForeignKey(
        "accounts.Account", null=True, blank=True, on_delete=models.SET_NULL, related_name="email_logs"
    )
    # The row the e-mail is about ("invoice", 42), as text so any model can be named.
    related_type = models.CharField(max_length=50, blank=True)
    related_id = models.CharField(max_length=64, blank=True)
    attach_pdf = models.BooleanField(default=False, help_text="Attach the related invoice or credit note PDF.")
    # NOT-4: replies reach support (the seller's support address when the event happened).
    reply_to = models.EmailField(blank=True)
    status = models.CharField(max_length=10, choices=EmailStatus, default=EmailStatus.QUEUED)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="Empty once sent or given up.")
    # A sender claims the row until this time, so two workers never send the same message.
    claimed_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        indexes = [
            models.Index(fields=["account", "-queued_at"]),
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["kind"]),
        ]

    def __str__(self):
        return f"{self.kind} to {self.recipient} ({self.status})"


class ProductNews(models.Model):
    """A product-news e-mail written by staff and sent to every opted-in owner (NOT-2)."""

    subject = models.CharField(max_length=200)
    body = models.TextField(help_text="Plain text; blank lines separate paragraphs.")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    recipients_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "product news"

    def __str__(self):
        return self.subject
