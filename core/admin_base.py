"""Building blocks shared by the back-office admins of every app: a paginator that never counts a
whole table, read-only bases for the money records (INV-2), the audit log (ACC-3) and the outbox,
and link helpers. The account-aware search lives in backoffice.admin_base."""

from django.contrib import admin
from django.core.paginator import Paginator
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode


class CappedCountPaginator(Paginator):
    """Counts at most `cap` + 1 rows (COUNT over a LIMITed subquery of primary keys), so a changelist
    of a million rows costs a few milliseconds instead of a full count. Past the cap the
    changelist says "more than 10,000" (templates/admin/<app>/pagination.html)."""

    cap = 10_000

    @cached_property
    def count(self) -> int:
        # No ORDER BY: any cap + 1 matching rows will do, so PostgreSQL may stop at the first ones.
        return self.object_list.values("pk").order_by()[: self.cap + 1].count()

    @property
    def capped(self) -> bool:
        return self.count > self.cap


def when(moment) -> str:
    """A datetime for a changelist cell: cheaper than the admin's localized formatting, which
    dominates a 50-row page's rendering time."""
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "—"


def labels(choices) -> dict:
    return dict(choices.choices)


class ReadOnlyMixin:
    """Issued money records, the audit log and the outbox never change in the admin (INV-2, ACC-3)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyInline(ReadOnlyMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None):
        return self.fields or [f.name for f in self.model._meta.fields]


def changelist_url(model, **filters) -> str:
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def link(obj, text=None) -> str:
    if obj is None:
        return "—"
    return format_html('<a href="{}">{}</a>', change_url(obj), text if text is not None else str(obj))


def links(pairs) -> str:
    """An inline list of (url, text) links."""
    return format_html_join(" · ", '<a href="{}">{}</a>', pairs)
