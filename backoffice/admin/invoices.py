"""Back office for the money ledger. Invoices, payments, credit notes, refunds and their parts are
read-only (INV-2: issued records never change; corrections are credit notes made by the engine).
The refund-request queue shows the trial-usage evidence beside the decision (REF-2..5)."""

from datetime import date

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from accounts.models import AuditEvent
from backoffice.admin_base import CREDIT_NOTE_NUMBER, INVOICE_NUMBER, BackOfficeAdmin, ReadOnlyAdmin
from backoffice.evidence import trial_evidence
from core.admin_base import ReadOnlyInline, change_url, changelist_url, labels, link, links, when
from core.money import format_money
from invoices.exports import tax_csv
from invoices.models import (
    CreditApplication,
    CreditNote,
    Invoice,
    InvoiceKind,
    InvoiceLine,
    InvoiceStatus,
    Payment,
    PaymentMethod,
    Refund,
    RefundRequest,
    RefundRequestStatus,
    SandboxCard,
    SandboxCharge,
    SandboxRefund,
    Sequence,
    TaxRate,
)
from metrics.admin_filters import FigureFilter
from subscriptions import staff, terms
from subscriptions.errors import BillingError

KINDS, STATUSES = labels(InvoiceKind), labels(InvoiceStatus)


def _money(amount, currency):
    return format_money(amount, currency)


class IssuedAsAdmin(ReadOnlyAdmin):
    """What an invoice or a credit note was issued with (INV-6): the seller then, on one line each."""

    readonly_fields = ("seller_as_issued",)

    @admin.display(description="Seller as issued")
    def seller_as_issued(self, obj):
        return " · ".join([obj.issued_by_seller.name, *obj.seller_rows])


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = ("description", "computation", "period_start", "period_end", "quantity", "unit_price", "amount",
              "tax_rate", "tax_amount")
    show_change_link = False


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = ("attempted_at", "amount", "status", "decline_code", "decline_message", "refunded_amount",
              "idempotency_key", "gateway_reference")


class CreditNoteInline(ReadOnlyInline):
    model = CreditNote
    fields = ("number", "kind", "amount", "tax_amount", "remaining", "reason", "issued_at", "issued_by")


class RefundRequestInline(ReadOnlyInline):
    model = RefundRequest
    fields = ("requested_at", "status", "refusal_reason", "decided_by", "decided_at", "decision_reason")


class TaxExportForm(forms.Form):
    month = forms.DateField(label="Month", input_formats=["%Y-%m"], widget=forms.DateInput(attrs={"type": "month"}),
                            help_text="Invoices and credit notes issued in this month (UTC), e.g. 2026-04.")


