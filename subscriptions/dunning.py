"""Collecting what a past-due or suspended account owes (DUN-2..4): the scheduled retries, and the
retry or reactivation a new card triggers. The outcomes themselves (past due, suspension, paid up)
are lifecycle's; the money moves through charges.
"""

from django.db import transaction

from invoices import services as ledger
from invoices.models import Invoice, InvoiceKind, InvoiceStatus, Payment, PaymentStatus

from . import charges, lifecycle, terms
from .changes import ChangeKind, PendingChange
from .errors import PaymentDeclined
from .locks import invoices_lock, subscription_claim, subscription_lock
from .models import Status, Subscription
from .selectors import due_retries


def open_invoices(account) -> list[Invoice]:
    """Lock the account's open invoices with no attempt in flight, oldest first. The caller holds
    the account and its subscription."""
    invoices = invoices_lock(Invoice.objects.filter(account=account, status=InvoiceStatus.OPEN)
                             .exclude(payments__status=PaymentStatus.UNKNOWN))
    return sorted(invoices, key=lambda invoice: (invoice.issued_at, invoice.pk))


def retry(pk, now) -> bool:
    """DUN-2: retry the open invoices of a past-due subscription (a billing-run step)."""
    payments = []
    with transaction.atomic():
        sub = subscription_claim(pk, due_retries(now))
        if sub is None:
            return False
        sub.next_retry_at = None  # claimed: the outcome sets the next one
        sub.save(update_fields=["next_retry_at", "updated_at"])
        method = ledger.default_payment_method(sub.account)
        for invoice in open_invoices(sub.account):
            if method is None:
                lifecycle.dunning_failed(invoice, sub, "No payment method on file.", now, emit=True)
                break
            payments.append(ledger.payment_begin(invoice, method, now=now))
    for payment in payments:
        charges.payment_send_and_settle(payment, now)
    return True


def collect_after_new_payment_method(account, *, actor, now) -> None:
    """DUN-4: past due → retry the open invoices at once. DUN-3: suspended for non-payment → void
    the open renewal and charge a full new period from today; success reactivates."""
    sub = Subscription.objects.current().filter(account=account).values_list("pk", "status").first()
    if sub is None:
        return
    if sub[1] == Status.PAST_DUE:
        # Each attempt is the customer's, like "pay now" (PAY-5): recorded as the subscription's
        # charge in flight, so a decline is told at once and leaves the run's retry schedule,
        # count and e-mails as they were (DUN-4 in docs/policy-decisions.md). One invoice at a
        # time (one charge in flight), oldest first; the first decline stops the rest.
        tried = set()
        while True:
            with transaction.atomic():
                locked = subscription_lock(sub[0])
                if locked.status != Status.PAST_DUE or Payment.objects.filter(
                        pk=locked.charge_in_flight_id, status=PaymentStatus.UNKNOWN).exists():
                    return
                invoice = next((i for i in open_invoices(account) if i.pk not in tried), None)
                if invoice is None:
                    return
                tried.add(invoice.pk)
                payment = ledger.payment_begin(invoice, ledger.default_payment_method(account), now=now)
                Subscription.objects.filter(pk=invoice.subscription_id or locked.pk).update(
                    charge_in_flight=payment, updated_at=now)
            result = ledger.payment_send(payment)
            if result is None:
                return  # the bank's answer was lost: reconcile settles it, as the customer's attempt
            try:
                charges.payment_settle(payment, result, actor=actor, now=now)
            except PaymentDeclined as declined:
                payment.refresh_from_db()
                raise PaymentDeclined(f"Your new card was saved, but the retry failed: {payment.decline_message}",
                                      declined.code) from declined
    if sub[1] == Status.SUSPENDED:
        with transaction.atomic():
            locked = subscription_lock(sub[0])
            lifecycle.renewals_void_open(locked, now=now)
            new = terms.reactivation_terms(locked, now)
            step = charges.charge_begin(locked, kind=InvoiceKind.REACTIVATION, lines=new.lines(),
                                        pending=PendingChange(ChangeKind.REACTIVATE, start=new.start,
                                                              timezone=new.timezone),
                                        currency=new.plan.currency, period=(new.start, new.end), actor=actor,
                                        now=now)
        charges.charge_finish(step, actor=actor, now=now)
