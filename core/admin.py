from django.contrib import admin

from .admin_base import CappedCountPaginator, ReadOnlyMixin
from .models import PendingEvent


@admin.register(PendingEvent)
class PendingEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Events written and not yet delivered (the outbox; empty when the cluster keeps up).
    `core.events.drain` delivers them; the e-mail retry schedule runs it every 10 minutes."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    search_fields = ("kind", "account_id")
    search_help_text = "An event kind (payment.succeeded) or an account id."
    list_display = ("id", "kind", "account_id", "occurred_at")
    list_filter = ("kind",)
    ordering = ("id",)
