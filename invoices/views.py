"""Invoices and credit notes on the billing page (INV-3): a list, a detail page and a PDF of each.
Owner and billing roles only (ACC-1); every lookup filters by request.account, so another
account's id is a 404. Drafts (an attempt that was declined, UPG-4) have no number and are not
documents: they are never shown."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.decorators import account_required
from subscriptions import selectors

from .models import CreditNote, Invoice, InvoiceKind
from .pdf import credit_note_pdf, invoice_pdf
from .selectors import issued_invoices


def _render(request, template: str, context: dict):
    context.setdefault("account", request.account)
    context.setdefault("can", selectors.role_flags(request.membership))
    with timezone.override(request.account.zone):
        return render(request, template, context)


def _invoice(request, pk: int) -> Invoice:
    return get_object_or_404(Invoice, pk=pk, account=request.account, number__isnull=False)


def _credit_note(request, pk: int) -> CreditNote:
    return get_object_or_404(CreditNote.objects.select_related("invoice"), pk=pk, account=request.account)


def _pdf(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


@account_required("invoices")
@require_GET
def invoice_list(request):
    account = request.account
    return _render(request, "invoices/list.html", {
        "invoices": issued_invoices(account),  # with what was refunded or credited (Invoice.status_label)
        "credit_notes": CreditNote.objects.filter(account=account).select_related("invoice")
                                          .order_by("-issued_at", "-id"),
    })


@account_required("invoices")
@require_GET
def invoice_detail(request, pk: int):
    invoice = _invoice(request, pk)
    context = {
        "invoice": invoice,
        "lines": list(invoice.lines.all()),
        "payments": list(invoice.payments.select_related("payment_method").order_by("attempted_at", "id")),
        "credit_notes": list(invoice.credit_notes.order_by("issued_at", "id")),
        "can_request_refund": False,
    }
    if invoice.kind == InvoiceKind.TRIAL_CONVERSION and request.membership.can("requests"):
        ok, reason = selectors.refund_offer(invoice, timezone.now())
        context.update({"can_request_refund": ok, "refund_reason": reason, "offer_refund": True})
    return _render(request, "invoices/detail.html", context)


@account_required("invoices")
@require_GET
def invoice_download(request, pk: int):
    invoice = _invoice(request, pk)
    return _pdf(invoice_pdf(invoice), f"invoice-{invoice.number}.pdf")


@account_required("invoices")
@require_GET
def credit_note_detail(request, pk: int):
    return _render(request, "invoices/credit_note.html", {"note": _credit_note(request, pk)})


@account_required("invoices")
@require_GET
def credit_note_download(request, pk: int):
    note = _credit_note(request, pk)
    return _pdf(credit_note_pdf(note), f"credit-note-{note.number}.pdf")
