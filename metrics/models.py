"""Rows derived from the ledger for the revenue figures (ACC-5). Nothing here is a source of
truth: `MrrMovement` is an index of the audit log (ACC-3), rebuilt from it by
`manage.py metrics_rebuild` and extended every few minutes (`metrics.tasks.scheduled_refresh`);
the figures add the audit events after `MetricsBuild.built_through` on the fly, so they are exact
whether or not the schedule ran (docs/metrics.md)."""

from django.db import models

from .mrr import KIND_LABELS, Kind

MONEY = {"max_digits": 12, "decimal_places": 2}


class MrrMovement(models.Model):
    """One change of an account's monthly recurring revenue, or of the plan or cycle it is counted
    under, read from the audit event that recorded the new state."""

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="mrr_movements")
    audit_event_id = models.BigIntegerField(unique=True, help_text="The audit event (ACC-3) it is read from.")
    at = models.DateTimeField(help_text="When the audit log recorded the change.")
    kind = models.CharField(max_length=15, choices=[(k.value, label) for k, label in KIND_LABELS.items()])
    from_plan = models.CharField(max_length=50, blank=True)
    from_cycle = models.CharField(max_length=10, blank=True)
    from_amount = models.DecimalField(**MONEY)
    to_plan = models.CharField(max_length=50, blank=True)
    to_cycle = models.CharField(max_length=10, blank=True)
    to_amount = models.DecimalField(**MONEY)
    delta = models.DecimalField(**MONEY)

    class Meta:
        ordering = ["-at", "-audit_event_id"]
        indexes = [models.Index(fields=["at"]), models.Index(fields=["account", "audit_event_id"])]
        permissions = [("view_dashboard", "Can see the revenue and health figures")]

    def __str__(self):
        return f"{self.at:%Y-%m-%d} {self.account_id}: {Kind(self.kind).value} {self.delta}"


class ClosedMonth(models.Model):
    """A figure of a closed month that can no longer change, kept so that the page does not
    count it again: money figures once the month is over; failed payments and trials once none
    of the month's invoices is in dunning and none of its trials is open any more (paid and void
    invoices never change again, INV-2). `metrics_rebuild --check` recomputes and compares them."""

    figure = models.CharField(max_length=30)
    month = models.DateField(help_text="The first day of the month (UTC).")
    data = models.JSONField()
    stored_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["figure", "month"], name="closed_month_unique")]

    def __str__(self):
        return f"{self.figure} {self.month:%Y-%m}"


class MetricsBuild(models.Model):
    """How far `MrrMovement` has been built: every audit event recorded up to `built_through`."""

    name = models.CharField(max_length=20, primary_key=True)
    built_through = models.DateTimeField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.name} through {self.built_through}"
