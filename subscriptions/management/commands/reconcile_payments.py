"""`manage.py reconcile_payments [--since DATE] [--now MOMENT]`: compare our payments with the
gateway's and settle the differences through the billing engine, printing each change.

1. Payments whose outcome is unknown (a lost response, a crash, a missed webhook) are settled
   by asking the gateway about their idempotency key (PAY-2, `charges.payments_settle_unknown`).
   Refunds whose outcome is unknown are sent again with their key, which the gateway never refunds
   twice, and the refund requests they carry out are finished (`staff.refunds_settle`).
2. With Stripe: refunds made at Stripe that we have not recorded are recorded
   (`charges.payment_record_external_refund`); a disputed charge without a flag is flagged; a
   card removed at Stripe is marked detached (`billing.payment_method_detached`); a payment we
   hold as failed that Stripe shows as paid is reported for staff (the engine never turns a
   failure into a success by itself).

Scheduled daily by invoices.stripe_schedules; safe to run any number of times.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from invoices.gateways import GatewayError, get_gateway
from invoices.models import Payment, PaymentMethod, PaymentStatus
from subscriptions import billing, charges, staff
from subscriptions.stripe_webhooks import dispute_flag, record_external_refunds

DEFAULT_DAYS = 7


@dataclass
class Reconciliation:
    changes: list[str] = field(default_factory=list)  # what was changed in our ledger
    attention: list[str] = field(default_factory=list)  # differences only staff can resolve
    errors: list[str] = field(default_factory=list)  # what could not be checked this time


def reconcile_payments(*, since: datetime, now: datetime | None = None) -> Reconciliation:
    now = now or timezone.now()
    report = Reconciliation()
    for payment in charges.payments_settle_unknown(since=since, now=now):
        outcome = payment.status if payment.status != PaymentStatus.FAILED else f"failed ({payment.decline_code})"
        report.changes.append(
            f"payment {payment.pk} ({payment.idempotency_key}, {payment.amount} {payment.currency}) "
            f"settled: {outcome}"
        )
    for refund in staff.refunds_settle(now=now):
        outcome = refund.status if not refund.failure_message else f"failed ({refund.failure_message})"
        report.changes.append(f"refund {refund.pk} ({refund.idempotency_key}, {refund.amount} of payment "
                              f"{refund.payment_id}) settled: {outcome}")
    if settings.PAYMENT_GATEWAY == "stripe" or Payment.objects.filter(gateway="stripe").exists():
        _reconcile_stripe(since, now, report)
    return report


def _reconcile_stripe(since: datetime, now: datetime, report: Reconciliation) -> None:
    gateway = get_gateway("stripe")
    payments = (Payment.objects.filter(gateway="stripe", attempted_at__gte=since)
                .exclude(gateway_reference="").select_related("account").order_by("id"))
    for payment in payments:
        try:
            if payment.status == PaymentStatus.SUCCEEDED:
                for refund in record_external_refunds(payment):
                    report.changes.append(
                        f"payment {payment.pk}: refund {refund.gateway_reference} of {refund.amount} "
                        f"{payment.currency} made at Stripe recorded (credit note {refund.credit_note})"
                    )
                charge = gateway.retrieve_intent(payment.gateway_reference).get("latest_charge") or {}
                if isinstance(charge, dict) and charge.get("disputed"):
                    for dispute in gateway.list_disputes(charge["id"]):
                        _flag, created = dispute_flag(payment.account, dispute)
                        if created:
                            report.changes.append(f"account {payment.account_id}: dispute {dispute['id']} flagged")
            elif payment.status == PaymentStatus.FAILED:
                intent = gateway.retrieve_intent(payment.gateway_reference)
                if intent.get("status") == "succeeded":
                    report.attention.append(
                        f"payment {payment.pk} ({payment.idempotency_key}) is failed here but Stripe shows "
                        f"{payment.gateway_reference} paid: refund it at Stripe or apply it by hand"
                    )
        except GatewayError as exc:
            report.errors.append(f"payment {payment.pk}: {exc}")

    cards = PaymentMethod.objects.filter(gateway="stripe", detached_at__isnull=True).select_related("account")
    by_customer: dict[str, list[PaymentMethod]] = {}
    for method in cards:
        if method.account.gateway_customer_id:
            by_customer.setdefault(method.account.gateway_customer_id, []).append(method)
    for customer_id, methods in by_customer.items():
        try:
            attached = gateway.list_card_ids(customer_id)
        except GatewayError as exc:
            report.errors.append(f"customer {customer_id}: {exc}")
            continue
        for method in methods:
            if method.gateway_id not in attached:
                billing.payment_method_detached(method.account, method.gateway_id, now=now)
                report.changes.append(
                    f"account {method.account_id}: card {method} ({method.gateway_id}) no longer at Stripe, "
                    "marked detached"
                )


def _moment(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} {value!r} is not an ISO-8601 date or time, e.g. 2026-12-01") from None
    return moment.replace(tzinfo=UTC) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = "Compare our payments with the payment gateway's and settle the differences through the engine."

    def add_arguments(self, parser):
        parser.add_argument(
            "--since", help=f"ISO-8601 date or time: check payments from then (default: {DEFAULT_DAYS} days ago)"
        )
        parser.add_argument("--now", help="ISO-8601 moment to run at (default: the current time)")

    def handle(self, *args, since=None, now=None, **options):
        moment = _moment(now, "--now") if now else timezone.now()
        start = _moment(since, "--since") if since else moment - timedelta(days=DEFAULT_DAYS)
        report = reconcile_payments(since=start, now=moment)
        self.stdout.write(f"Reconciling payments since {start:%Y-%m-%d %H:%M} UTC ({settings.PAYMENT_GATEWAY}).")
        for line in report.changes:
            self.stdout.write(f"changed: {line}")
        for line in report.attention:
            self.stdout.write(self.style.WARNING(f"needs staff: {line}"))
        for line in report.errors:
            self.stderr.write(f"not checked: {line}")
        self.stdout.write(
            f"{len(report.changes)} change(s), {len(report.attention)} for staff, {len(report.errors)} not checked."
        )
        if report.errors:
            raise CommandError("Some payments could not be checked; run again when the gateway answers.")