@admin.register(Invoice)
class InvoiceAdmin(IssuedAsAdmin):
    list_display = ("number_or_draft", "account", "kind_label", "status_label", "total_amount", "tax_label_amount",
                    "tax_treatment_label", "tax_vat_id", "paid_amount", "issued", "paid")
    list_filter = ("status", "kind", "tax_treatment", ("issued_at", DateFieldListFilter),
                   ("paid_at", DateFieldListFilter), ("created_at", DateFieldListFilter), FigureFilter)
    change_list_template = "admin/invoices/invoice/change_list.html"
    list_select_related = ("account",)
    ordering = ("-id",)  # the primary key follows creation and is indexed; created_at alone is not
    extra_lookups = ("subscription__id__exact",)
    change_form_template = "admin/invoices/invoice/change_form.html"
    inlines = [InvoiceLineInline, PaymentInline, CreditNoteInline, RefundRequestInline]
    fieldsets = [
        (None, {"fields": ("number", "account", "subscription", "kind", "status", "currency", "notes")}),
        ("Amounts", {"fields": ("subtotal", "tax_amount", "credit_applied", "total", "amount_paid")}),
        ("Tax (TAX-2, TAX-3), frozen at issue", {"fields": ("tax_treatment", "tax_rate", "tax_country", "tax_vat_id",
                                                             "tax_mention", "prices_include_tax")}),
        ("Dates", {"fields": ("period_start", "period_end", "created_at", "issued_at", "paid_at", "voided_at")}),
        ("Billed to (INV-4)", {"fields": ("bill_to_name", "bill_to_company", "bill_to_address", "bill_to_country",
                                          "bill_to_vat_id")}),
        ("Issued as (INV-6): printed from these, never from the settings now",
         {"fields": ("seller_as_issued", "timezone")}),
        ("Engine", {"fields": ("dedupe_key", "pending_change")}),
    ]

    @admin.display(description="Number", ordering="number")
    def number_or_draft(self, obj):
        return str(obj)

    @admin.display(description="Kind", ordering="kind")
    def kind_label(self, obj):
        return KINDS.get(obj.kind, obj.kind)

    @admin.display(description="Status", ordering="status")
    def status_label(self, obj):
        return STATUSES.get(obj.status, obj.status)

    @admin.display(description="Issued", ordering="issued_at")
    def issued(self, obj):
        return when(obj.issued_at)

    @admin.display(description="Paid on", ordering="paid_at")
    def paid(self, obj):
        return when(obj.paid_at)

    @admin.display(description="Total")
    def total_amount(self, obj):
        return _money(obj.total, obj.currency)

    @admin.display(description="Paid")
    def paid_amount(self, obj):
        return _money(obj.amount_paid, obj.currency)

    @admin.display(description="Tax")
    def tax_label_amount(self, obj):
        return f"{obj.tax_label}: {_money(obj.tax_amount, obj.currency)}" if obj.shows_tax else "—"

    @admin.display(description="Tax treatment", ordering="tax_treatment")
    def tax_treatment_label(self, obj):
        return obj.get_tax_treatment_display()

    def own_search(self, queryset, term):
        return queryset.filter(number=term) if INVOICE_NUMBER.match(term) else None

    def get_urls(self):
        export = path("tax-export/", self.admin_site.admin_view(self.tax_export_view),
                      name="invoices_invoice_tax_export")
        return [export, *super().get_urls()]

    def tax_export_view(self, request):
        """TAX-2: the month's invoices and credit notes as CSV for the accountant."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = TaxExportForm(request.GET or None, initial={"month": timezone.now().strftime("%Y-%m")})
        if form.is_valid():
            month: date = form.cleaned_data["month"]
            response = HttpResponse(tax_csv(month), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="invoices-tax-{month:%Y-%m}.csv"'
            return response
        return TemplateResponse(request, "admin/invoices/invoice/tax_export.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
            "title": "Export invoices and credit notes for the accountant"})

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, object_id)
        actions = []
        if (invoice is not None and invoice.status == InvoiceStatus.PAID
                and request.user.has_perm("invoices.refund_invoice")):
            url = reverse("admin:accounts_account_refund_invoice", args=[invoice.account_id])
            actions.append((f"{url}?invoice={invoice.pk}", "Refund this invoice"))
        return super().change_view(request, object_id, form_url, {"invoice_actions": actions, **(extra_context or {})})


@admin.register(TaxRate)
class TaxRateAdmin(ReadOnlyAdmin):
    """The rates in force come from the tax-rates file (`manage.py load_tax_rates`), never typed here."""

    account_path = None
    search_fields = ("=country",)
    list_display = ("country", "rate", "valid_from")
    list_filter = ("country",)


@admin.register(InvoiceLine)
class InvoiceLineAdmin(ReadOnlyAdmin):
    account_path = "invoice__account"
    list_display = ("invoice", "description", "amount", "period_start", "period_end")
    list_select_related = ("invoice",)
    ordering = ("-id",)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ("attempted_at", "invoice", "account", "payment_amount", "status", "decline_code",
                    "refunded_amount", "gateway")
    list_filter = ("status", "gateway", ("attempted_at", DateFieldListFilter))
    list_select_related = ("invoice", "account")
    ordering = ("-id",)

    @admin.display(description="Amount")
    def payment_amount(self, obj):
        return _money(obj.amount, obj.currency)

    def own_search(self, queryset, term):
        if INVOICE_NUMBER.match(term):
            return queryset.filter(invoice__number=term)
        if term.startswith(("prorata-", "ch_", "pi_")):
            return queryset.filter(idempotency_key=term) | queryset.filter(gateway_reference=term)
        return None


@admin.register(CreditNote)
class CreditNoteAdmin(IssuedAsAdmin):
    exclude = ("seller",)  # shown as "Seller as issued"
    list_display = ("number", "account", "invoice", "kind", "note_amount", "tax_amount", "tax_treatment", "remaining",
                    "issued_at", "issued_by")
    list_filter = ("kind", ("issued_at", DateFieldListFilter), FigureFilter)
    list_select_related = ("account", "invoice", "issued_by")
    ordering = ("-id",)

    @admin.display(description="Amount")
    def note_amount(self, obj):
        return _money(obj.amount, obj.currency)

    def own_search(self, queryset, term):
        if CREDIT_NOTE_NUMBER.match(term):
            return queryset.filter(number=term.upper())
        if INVOICE_NUMBER.match(term):
            return queryset.filter(invoice__number=term)
        return None


@admin.register(CreditApplication)
class CreditApplicationAdmin(ReadOnlyAdmin):
    account_path = "credit_note__account"
    list_display = ("applied_at", "credit_note", "invoice", "amount")
    list_select_related = ("credit_note", "invoice")
    ordering = ("-id",)


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = ("account", "brand", "last4", "exp_month", "exp_year", "fingerprint", "is_default", "created_at",
                    "detached_at")
    list_filter = ("brand", "is_default", ("created_at", DateFieldListFilter))
    list_select_related = ("account",)
    ordering = ("-id",)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    account_path = "payment__account"
    list_display = ("created_at", "payment", "amount", "credit_note", "gateway_reference", "reason")
    list_filter = (("created_at", DateFieldListFilter), FigureFilter)
    list_select_related = ("payment", "credit_note")
    ordering = ("-id",)


@admin.register(Sequence)
class SequenceAdmin(ReadOnlyAdmin):
    account_path = None
    search_fields = ("series",)
    list_display = ("series", "year", "last")


@admin.register(SandboxCard)
class SandboxCardAdmin(ReadOnlyAdmin):
    account_path = None
    search_fields = ("=gateway_id", "=customer")
    list_display = ("gateway_id", "customer", "token", "created_at")


@admin.register(SandboxCharge)
class SandboxChargeAdmin(ReadOnlyAdmin):
    account_path = None
    search_fields = ("=reference", "=idempotency_key")
    list_display = ("reference", "amount", "currency", "succeeded", "decline_code", "refunded_amount", "created_at")
    list_filter = ("succeeded",)


@admin.register(SandboxRefund)
class SandboxRefundAdmin(ReadOnlyAdmin):
    account_path = None
    search_fields = ("=reference", "=idempotency_key")
    list_display = ("reference", "charge", "amount", "created_at")


class RefundDecisionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 50}), max_length=2000,
                             help_text="Why (REF-5): recorded with your name and sent to the owner.")


@admin.register(RefundRequest)
class RefundRequestAdmin(BackOfficeAdmin):
    """The queue of trial refund requests (REF-2..5). Support reviews and may reject; only staff with
    "approve refunds" approve."""

    list_display = ("requested_at", "account", "invoice", "amount", "status", "decided_by", "decided_at")
    list_filter = ("status", ("requested_at", DateFieldListFilter), ("decided_at", DateFieldListFilter))
    list_select_related = ("account", "invoice", "decided_by")
    ordering = ("-id",)
    change_form_template = "admin/invoices/refundrequest/change_form.html"
    fields = ("account", "invoice", "amount", "status", "message", "refusal_reason", "requested_at",
              "requested_by", "decided_at", "decided_by", "decision_reason", "refund", "records")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # the owner asks from the billing page

    def has_change_permission(self, request, obj=None):
        return False  # decided with the buttons on the page (decide_refund)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Amount")
    def amount(self, obj):
        return _money(obj.invoice.total, obj.invoice.currency)

    @admin.display(description="Records")
    def records(self, obj):
        return links([
            (change_url(obj.account), "Account"),
            (changelist_url(AuditEvent, account__id__exact=obj.account_id), "Audit events"),
            (changelist_url(RefundRequest, account__id__exact=obj.account_id), "All requests of this account"),
        ])

    def own_search(self, queryset, term):
        return queryset.filter(invoice__number=term) if INVOICE_NUMBER.match(term) else None

    def get_urls(self):
        return [
            path("<int:object_id>/decide/", self.admin_site.admin_view(self.decide_view),
                 name="invoices_refundrequest_decide"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        extra = {}
        if obj is not None:
            user = request.user
            can_approve = user.has_perm("invoices.approve_refund")
            can_reject = can_approve or user.has_perm("invoices.review_refund")
            pending = obj.status == RefundRequestStatus.PENDING
            extra = {
                "subtitle": f"Refund request #{obj.pk}: {obj.account}, invoice {obj.invoice}",
                "evidence": trial_evidence(obj.account, obj.invoice.subscription),
                "review": terms.refund_review(obj),  # REF-6: later payments and the paid time left
                "pending": pending,
                "can_approve": pending and can_approve,
                "can_reject": pending and can_reject,
                "decision_form": RefundDecisionForm() if pending and can_reject else None,
                "decide_url": reverse("admin:invoices_refundrequest_decide", args=[obj.pk]),
                "charge": _money(obj.invoice.total, obj.invoice.currency),
                "account_url": change_url(obj.account),
                "invoice_link": link(obj.invoice),
            }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def decide_view(self, request, object_id):
        if request.method != "POST":
            return redirect(reverse("admin:invoices_refundrequest_change", args=[object_id]))
        approve = "approve" in request.POST
        needed = ("invoices.approve_refund",) if approve else ("invoices.review_refund", "invoices.approve_refund")
        if not any(request.user.has_perm(p) for p in needed):
            raise PermissionDenied
        req = get_object_or_404(RefundRequest, pk=object_id)
        form = RefundDecisionForm(request.POST)
        if not form.is_valid():
            self.message_user(request, "Give a reason for the decision (REF-5).", messages.ERROR)
            return redirect(change_url(req))
        try:
            staff.decide_refund(req, approve=approve, reason=form.cleaned_data["reason"], actor=request.user)
        except BillingError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            req.refresh_from_db()
            self.message_user(
                request,
                f"Refunded {_money(req.refund.amount, req.invoice.currency)}; the subscription ended and the account "
                "is on Free. The owner is e-mailed." if approve else "Rejected; the owner is e-mailed your reason.",
                messages.SUCCESS,
            )
        return redirect(change_url(req))


# --- dj-stripe's models: for superusers, read-only but for the Stripe setup ----------------------------


class StripeMirrorAdmin:
    """dj-stripe registers ~45 admins for its copies of Stripe's objects (customers, charges,
    invoices, prices...). Prorata's ledger is its own (Invoice, Payment, PaymentMethod above); those
    rows only mirror Stripe, are written by dj-stripe's sync and webhooks, and an edit or an "Add"
    here would change nothing at Stripe and could only make the mirror lie. So: staff never see them
    (Support and Billing managers work from our models, ACC-2), even if someone grants them a
    dj-stripe permission; superusers see them read-only, to debug a webhook, except the two models
    the Stripe setup edits (docs/stripe.md: API keys, webhook endpoints)."""

    editable_models = {"APIKey", "WebhookEndpoint"}

    def _superuser(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def _editable(self, request) -> bool:
        return self._superuser(request) and self.model.__name__ in self.editable_models

    def has_module_permission(self, request):
        return self._superuser(request)

    def has_view_permission(self, request, obj=None):
        return self._superuser(request)

    def has_add_permission(self, request, *args):
        return self._editable(request) and super().has_add_permission(request, *args)

    def has_change_permission(self, request, obj=None):
        return self._editable(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(request) and super().has_delete_permission(request, obj)


def stripe_mirror_guard(site=admin.site) -> list:
    """Put StripeMirrorAdmin in front of every dj-stripe admin registered on `site` (dj-stripe is
    installed before this app, so its admins exist when this module is imported). Returns the models."""
    guarded = []
    for model, model_admin in list(site._registry.items()):
        if model._meta.app_label != "djstripe" or isinstance(model_admin, StripeMirrorAdmin):
            continue
        site.unregister(model)
        site.register(model, type(f"Guarded{type(model_admin).__name__}", (StripeMirrorAdmin, type(model_admin)), {}))
        guarded.append(model)
    return guarded


stripe_mirror_guard()
