"""Invoices and credit notes on the billing page (INV-3): a list, a detail page and a PDF of each.
Owner and billing roles only (ACC-1); every lookup filters by request.account, so another
account's id is a 404. Drafts (an attempt that was declined, UPG-4) have no number and are not
documents: they are never shown."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import account_required
from core.money import format_money
from invoices import services as ledger
from invoices.models import CreditNote, Invoice, InvoiceKind, InvoiceStatus
from invoices.pdf import credit_note_pdf, invoice_pdf, span
from invoices.selectors import invoice_status_line, issued_invoices

from . import billing, selectors
from .models import Status


def _render(request, template: str, context: dict, status: int = 200, zone=None):
    """`zone`: a document's frozen calendar (INV-6); other pages read the account's zone (D-5)."""
    context.setdefault("account", request.account)
    context.setdefault("can", selectors.role_flags(request.membership))
    with timezone.override(zone or request.account.zone):
        return render(request, template, context, status=status)


def _invoice(request, pk: int) -> Invoice:
    return get_object_or_404(Invoice, pk=pk, account=request.account, number__isnull=False)


def _credit_note(request, pk: int) -> CreditNote:
    return get_object_or_404(CreditNote.objects.select_related("invoice"), pk=pk, account=request.account)


def _pdf(content: bytes, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "private, no-store"
    return response


INVOICES_PER_PAGE = 25


@account_required("invoices")
@require_GET
def invoice_list(request):
    """The account's invoices and credit notes, newest first, a page of each at a time (an account
    with years of monthly invoices and overage must not render them all)."""
    account = request.account
    invoices = Paginator(issued_invoices(account), INVOICES_PER_PAGE).get_page(request.GET.get("page"))
    notes = CreditNote.objects.filter(account=account).select_related("invoice").order_by("-issued_at", "-id")
    notes = Paginator(notes, INVOICES_PER_PAGE).get_page(request.GET.get("notes"))
    return _render(request, "invoices/list.html", {"invoices": invoices, "credit_notes": notes})


def _detail_context(request, invoice: Invoice) -> dict:
    context = {
        "invoice": invoice,
        "status": invoice_status_line(invoice),  # the PDF prints the same line (INV-6)
        "lines": [(line, span(line.period_start, line.period_end, invoice.zone)) for line in invoice.lines.all()],
        "payments": list(invoice.payments.select_related("payment_method").order_by("attempted_at", "id")),
        "credit_notes": list(invoice.credit_notes.order_by("issued_at", "id")),
        "can_request_refund": False,
    }
    if invoice.kind == InvoiceKind.TRIAL_CONVERSION and request.membership.can("requests"):
        ok, reason = selectors.refund_offer(invoice, timezone.now())
        context.update({"can_request_refund": ok, "refund_reason": reason, "offer_refund": True})
    if invoice.status == InvoiceStatus.OPEN and request.membership.can("payment_method"):  # PAY-5
        context.update({"offer_pay_now": True, "pay_now_refusal": selectors.pay_now_refusal(invoice),
                        "payment_method": ledger.default_payment_method(request.account)})
    return context


@account_required("invoices")
@require_GET
def invoice_detail(request, pk: int):
    invoice = _invoice(request, pk)
    return _render(request, "invoices/detail.html", _detail_context(request, invoice), zone=invoice.zone)


@account_required("payment_method")
@require_POST
def invoice_pay(request, pk: int):
    """PAY-5: pay this open invoice now with the card on file (owner and billing roles, ACC-1)."""
    invoice = _invoice(request, pk)
    before = selectors.subscription_current(request.account)
    try:
        paid = billing.invoice_pay_now(invoice, actor=request.user)
    except billing.PaymentDeclined as exc:
        context = _detail_context(request, Invoice.objects.get(pk=invoice.pk))
        context["declined"] = str(exc)
        return _render(request, "invoices/detail.html", context, status=402, zone=invoice.zone)
    except billing.PaymentPending as exc:
        messages.info(request, str(exc))
    except billing.BillingError as exc:
        messages.error(request, str(exc))
    else:
        money = format_money(paid.amount_paid, paid.currency)
        text = f"Paid {money}: invoice {paid.number} is paid. A receipt is on its way."
        after = selectors.subscription_current(request.account)
        if before is not None and before.status == Status.PAST_DUE and after.status == Status.ACTIVE:
            text += " Nothing is owed any more: your subscription is in good standing again."
        messages.success(request, text)
    return redirect("invoices:detail", pk=invoice.pk)


@account_required("invoices")
@require_GET
def invoice_download(request, pk: int):
    invoice = _invoice(request, pk)
    return _pdf(invoice_pdf(invoice), f"invoice-{invoice.number}.pdf")


@account_required("invoices")
@require_GET
def credit_note_detail(request, pk: int):
    note = _credit_note(request, pk)
    return _render(request, "invoices/credit_note.html", {"note": note}, zone=note.zone)


@account_required("invoices")
@require_GET
def credit_note_download(request, pk: int):
    note = _credit_note(request, pk)
    return _pdf(credit_note_pdf(note), f"credit-note-{note.number}.pdf")
