from django.contrib import admin
from django.utils.html import format_html_join

from .models import LedgerCheck


@admin.register(LedgerCheck)
class LedgerCheckAdmin(admin.ModelAdmin):
    """OPS-2: the ledger check's records, read-only (the check writes them; nobody edits a proof)."""

    list_display = ("ran_at", "ok", "breach_count", "alerted_to")
    list_filter = ("ok",)
    readonly_fields = ("ran_at", "ok", "checked", "breach_list", "alerted_to")
    exclude = ("breaches",)

    @admin.display(description="Breaches")
    def breach_count(self, obj):
        return len(obj.breaches)

    @admin.display(description="What broke")
    def breach_list(self, obj):
        return format_html_join("\n", "<p><strong>{}</strong> {}: {}</p>",
                                ((b["invariant"], b["subject"], b["detail"]) for b in obj.breaches)) or "Nothing."

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
