"""Set-wise renewals (REN-1..3) and period roll-overs: the billing run renews a chunk of due
subscriptions in a fixed number of statements, not ~40 per subscription.

The same three steps as one renewal (`scheduler.renew`), each for the whole chunk:

1. claim (`SELECT … FOR UPDATE SKIP LOCKED`, or the run lock on SQLite), skip the periods already
   invoiced (the `dedupe_key`), issue the invoices (numbers taken last, in one step), the audit
   rows and the `unknown` payments, and commit;
2. charge, outside any transaction (`charge_many` where the gateway has it);
3. record the succeeded charges, mark their invoices paid and announce the receipts through the
   events outbox, in one transaction.

What is not plain goes through the one-by-one path, which knows every case: an account holding
credit (DWN-4 applies it), no payment method (DUN-1), a zero total, a declined or unknown charge
(dunning, PAY-2), a subscription past due by the time the charge succeeded. A chunk whose insert
hits another worker's invoice (IntegrityError on the dedupe key) is redone one by one.

Roll-overs at the period end (`rollover_chunk`) are set-wise when nothing changes but the period:
no cancellation, no scheduled plan, cycle or add-on change, and no more active properties than the
plan allows; the rest (CAN-2, DWN-3, ADD-2, ADD-3) go through `scheduler.rollover`.
"""

import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F

from accounts.models import AuditEvent, Property, PropertyStatus
from accounts.services import audit_row
from invoices import services as ledger
from invoices.models import Invoice, InvoiceKind, InvoiceStatus, PaymentMethod

from . import events
from .models import Status, Subscription
from .sql import update_from_values

log = logging.getLogger(__name__)

def renew_chunk(ids: list[int], now, report) -> None:
    """Renew the due subscriptions among `ids`; counts and failures go to `report`."""
    size = settings.BILLING_RUN_BATCH  # subscriptions per transaction: bounds the time rows stay locked
    for offset in range(0, len(ids), size):
        part = ids[offset:offset + size]
        try:
            pairs, one_by_one = _issue(part, now)
        except IntegrityError:  # another worker invoiced one of these first: let the claims sort it out
            pairs, one_by_one = [], part
        report.add("renewals", len(pairs))
        _collect(pairs, now, report)
        _each("renewals", one_by_one, now, report)


def rollover_chunk(ids: list[int], now, report) -> None:
    """Start the next period of the due subscriptions among `ids` (see the module's docstring)."""
    size = settings.BILLING_RUN_BATCH
    for offset in range(0, len(ids), size):
        rolled, one_by_one = _roll(ids[offset:offset + size], now)
        report.add("rollovers", rolled)
        _each("rollovers", one_by_one, now, report)


def _each(step, ids, now, report) -> None:
    from .scheduler import HANDLERS

    for pk in ids:
        try:
            if HANDLERS[step](pk, now):
                report.add(step)
        except Exception as exc:  # one bad subscription never stops the run; it is reported
            log.exception("billing run: %s failed for subscription %s", step, pk)
            report.failures.append((step, pk, f"{type(exc).__name__}: {exc}"))


def _roll(ids, now):
    """Returns how many rolled over here and the ids to roll over one by one."""
    from .billing import _limit, snapshot
    from .scheduler import _next_terms, due_rollovers, renewal_key

    with transaction.atomic():
        subs = list(due_rollovers(now).filter(pk__in=ids).select_for_update(skip_locked=True, of=("self",))
                    .select_related("plan", "account", "scheduled_plan").order_by("pk"))
        terms = {sub.pk: _next_terms(sub) for sub in subs}
        plain, one_by_one = [], []
        for sub in subs:  # only the period changes: anything else is rolled over one by one
            if (sub.cancel_at_period_end or sub.scheduled_plan_id or sub.scheduled_cycle
                    or terms[sub.pk][2] != sub.extra_properties):
                one_by_one.append(sub.pk)
            else:
                plain.append(sub)
        keys = {sub.pk: renewal_key(sub, terms[sub.pk][5]) for sub in plain}
        invoiced = set(Invoice.objects.filter(dedupe_key__in=keys.values()).exclude(status=InvoiceStatus.VOID)
                       .values_list("dedupe_key", flat=True))
        plain = [sub for sub in plain if keys[sub.pk] in invoiced]  # not renewed yet: a later run
        active = dict(Property.objects.live().filter(account_id__in=[sub.account_id for sub in plain],
                                                     status=PropertyStatus.ACTIVE)
                      .values("account_id").annotate(n=Count("id")).values_list("account_id", "n"))
        over = {sub.pk for sub in plain if (limit := _limit(sub.plan, sub.extra_properties)) is not None
                and active.get(sub.account_id, 0) > limit}
        one_by_one += sorted(over)
        plain = [sub for sub in plain if sub.pk not in over]
        rows, audits = [], []
        for sub in plain:
            before = snapshot(sub)
            plan, cycle, _extra, anchor, index, start, end = terms[sub.pk]
            sub.anchor_at, sub.period_index = anchor, index
            sub.current_period_start, sub.current_period_end = start, end
            sub.current_price, sub.scheduled_extra_properties = plan.price_for(cycle), None
            rows.append((sub.pk, anchor, index, start, end, sub.current_price))
            audits.append(audit_row(account=sub.account, actor=None, action="period.started", obj=sub,
                                    before=before, after=snapshot(sub), now=now))
        update_from_values(Subscription, {"anchor_at": "datetime", "period_index": "int",
                                          "current_period_start": "datetime", "current_period_end": "datetime",
                                          "current_price": "decimal"}, rows,
                           constants={"scheduled_extra_properties": None, "updated_at": now})
        AuditEvent.objects.bulk_create(audits)
    return len(plain), one_by_one


