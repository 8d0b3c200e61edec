"""The ledger check (OPS-2): the ledger's invariants, proved from its rows every night.

Each check reads the rows of one invariant and answers how many it read and what broke:

- `periods_invoiced_once`: no two issued, not-void invoices of a subscription for the same
  period (first period, trial conversion, renewal, reactivation: the kinds that buy a period);
- `numbers_gapless`: per year, invoice numbers (and credit-note numbers) are 1..the counter's
  last, none missing and none beyond it (INV-1);
- `payments_match`: a paid invoice's succeeded payments add up to its total, and so does its
  amount paid;
- `refunds_match`: a succeeded refund equals its refund credit note, and a payment's refunded
  amount equals its succeeded refunds;
- `credit_balances`: a credit note's remaining is its amount less what invoices used of it (a
  refund note keeps nothing).

`ledger_check` runs them all, records a `LedgerCheck` (the admin shows it, and the index shows the
newest failed one) and, on a breach, e-mails staff (LEDGER_ALERT_EMAILS, else ADMINS, else the
support address). The command `ledger_check` exits non-zero on a breach; the schedule runs it
nightly (`ensure_schedule`). It changes nothing in the ledger: a breach is for people to explain.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Count, DecimalField, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.urls import reverse

from core.clock import clock
from invoices.models import (
    CreditNote,
    CreditNoteKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    Refund,
    RefundStatus,
    Sequence,
)

from .models import LedgerCheck

log = logging.getLogger(__name__)

PERIOD_KINDS = (InvoiceKind.SUBSCRIPTION, InvoiceKind.TRIAL_CONVERSION, InvoiceKind.RENEWAL, InvoiceKind.REACTIVATION)
NIGHT_HOUR_UTC = 3  # the schedule's first run; then every 24 hours
MAX_RECORDED = 500  # breaches kept on the record and in the e-mail; the count is always exact
NOTHING = Value(Decimal("0"), output_field=DecimalField(max_digits=12, decimal_places=2))


@dataclass(frozen=True)
class Breach:
    invariant: str
    subject: str
    detail: str


def periods_invoiced_once() -> tuple[int, list[Breach]]:
    issued = (Invoice.objects.filter(kind__in=PERIOD_KINDS, number__isnull=False, period_start__isnull=False)
              .exclude(status=InvoiceStatus.VOID))
    twice = (issued.values("subscription_id", "period_start").annotate(n=Count("id")).filter(n__gt=1)
             .order_by("subscription_id", "period_start"))
    found = []
    for row in twice:
        numbers = sorted(issued.filter(subscription_id=row["subscription_id"], period_start=row["period_start"])
                         .values_list("number", flat=True))
        found.append(Breach("periods_invoiced_once", f"subscription #{row['subscription_id']}",
                            f"the period from {row['period_start']:%Y-%m-%d %H:%M} UTC is invoiced {row['n']} "
                            f"times: {', '.join(numbers)}"))
    return issued.count(), found


def numbers_gapless() -> tuple[int, list[Breach]]:
    found, read = [], 0
    for series, model, prefix in (("INV", Invoice, ""), ("CN", CreditNote, "CN-")):
        serials = defaultdict(set)
        for number in model.objects.filter(number__isnull=False).values_list("number", flat=True).iterator():
            year, _, serial = number.removeprefix(prefix).partition("-")
            serials[int(year)].add(int(serial))
            read += 1
        last = dict(Sequence.objects.filter(series=series).values_list("year", "last"))
        for year in sorted(set(serials) | set(last)):
            have, top = serials.get(year, set()), last.get(year, 0)
            missing = sorted(set(range(1, top + 1)) - have)
            beyond = sorted(n for n in have if n > top)
            if missing:
                found.append(Breach("numbers_gapless", f"{series} {year}",
                                    f"{len(missing)} number(s) missing below the counter's {top}: "
                                    f"{', '.join(str(n) for n in missing[:20])}"))
            if beyond:
                found.append(Breach("numbers_gapless", f"{series} {year}",
                                    f"{len(beyond)} number(s) beyond the counter's {top}: "
                                    f"{', '.join(str(n) for n in beyond[:20])}"))
    return read, found


def payments_match() -> tuple[int, list[Breach]]:
    paid = Invoice.objects.filter(status=InvoiceStatus.PAID).annotate(
        paid_sum=Coalesce(Sum("payments__amount", filter=Q(payments__status=PaymentStatus.SUCCEEDED)), NOTHING))
    wrong = paid.filter(~Q(paid_sum=F("total")) | ~Q(amount_paid=F("total"))).order_by("pk")
    found = [Breach("payments_match", f"invoice {invoice.number}",
                    f"total {invoice.total} {invoice.currency}, succeeded payments {invoice.paid_sum}, "
                    f"amount paid {invoice.amount_paid}")
             for invoice in wrong[:MAX_RECORDED]]
    return paid.count(), found


def refunds_match() -> tuple[int, list[Breach]]:
    refunds = Refund.objects.filter(status=RefundStatus.SUCCEEDED)
    found = [Breach("refunds_match", f"refund #{refund.pk}", refund_breach(refund))
             for refund in refunds.select_related("credit_note").filter(
                 Q(credit_note__isnull=True) | ~Q(credit_note__amount=F("amount"))).order_by("pk")[:MAX_RECORDED]]
    payments = Payment.objects.filter(Q(refunded_amount__gt=0) | Q(refunds__status=RefundStatus.SUCCEEDED)).distinct()
    summed = Payment.objects.filter(pk__in=payments.values("pk")).annotate(
        refunds_sum=Coalesce(Sum("refunds__amount", filter=Q(refunds__status=RefundStatus.SUCCEEDED)), NOTHING))
    found += [Breach("refunds_match", f"payment #{payment.pk}",
                     f"refunded amount {payment.refunded_amount}, succeeded refunds {payment.refunds_sum}")
              for payment in summed.exclude(refunds_sum=F("refunded_amount")).order_by("pk")[:MAX_RECORDED]]
    return refunds.count() + summed.count(), found


def refund_breach(refund: Refund) -> str:
    note = refund.credit_note
    if note is None:
        return f"refunded {refund.amount} with no refund credit note"
    return f"refunded {refund.amount}, its credit note {note.number} says {note.amount}"


def credit_balances() -> tuple[int, list[Breach]]:
    notes = CreditNote.objects.annotate(used=Coalesce(Sum("applications__amount"), NOTHING))
    wrong = notes.filter(
        (~Q(kind=CreditNoteKind.REFUND) & ~Q(remaining=F("amount") - F("used")))
        | (Q(kind=CreditNoteKind.REFUND) & ~Q(remaining=0))).order_by("pk")
    found = [Breach("credit_balances", f"credit note {note.number}",
                    f"amount {note.amount}, used by invoices {note.used}, remaining {note.remaining} "
                    f"(expected {note.amount - note.used if note.kind != CreditNoteKind.REFUND else Decimal('0.00')})")
             for note in wrong[:MAX_RECORDED]]
    return notes.count(), found


CHECKS = (("periods_invoiced_once", periods_invoiced_once), ("numbers_gapless", numbers_gapless),
          ("payments_match", payments_match), ("refunds_match", refunds_match),
          ("credit_balances", credit_balances))


def alert_recipients() -> list[str]:
    return (list(settings.LEDGER_ALERT_EMAILS) or [address for _name, address in settings.ADMINS]
            or [settings.SELLER_SUPPORT_EMAIL])


def ledger_check(*, now=None) -> LedgerCheck:
    """Run every check, record the outcome and alert staff on a breach."""
    now = clock(now)
    breaches, checked = [], {}
    for name, check in CHECKS:
        checked[name], found = check()
        breaches += found
    record = LedgerCheck.objects.create(ran_at=now, ok=not breaches, checked=checked,
                                        breaches=[asdict(b) for b in breaches[:MAX_RECORDED]])
    if breaches:
        log.error("Ledger check: %d breach(es) of the ledger's invariants; see the admin's ledger check #%d",
                  len(breaches), record.pk)
        ledger_alert(record, len(breaches))
    else:
        log.info("Ledger check: every invariant holds (%s)", checked)
    return record


def ledger_alert(record: LedgerCheck, count: int) -> None:
    """E-mail staff about a failed check. Sent at once (a nightly task, no transaction open); a
    mail server that is down is logged and the record in the admin still shows the breaches."""
    recipients = alert_recipients()
    link = settings.SITE_URL.rstrip("/") + reverse("admin:ops_ledgercheck_change", args=[record.pk])
    lines = [f"The ledger check of {record.ran_at:%Y-%m-%d %H:%M} UTC found {count} breach(es) of the "
             "ledger's invariants (OPS-2). Nothing was changed: each needs a person to explain it.", "",
             *[f"- {b['invariant']}: {b['subject']}: {b['detail']}" for b in record.breaches], "", f"Details: {link}"]
    try:
        send_mail(f"[Prorata] Ledger check: {count} breach(es)", "\n".join(lines), settings.DEFAULT_FROM_EMAIL,
                  recipients)
    except Exception as exc:
        log.error("Ledger check: the alert e-mail to %s was not sent (%s: %s)", recipients, type(exc).__name__, exc)
        record.alerted_to = f"not sent ({type(exc).__name__})"
    else:
        record.alerted_to = ", ".join(recipients)[:500]
    record.save(update_fields=["alerted_to"])


def latest_failure() -> LedgerCheck | None:
    """The newest check, when it found breaches (the admin index's banner)."""
    latest = LedgerCheck.objects.order_by("-ran_at", "-id").first()
    return latest if latest is not None and not latest.ok else None


def ensure_schedule() -> str:
    """The nightly check as a django-q2 schedule (setup_schedules)."""
    from django_q.models import Schedule

    now = clock()
    night = now.replace(hour=NIGHT_HOUR_UTC, minute=0, second=0, microsecond=0)
    Schedule.objects.update_or_create(
        name="ledger-check",
        defaults={"func": "ops.tasks.scheduled_ledger_check", "schedule_type": Schedule.DAILY, "repeats": -1},
        create_defaults={"func": "ops.tasks.scheduled_ledger_check", "schedule_type": Schedule.DAILY, "repeats": -1,
                         "next_run": night if night > now else night + timedelta(days=1)})
    return f"ledger-check: ops.tasks.scheduled_ledger_check daily at {NIGHT_HOUR_UTC:02d}:00 UTC (OPS-2)"
