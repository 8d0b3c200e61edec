"""Requests staff decide (REF-2, REF-3, UPG-3): a trial-conversion refund and forfeited days
restored. Public through `subscriptions.billing`; staff's decisions are in `subscriptions.staff`.
"""

from django.db import IntegrityError, transaction

from accounts.audit import audit
from invoices.models import RefundRequest, RefundRequestStatus

from . import terms
from .errors import NotEligible
from .locks import invoice_lock, subscription_lock_current
from .models import RestoreRequest

# --- requests staff decide (REF-2, REF-3, UPG-3) -----------------------------------------------------------


def request_refund(invoice, *, message: str = "", actor=None, now=None) -> RefundRequest:
    """The owner asks for the trial-conversion charge back (REF-2). An ineligible request is kept,
    refused at once with its reason (REF-3), and NotEligible is raised with that reason."""
    now = terms.clock(now)
    with transaction.atomic():
        invoice = invoice_lock(invoice.pk)
        refusal = terms.refund_refusal(invoice, now)
        request = RefundRequest.objects.create(
            account=invoice.account, invoice=invoice, message=(message or "").strip()[:5000], requested_by=actor,
            requested_at=now, status=RefundRequestStatus.REFUSED if refusal else RefundRequestStatus.PENDING,
            refusal_reason=refusal or "",
        )
        audit(account=invoice.account, actor=actor, action="refund.refused" if refusal else "refund.requested",
              obj=request, after={"invoice": invoice.number, "amount": str(invoice.total), "status": request.status},
              reason=refusal or request.message, now=now)
    if refusal:  # raised after the commit: the refused request stays on record
        exc = NotEligible(refusal)
        exc.refund_request = request
        raise exc
    return request


def request_restore_days(subscription, *, actor=None, now=None) -> RestoreRequest:
    """UPG-3: the owner asks for the forfeited monthly days; staff decide (staff.decide_restore)."""
    now = terms.clock(now)
    try:
        with transaction.atomic():
            sub = subscription_lock_current(subscription)
            refusal = terms.restore_refusal(sub, now)
            if refusal:
                raise NotEligible(refusal)
            invoice = terms.upgrade_invoice(sub)
            request = RestoreRequest.objects.create(
                subscription=sub, invoice=invoice, days=terms.forfeited_days(invoice),
                upgraded_on=terms.upgraded_on(sub, invoice), requested_at=now, requested_by=actor,
            )
            audit(account=sub.account, actor=actor, action="restore.requested", obj=request,
                  after={"days": request.days, "invoice": invoice.number, "status": request.status}, now=now)
            return request
    except IntegrityError:  # a concurrent request for the same upgrade won
        raise NotEligible("You already asked for these days.") from None
