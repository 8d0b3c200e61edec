from django.db import models


class LedgerCheck(models.Model):
    """One run of the ledger check (OPS-2): when, whether every invariant held, and what broke.
    Kept as the record staff see in the admin; the newest failed one is shown on the admin index
    until a later check passes."""

    ran_at = models.DateTimeField()
    ok = models.BooleanField()
    # [{"invariant": ..., "subject": ..., "detail": ...}, ...]: what the check found, in words.
    breaches = models.JSONField(default=list, blank=True)
    checked = models.JSONField(default=dict, blank=True, help_text="How many rows each invariant read.")
    alerted_to = models.CharField(max_length=500, blank=True, help_text="Who was e-mailed about the breaches.")

    class Meta:
        ordering = ["-ran_at", "-id"]
        indexes = [models.Index(fields=["-ran_at"])]

    def __str__(self):
        outcome = "ok" if self.ok else f"{len(self.breaches)} breach(es)"
        return f"Ledger check {self.ran_at:%Y-%m-%d %H:%M} UTC: {outcome}"
