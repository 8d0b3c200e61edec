"""Back office for the catalog (CAT-1..3). Read-only: the public catalog is code (`load_catalog`),
and custom plans for one account are made from the account page ("Custom plan", CAT-3), through the
engine, so every plan change is audited."""

from django.contrib import admin

from backoffice.admin_base import ReadOnlyAdmin, account_ids_matching
from plans.models import Plan


class PlanKindFilter(admin.SimpleListFilter):
    title = "kind"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [("public", "Public catalog"), ("custom", "Custom (one account)")]

    def queryset(self, request, queryset):
        if self.value() == "public":
            return queryset.filter(account__isnull=True)
        if self.value() == "custom":
            return queryset.filter(account__isnull=False)
        return queryset


@admin.register(Plan)
class PlanAdmin(ReadOnlyAdmin):
    list_display = ("code", "name", "rank", "currency", "monthly_price", "yearly_price", "limit_properties",
                    "limit_sessions", "limit_integrations", "overage_per_1000", "extra_property_monthly",
                    "trial_days", "public", "account", "based_on")
    list_filter = (PlanKindFilter, "public", "currency")
    list_select_related = ("account", "based_on")
    ordering = ("rank", "code")
    search_help_text = "Plan code or name, or the account of a custom plan (name, owner e-mail, #id)."

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        by_plan = queryset.filter(code__icontains=term) | queryset.filter(name__icontains=term)
        return by_plan | queryset.filter(account__in=account_ids_matching(term)), False
