from django.db import models
from django.db.models import Value


class PendingEvent(models.Model):
    """A domain event written in the same transaction as the change it announces (a transactional
    outbox): a worker delivers it to the subscribers (`core.events.drain`) and deletes it, so no
    announcement is lost to a crash between the commit and the delivery, and a rolled-back change
    announces nothing."""

    kind = models.CharField(max_length=50)
    account_id = models.BigIntegerField()
    data = models.JSONField(default=dict)
    # What the announcement states about the account at the event (NOT-4), fixed when it is emitted;
    # {} on a row written before this field existed, or by code that does not know it (the database's
    # default: the previous release, still running during a deploy, keeps writing its events).
    facts = models.JSONField(default=dict, db_default=Value({}, output_field=models.JSONField()))
    occurred_at = models.DateTimeField()

    class Meta:
        db_table = "subscriptions_pendingevent"  # moved from the subscriptions app; the table stays

    def __str__(self):
        return f"{self.kind} for account {self.account_id}"
