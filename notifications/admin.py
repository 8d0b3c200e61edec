from django.contrib import admin, messages

from .models import EmailLog, EmailStatus, ProductNews
from .services import NotificationError, email_retry_now, product_news_send


@admin.register(EmailLog)
class EmailLogAdmin(admin.ModelAdmin):
    """What was sent, to whom, and whether it arrived (NOT-3). Read-only: the log is evidence.
    One account's e-mails: ?account__id__exact=<id>."""

    list_display = ("queued_at", "kind", "recipient", "account", "subject", "status", "attempts", "sent_at")
    list_filter = ("status", "category", "kind")
    search_fields = ("recipient", "account__name", "subject")
    list_select_related = ("account",)
    date_hierarchy = "queued_at"
    actions = ["retry_now"]
    fields = (
        "kind", "category", "recipient", "account", "subject", "status", "error", "attempts",
        "queued_at", "last_attempt_at", "sent_at", "next_attempt_at", "related_type", "related_id", "attach_pdf",
        "body_text", "body_html",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Send the selected failed e-mails again now", permissions=["view"])
    def retry_now(self, request, queryset):
        counts = email_retry_now(queryset.filter(status=EmailStatus.FAILED).order_by("id"))
        self.message_user(
            request, f"Sent {counts['sent']}, failed again {counts['failed']}, skipped {counts['skipped']}.",
            messages.SUCCESS if not counts["failed"] else messages.WARNING,
        )


@admin.register(ProductNews)
class ProductNewsAdmin(admin.ModelAdmin):
    """Staff write a product-news e-mail, then send it to every owner who wants product news."""

    list_display = ("subject", "created_at", "sent_at", "recipients_count")
    readonly_fields = ("created_at", "created_by", "sent_at", "sent_by", "recipients_count")
    actions = ["send_news"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and obj.sent_at:
            return ("subject", "body", *self.readonly_fields)
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Send to all owners who opted in to product news", permissions=["change"])
    def send_news(self, request, queryset):
        for news in queryset.order_by("id"):
            try:
                count = product_news_send(news, actor=request.user)
            except NotificationError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                self.message_user(request, f"“{news.subject}” queued to {count} owners.", messages.SUCCESS)
