"""Back office for accounts (ACC-2): the account page with its history, the staff actions, the
trial-abuse list (TRI-2), usage evidence and the append-only audit log (ACC-3). Nothing here edits a
row directly: actions call the engine (backoffice/account_actions.py -> subscriptions.staff)."""

import json
import re

from django.contrib import admin
from django.contrib.admin import DateFieldListFilter
from django.db.models import Exists, OuterRef, Q, Subquery
from django.urls import path
from django.utils.html import format_html, format_html_join

from accounts.models import (
    Account,
    AccountFlag,
    AuditEvent,
    FlagKind,
    Integration,
    LoginEvent,
    Membership,
    Property,
    Role,
    UsageDay,
    UsageEvent,
    UsageMonth,
)
from accounts.services import flag_resolve
from backoffice import account_actions
from backoffice.admin_base import BackOfficeAdmin, ReadOnlyAdmin, account_ids_matching
from backoffice.evidence import identity_matches
from core.admin_base import ReadOnlyInline, changelist_url, link, links
from invoices.models import CreditNote, Invoice, Payment, PaymentMethod, RefundRequest
from metrics.admin_filters import FigureFilter
from notifications.models import EmailLog
from plans.models import Plan
from subscriptions.models import RestoreRequest, Subscription

RECENT = 10
ACTION_NAME = re.compile(r"^[a-z_]+\.[a-z_.]+$")


def _owner_email():
    return Subquery(Membership.objects.filter(account_id=OuterRef("pk"), role=Role.OWNER).values("user__email")[:1])


def _current_plan_name():
    return Subquery(Subscription.objects.current().filter(account_id=OuterRef("pk")).values("plan__name")[:1])


class CurrentPlanFilter(admin.SimpleListFilter):
    title = "current plan"
    parameter_name = "plan"

    def lookups(self, request, model_admin):
        return [(p.code, p.name) for p in Plan.objects.filter(public=True).order_by("rank")] + [
            ("_custom", "A custom plan")]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        newest = Subscription.objects.current().filter(account_id=OuterRef("pk"))
        if self.value() == "_custom":
            return queryset.filter(Exists(newest.filter(plan__account__isnull=False)[:1]))
        return queryset.annotate(_plan=Subquery(newest.values("plan__code")[:1])).filter(_plan=self.value())


class TrialAbuseFlagFilter(admin.SimpleListFilter):
    title = "trial abuse"
    parameter_name = "trial_abuse"

    def lookups(self, request, model_admin):
        return [("flagged", "Flagged, open")]

    def queryset(self, request, queryset):
        if self.value() == "flagged":
            return queryset.filter(Exists(AccountFlag.objects.filter(
                account_id=OuterRef("pk"), kind=FlagKind.TRIAL_ABUSE, resolved_at__isnull=True)))
        return queryset


class MembershipInline(ReadOnlyInline):
    model = Membership
    fields = ("user", "role", "created_at")
    show_change_link = False


class PropertyInline(ReadOnlyInline):
    model = Property
    fields = ("name", "domain", "tracking_tag", "status", "first_event_at", "created_at", "deleted_at")


class IntegrationInline(ReadOnlyInline):
    model = Integration
    fields = ("kind", "name", "connected_at", "disconnected_at")


class FlagInline(ReadOnlyInline):
    model = AccountFlag
    fk_name = "account"
    fields = ("kind", "detail", "matched_account", "created_at", "resolved_at")


def _payment_method_inline():
    class PaymentMethodInline(ReadOnlyInline):
        model = PaymentMethod
        fields = ("brand", "last4", "exp_month", "exp_year", "fingerprint", "is_default", "created_at",
                  "detached_at")
        show_change_link = False

    return PaymentMethodInline