def _issue(ids, now):
    """Step 1. Returns the (payment, subscription) pairs to collect and the ids to renew one by one."""
    from .scheduler import _next_terms, due_renewals, renewal_key, renewal_lines

    with transaction.atomic():
        subs = list(due_renewals(now).filter(pk__in=ids).select_for_update(skip_locked=True, of=("self",))
                    .select_related("plan", "account", "scheduled_plan").order_by("pk"))
        terms = {sub.pk: _next_terms(sub) for sub in subs}
        keys = {sub.pk: renewal_key(sub, terms[sub.pk][5]) for sub in subs}
        invoiced = set(Invoice.objects.filter(dedupe_key__in=keys.values()).values_list("dedupe_key", flat=True))
        done_before = [sub.pk for sub in subs if keys[sub.pk] in invoiced]
        subs = [sub for sub in subs if keys[sub.pk] not in invoiced]
        account_ids = [sub.account_id for sub in subs]
        with_credit = ledger.accounts_with_credit(account_ids)
        methods = {method.account_id: method for method in PaymentMethod.objects.filter(
            account_id__in=account_ids, is_default=True, detached_at__isnull=True)}
        drafts, plain, one_by_one = [], [], []
        for sub in subs:
            plan, cycle, extra, _anchor, _index, start, end = terms[sub.pk]
            lines = renewal_lines(plan, cycle, extra, start, end)
            total = sum(line.amount for line in lines)
            if sub.account_id in with_credit or sub.account_id not in methods or total <= 0:
                one_by_one.append(sub.pk)
                continue
            plain.append(sub)
            drafts.append(ledger.Draft(account=sub.account, subscription=sub, kind=InvoiceKind.RENEWAL, lines=lines,
                                       currency=sub.plan.currency, period_start=start, period_end=end,
                                       dedupe_key=keys[sub.pk]))
        invoices = ledger.invoices_issue_many(drafts, now=now)
        Subscription.objects.filter(pk__in=done_before + [sub.pk for sub in plain]).update(
            renewal_invoiced_for=F("current_period_end"))  # not selected again until the next period
        AuditEvent.objects.bulk_create(
            audit_row(account=invoice.account, actor=None, action="invoice.issued", obj=invoice,
                      after={"number": invoice.number, "kind": invoice.kind, "total": str(invoice.total)}, now=now)
            for invoice in invoices
        )
        payments = ledger.payments_begin_many([(invoice, methods[invoice.account_id]) for invoice in invoices],
                                              now=now)
    return list(zip(payments, plain, strict=True)), one_by_one


def _collect(pairs, now, report) -> None:
    """Steps 2 and 3 for (payment, subscription) pairs."""
    from .billing import payment_settle
    from .scheduler import _collected

    if not pairs:
        return
    payments = [payment for payment, _sub in pairs]
    try:
        results = ledger.payments_send_many(payments)
    except Exception:  # e.g. a gateway error on the batch: send them one at a time
        log.exception("billing run: batch charge failed; charging one at a time")
        results = [_send_one(payment, sub, report) for payment, sub in pairs]
    succeeded = [(payment, result) for payment, result in zip(payments, results, strict=True)
                 if result is not None and result.succeeded]
    sub_of = {payment.pk: sub for payment, sub in pairs}
    with transaction.atomic():
        settled = ledger.payments_record_succeeded(succeeded, now=now)
        past_due = set(Subscription.objects.filter(pk__in=[sub_of[p.pk].pk for p in settled],
                                                   status=Status.PAST_DUE).values_list("pk", flat=True))
        receipts = []
        for payment in settled:
            sub = sub_of[payment.pk]
            if sub.pk in past_due:  # paid up while past due: the one-by-one outcome (and its receipt)
                _collected(Invoice.objects.get(pk=payment.invoice_id), payment,
                           Subscription.objects.select_for_update(of=("self",)).get(pk=sub.pk), now)
            else:
                receipts.append((payment.account_id, {"invoice_id": payment.invoice_id, "payment_id": payment.pk,
                                                       "amount": str(payment.amount)}))
        events.emit_many("payment.succeeded", receipts, now=now)
    for (payment, sub), result in zip(pairs, results, strict=True):
        if result is None:  # no answer: ask the gateway about the key, as `payment_send` does (PAY-2)
            result = ledger.payment_lookup(payment, unseen_means_not_sent=False)
            if result is None:
                continue  # still unknown: the next run settles it
        elif result.succeeded:
            continue
        try:
            payment_settle(payment, result, now=now)  # a decline starts dunning (DUN-1)
        except Exception as exc:
            log.exception("billing run: settling payment %s failed", payment.pk)
            report.failures.append(("renewals", sub.pk, f"{type(exc).__name__}: {exc}"))


def _send_one(payment, sub, report):
    try:
        return ledger.payment_send(payment)
    except Exception as exc:
        report.failures.append(("renewals", sub.pk, f"{type(exc).__name__}: {exc}"))
        return None


CHUNK_HANDLERS = {"renewals": renew_chunk, "rollovers": rollover_chunk}  # scheduler.run_chunk's set-wise steps
