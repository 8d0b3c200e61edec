"""Back office for subscriptions: the subscription history (read-only; changes go through the
account's actions) and the restore-days queue (UPG-3), decided through the engine."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse

from backoffice.admin.accounts import AccountAdmin
from backoffice.admin_base import BackOfficeAdmin, ReadOnlyAdmin
from core.admin_base import change_url, changelist_url, labels, link, links, when
from invoices.models import Invoice
from plans.models import Cycle
from subscriptions import pricing, staff, terms
from subscriptions.errors import BillingError
from subscriptions.models import BillingRunLock, RestoreRequest, Status, Subscription

CYCLES, STATUSES = labels(Cycle), labels(Status)


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    """An account's subscriptions: the newest is the current one, older rows are its history."""

    list_display = ("id", "account", "plan", "cycle_label", "status_label", "period_end", "trial_ends",
                    "cancel_at_period_end", "scheduled_plan", "created")
    list_display_links = ("id", "account")
    list_filter = ("status", "cycle", "plan", "cancel_at_period_end", "cancel_reason_code",
                   ("current_period_end", DateFieldListFilter),
                   ("trial_end", DateFieldListFilter), ("created_at", DateFieldListFilter))
    list_select_related = ("account", "plan", "scheduled_plan")
    ordering = ("-id",)
    change_form_template = "admin/subscriptions/subscription/change_form.html"
    readonly_fields = ("account_link", "invoices_link")
    fieldsets = [
        (None, {"fields": ("account_link", "plan", "cycle", "status", "current_price", "extra_properties",
                           "invoices_link")}),
        ("Period (D-1)", {"fields": ("anchor_at", "period_index", "current_period_start", "current_period_end")}),
        ("Trial", {"fields": ("trial_start", "trial_end", "trial_reminded_at")}),
        ("Pending changes", {"fields": ("cancel_at_period_end", "canceled_at", "scheduled_plan",
                                        "scheduled_cycle", "scheduled_extra_properties", "ended_at")}),
        ("Cancellation reason (CAN-5)", {"fields": ("cancel_reason_code", "cancel_reason")}),
        ("Dunning", {"fields": ("past_due_since", "retry_count", "next_retry_at", "charge_in_flight")}),
    ]

    @admin.display(description="Cycle", ordering="cycle")
    def cycle_label(self, obj):
        return CYCLES.get(obj.cycle, obj.cycle)

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj):
        return STATUSES.get(obj.status, obj.status)

    @admin.display(description="Period ends", ordering="current_period_end")
    def period_end(self, obj):
        return when(obj.current_period_end)

    @admin.display(description="Trial ends", ordering="trial_end")
    def trial_ends(self, obj):
        return when(obj.trial_end)

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj):
        return when(obj.created_at)

    @admin.display(description="Account")
    def account_link(self, obj):
        return link(obj.account)

    @admin.display(description="Invoices")
    def invoices_link(self, obj):
        return links([(changelist_url(Invoice, subscription__id__exact=obj.pk), "Invoices of this subscription")])

    def change_view(self, request, object_id, form_url="", extra_context=None):
        sub = self.get_object(request, object_id)
        actions = []
        if sub is not None:
            account_admin = self.admin_site._registry[sub.account.__class__]
            if isinstance(account_admin, AccountAdmin):
                actions = account_admin.account_actions(request, sub.account)
        return super().change_view(request, object_id, form_url, {"account_actions": actions, **(extra_context or {})})


class DecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False, max_length=2000,
                             help_text="Required to reject. Recorded with your name and sent to the owner.")


@admin.register(RestoreRequest)
class RestoreRequestAdmin(BackOfficeAdmin):
    """UPG-3: the owner asked for the monthly days a monthly -> yearly upgrade forfeited."""

    account_path = "subscription__account"
    extra_lookups = ("subscription__account__id__exact",)
    list_display = ("requested_at", "account", "days", "upgraded_on", "status", "decided_by", "decided_at")
    list_filter = ("status", ("requested_at", DateFieldListFilter))
    list_select_related = ("subscription__account", "decided_by")
    ordering = ("-id",)
    change_form_template = "admin/subscriptions/restorerequest/change_form.html"
    fields = ("account_link", "subscription_link", "invoice_link", "days", "upgraded_on", "deadline", "status",
              "requested_at", "requested_by", "decided_at", "decided_by", "decision_reason")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # the owner asks from the billing page

    def has_change_permission(self, request, obj=None):
        return False  # decided with the buttons on the page (decide_restore)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Account")
    def account(self, obj):
        return obj.subscription.account

    @admin.display(description="Account")
    def account_link(self, obj):
        return link(obj.subscription.account)

    @admin.display(description="Subscription")
    def subscription_link(self, obj):
        sub = obj.subscription
        return link(sub, f"{sub.plan.name} ({sub.cycle}), period {terms.period_date(sub, sub.current_period_start)} → "
                         f"{terms.period_date(sub, sub.current_period_end)}" if sub.current_period_end else str(sub))

    @admin.display(description="Upgrade invoice")
    def invoice_link(self, obj):
        return link(obj.invoice)

    @admin.display(description="Last day to ask")
    def deadline(self, obj):
        from django.conf import settings

        return f"{pricing.restore_deadline(obj.upgraded_on, settings.BILLING_RESTORE_WORKING_DAYS):%A %Y-%m-%d}"

    def get_urls(self):
        return [
            path("<int:object_id>/decide/", self.admin_site.admin_view(self.decide_view),
                 name="subscriptions_restorerequest_decide"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = {}
        if obj is not None and obj.status == "pending" and request.user.has_perm("subscriptions.decide_restore"):
            sub = obj.subscription
            new_end = None
            if sub.anchor_at is not None and sub.cycle == "yearly":
                new_end = terms.anchor_moved(sub, obj.days)[1]
            extra = {"decision_form": DecisionForm(), "new_period_end": new_end,
                     "decide_url": reverse("admin:subscriptions_restorerequest_decide", args=[obj.pk])}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def decide_view(self, request, object_id):
        if request.method != "POST":
            return redirect(reverse("admin:subscriptions_restorerequest_change", args=[object_id]))
        if not request.user.has_perm("subscriptions.decide_restore"):
            raise PermissionDenied
        req = get_object_or_404(RestoreRequest, pk=object_id)
        form = DecisionForm(request.POST)
        approve = "approve" in request.POST
        if form.is_valid():
            try:
                staff.decide_restore(req, approve=approve, reason=form.cleaned_data["reason"], actor=request.user)
            except BillingError as exc:
                self.message_user(request, str(exc), messages.ERROR)
            else:
                req.refresh_from_db()
                sub = req.subscription
                self.message_user(
                    request,
                    f"Approved: the period now ends on {terms.period_date(sub, sub.current_period_end)}." if approve
                    else "Rejected; the owner is e-mailed your reason.", messages.SUCCESS)
        else:
            self.message_user(request, "The reason is too long.", messages.ERROR)
        return redirect(change_url(req))


@admin.register(BillingRunLock)
class BillingRunLockAdmin(ReadOnlyAdmin):
    account_path = None
    search_fields = ("name", "holder")
    search_help_text = "A lock name (billing_run) or its holder (host:pid)."
    list_display = ("name", "holder", "expires_at")