@admin.register(Account)
class AccountAdmin(BackOfficeAdmin):
    account_path = "pk"
    list_display = ("name", "owner_email", "status", "suspension_reason", "plan_name", "trial_used_at", "created_at")
    list_filter = ("status", "suspension_reason", CurrentPlanFilter, TrialAbuseFlagFilter,
                   ("created_at", DateFieldListFilter), ("trial_used_at", DateFieldListFilter), FigureFilter)
    ordering = ("-id",)
    change_form_template = "admin/accounts/account/change_form.html"
    change_list_template = "admin/accounts/account/change_list.html"
    inlines = [MembershipInline, PropertyInline, IntegrationInline, _payment_method_inline(), FlagInline]
    fieldsets = [
        (None, {"fields": ("name", "owner", "status", "suspension_reason", "suspension_note", "suspended_at",
                           "current_subscription", "records")}),
        ("Billing details (INV-4, TAX-4, PAY-5)", {"fields": ("company", "address", "country", "vat_id",
                                                             "vat_id_checked_at", "vat_id_consultation",
                                                             "billing_email", "timezone")}),
        ("Trial and identity (TRI-2, USE-5)", {"fields": ("trial_used_at", "usage_started_at", "identity_email",
                                                          "identity_matches", "gateway_customer_id")}),
        ("E-mail preferences (NOT-2)", {"fields": ("email_usage_alerts", "email_product_news")}),
        ("Latest audit events (ACC-3)", {"fields": ("recent_audit",)}),
        ("Latest e-mails (NOT-3)", {"fields": ("recent_emails",)}),
    ]
    readonly_fields = (
        "name", "owner", "status", "suspension_reason", "suspension_note", "suspended_at", "current_subscription",
        "records", "company", "address", "country", "vat_id", "vat_id_checked_at", "vat_id_consultation",
        "billing_email", "timezone", "trial_used_at", "usage_started_at",
        "identity_email", "identity_matches", "gateway_customer_id", "email_usage_alerts", "email_product_news",
        "recent_audit", "recent_emails",
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(owner_email=_owner_email(), plan_name=_current_plan_name())

    def has_add_permission(self, request):
        return False  # accounts are created by sign-up

    def has_change_permission(self, request, obj=None):
        return False  # changes go through the actions on the page

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Owner e-mail", ordering="owner_email")
    def owner_email(self, obj):
        return obj.owner_email or "—"

    @admin.display(description="Plan")
    def plan_name(self, obj):
        return obj.plan_name or "—"

    @admin.display(description="Owner")
    def owner(self, obj):
        user = obj.owner
        return f"{user.get_username()} <{user.email}>" if user else "—"

    @admin.display(description="Subscription")
    def current_subscription(self, obj):
        sub = obj.subscription
        if sub is None:
            return "—"
        period = (f", {sub.current_period_start:%Y-%m-%d} → {sub.current_period_end:%Y-%m-%d}"
                  if sub.current_period_start and sub.current_period_end else "")
        pending = ""
        if sub.cancel_at_period_end:
            pending = " · cancels at period end"
        elif sub.scheduled_plan_id:
            pending = f" · moves to {sub.scheduled_plan.name} at period end"
        return link(sub, f"{sub.plan.name} ({sub.cycle}), {sub.get_status_display().lower()}{period}{pending}")

    @admin.display(description="Records")
    def records(self, obj):
        by_account = {"account__id__exact": obj.pk}
        return links([
            (changelist_url(Subscription, **by_account), "Subscription history"),
            (changelist_url(Invoice, **by_account), "Invoices"),
            (changelist_url(CreditNote, **by_account), "Credit notes"),
            (changelist_url(Payment, **by_account), "Payments"),
            (changelist_url(RefundRequest, **by_account), "Refund requests"),
            (changelist_url(RestoreRequest, subscription__account__id__exact=obj.pk), "Restore-days requests"),
            (changelist_url(AuditEvent, **by_account), "Audit events"),
            (changelist_url(EmailLog, **by_account), "E-mails"),
            (changelist_url(UsageDay, **by_account), "Usage per day"),
            (changelist_url(LoginEvent, **by_account), "Logins"),
        ])

    @admin.display(description="Matches another account's trial")
    def identity_matches(self, obj):
        found = identity_matches([obj]).get(obj.pk, [])
        if not found:
            return "No match"
        return format_html_join(", ", "{} ({}: {})", ((link(m.account), m.how, m.detail) for m in found))

    @admin.display(description="")
    def recent_audit(self, obj):
        rows = AuditEvent.objects.filter(account=obj).order_by("-created_at", "-id")[:RECENT]
        return format_html(
            '<table><tr><th>When</th><th>Who</th><th>Action</th><th>Reason</th></tr>{}</table><p>{}</p>',
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                             ((f"{e.created_at:%Y-%m-%d %H:%M}", e.actor_label, link(e, e.action), e.reason[:120])
                              for e in rows)),
            links([(changelist_url(AuditEvent, account__id__exact=obj.pk), "All audit events of this account")]),
        )

    @admin.display(description="")
    def recent_emails(self, obj):
        rows = EmailLog.objects.filter(account=obj).order_by("-queued_at", "-id")[:RECENT]
        return format_html(
            '<table><tr><th>Queued</th><th>To</th><th>Kind</th><th>Subject</th><th>Status</th></tr>{}</table><p>{}</p>',
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                             ((f"{e.queued_at:%Y-%m-%d %H:%M}", e.recipient, e.kind, link(e, e.subject),
                               e.get_status_display()) for e in rows)),
            links([(changelist_url(EmailLog, account__id__exact=obj.pk), "All e-mails of this account")]),
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view

        def view(func):
            return wrap(lambda request, object_id: func(self, request, object_id))

        return [
            path("trial-abuse/", wrap(lambda request: account_actions.trial_abuse_list(self, request)),
                 name="accounts_account_trial_abuse"),
            path("<int:object_id>/suspend/", view(account_actions.account_suspend), name="accounts_account_suspend"),
            path("<int:object_id>/lift/", view(account_actions.account_lift), name="accounts_account_lift"),
            path("<int:object_id>/downgrade/", view(account_actions.account_downgrade),
                 name="accounts_account_downgrade"),
            path("<int:object_id>/extend/", view(account_actions.account_extend), name="accounts_account_extend"),
            path("<int:object_id>/refund-invoice/", view(account_actions.account_refund_invoice),
                 name="accounts_account_refund_invoice"),
            path("<int:object_id>/custom-plan/", view(account_actions.account_custom_plan),
                 name="accounts_account_custom_plan"),
            *super().get_urls(),
        ]

    def account_actions(self, request, account) -> list[tuple[str, str]]:
        """The action buttons this user may use on this account (ACC-2)."""
        from django.urls import reverse

        def url(name):
            return reverse(f"admin:accounts_account_{name}", args=[account.pk])

        user, actions = request.user, []
        if user.has_perm("accounts.suspend_account"):
            if account.is_suspended:
                actions.append((url("lift"), "Lift suspension"))
            else:
                actions.append((url("suspend"), "Suspend"))
        if user.has_perm("subscriptions.downgrade_now"):
            actions.append((url("downgrade"), "Downgrade now"))
        if user.has_perm("subscriptions.extend_period"):
            actions.append((url("extend"), "Extend period"))
        if user.has_perm("invoices.refund_invoice"):
            actions.append((url("refund_invoice"), "Refund an invoice"))
        if user.has_perm("plans.create_custom_plan"):
            actions.append((url("custom_plan"), "Custom plan"))
        return actions

    def change_view(self, request, object_id, form_url="", extra_context=None):
        account = self.get_object(request, object_id)
        extra = {"account_actions": self.account_actions(request, account) if account else []}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ("user", "account", "role", "created_at")
    list_filter = ("role",)
    list_select_related = ("user", "account")


@admin.register(Property)
class PropertyAdmin(ReadOnlyAdmin):
    list_display = ("name", "domain", "account", "tracking_tag", "status", "first_event_at", "created_at",
                    "deleted_at")
    list_filter = ("status", ("first_event_at", DateFieldListFilter), ("created_at", DateFieldListFilter))
    list_select_related = ("account",)
    ordering = ("-id",)

    def own_search(self, queryset, term):
        return queryset.filter(tracking_tag=term) if term.startswith("PR-") else None


@admin.register(Integration)
class IntegrationAdmin(ReadOnlyAdmin):
    list_display = ("kind", "name", "account", "connected_at", "disconnected_at")
    list_filter = ("kind", ("connected_at", DateFieldListFilter))
    list_select_related = ("account",)
    ordering = ("-id",)


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    account_path = "property__account"
    list_display = ("event_id", "property", "occurred_at", "received_at")
    list_filter = (("occurred_at", DateFieldListFilter),)
    list_select_related = ("property",)
    ordering = ("-id",)

    def own_search(self, queryset, term):
        return queryset.filter(Q(event_id=term) | Q(property__account__in=account_ids_matching(term)))


@admin.register(UsageDay)
class UsageDayAdmin(ReadOnlyAdmin):
    list_display = ("day", "account", "property", "sessions")
    list_filter = (("day", DateFieldListFilter),)
    list_select_related = ("account", "property")
    ordering = ("-day", "-id")


@admin.register(UsageMonth)
class UsageMonthAdmin(ReadOnlyAdmin):
    list_display = ("month", "account", "sessions", "sessions_included", "sessions_billed", "alert_80_at",
                    "alert_100_at")
    list_filter = (("month", DateFieldListFilter),)
    list_select_related = ("account",)
    ordering = ("-month", "-id")


@admin.register(LoginEvent)
class LoginEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "user", "account", "ip")
    list_filter = (("at", DateFieldListFilter),)
    list_select_related = ("user", "account")
    ordering = ("-at", "-id")


@admin.register(AccountFlag)
class AccountFlagAdmin(ReadOnlyAdmin):
    """Recorded flags. The live list of identity matches is the trial-abuse page (TRI-2)."""

    list_display = ("created_at", "account", "kind", "matched", "detail", "resolved_at")
    list_filter = ("kind", ("created_at", DateFieldListFilter), ("resolved_at", admin.EmptyFieldListFilter))
    list_select_related = ("account", "matched_account")
    ordering = ("-id",)
    change_list_template = "admin/accounts/accountflag/change_list.html"
    actions = ["resolve_flags"]

    @admin.action(description="Resolve the selected flags (reviewed, no abuse)", permissions=["resolve"])
    def resolve_flags(self, request, queryset):
        reason = f"Reviewed by {request.user.get_username()} in the flag list: no abuse"
        for flag in queryset.filter(resolved_at__isnull=True).select_related("account"):
            flag_resolve(flag, actor=request.user, reason=reason)
        self.message_user(request, "The selected flags are resolved; refund requests are no longer refused for them.")

    def has_resolve_permission(self, request):
        return request.user.has_perm("accounts.suspend_account")

    @admin.display(description="Matches")
    def matched(self, obj):
        return link(obj.matched_account) if obj.matched_account_id else "—"


class AuditActionFilter(admin.SimpleListFilter):
    """Families of actions, from a fixed list: no DISTINCT over the whole log."""

    title = "action"
    parameter_name = "family"
    FAMILIES = ["account", "subscription", "trial", "downgrade", "cancellation", "period", "invoice", "charge",
                "payment", "payment_method", "credit_note", "refund", "restore", "plan", "property", "add_on",
                "notifications"]

    def lookups(self, request, model_admin):
        return [(f, f.replace("_", " ")) for f in self.FAMILIES]

    def queryset(self, request, queryset):
        return queryset.filter(action__startswith=f"{self.value()}.") if self.value() else queryset


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """ACC-3: every state change with actor, time, before/after. Append-only: nothing to edit."""

    list_display = ("created_at", "account", "actor_label", "action", "object_type", "object_id", "short_reason")
    list_filter = (AuditActionFilter, ("created_at", DateFieldListFilter))
    list_select_related = ("account",)
    ordering = ("-created_at", "-id")
    search_help_text = "An action (refund.approved), or: " + BackOfficeAdmin.search_help_text
    fields = ("created_at", "account", "actor", "actor_label", "action", "object_type", "object_id", "reason",
              "before_json", "after_json")
    readonly_fields = fields

    def own_search(self, queryset, term):
        return queryset.filter(action=term) if ACTION_NAME.match(term) and "@" not in term else None

    @admin.display(description="Reason")
    def short_reason(self, obj):
        return obj.reason[:80]

    @admin.display(description="Before")
    def before_json(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.before, indent=2, sort_keys=True))

    @admin.display(description="After")
    def after_json(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.after, indent=2, sort_keys=True))
