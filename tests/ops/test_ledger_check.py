"""OPS-2: the ledger check proves the invariants on a real ledger (tests/metrics/ledger.py, built
through the engine) and catches each kind of breach, alerting staff by e-mail and in the admin."""

from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.db.models import F

from invoices.models import CreditNote, CreditNoteKind, Invoice, InvoiceStatus, Payment, Refund, Sequence
from ops.ledger import ledger_check
from ops.models import LedgerCheck
from tests.factories import UserFactory
from tests.metrics.ledger import build_ledger

pytestmark = pytest.mark.django_db


@pytest.fixture
def ledger(catalog):
    built = build_ledger(catalog)
    mail.outbox.clear()
    return built


def invariants(record) -> set[str]:
    return {breach["invariant"] for breach in record.breaches}


def test_ops2_the_ledger_built_by_the_engine_passes_every_invariant(ledger):
    """OPS-2: no false alarm on a 14-month ledger with trials, upgrades, dunning, refunds and credit."""
    record = ledger_check()
    assert record.ok, record.breaches
    assert all(record.checked[name] > 0 for name in
               ("periods_invoiced_once", "numbers_gapless", "payments_match", "credit_balances", "refunds_match"))
    assert mail.outbox == []
    call_command("ledger_check")  # exits 0


def test_ops2_a_period_invoiced_twice_is_caught(ledger):
    """OPS-2: a second issued invoice for a paid renewal's period is named with both numbers."""
    renewal = Invoice.objects.filter(kind="renewal", status=InvoiceStatus.PAID).order_by("pk").first()
    year = renewal.issued_at.year
    last = Sequence.objects.get(series="INV", year=year)
    Sequence.objects.filter(pk=last.pk).update(last=F("last") + 1)
    Invoice.objects.create(account=renewal.account, subscription=renewal.subscription, kind="renewal",
                           status=InvoiceStatus.OPEN, number=f"{year}-{last.last + 1:06d}", currency=renewal.currency,
                           period_start=renewal.period_start, period_end=renewal.period_end,
                           issued_at=renewal.issued_at, subtotal=renewal.subtotal, total=renewal.total)
    record = ledger_check()
    assert invariants(record) == {"periods_invoiced_once"}
    assert renewal.number in record.breaches[0]["detail"]


def test_ops2_a_gap_in_the_invoice_numbers_is_caught(ledger):
    """OPS-2: a number the counter gave and no invoice holds is a gap."""
    year = Invoice.objects.filter(number__isnull=False).order_by("pk").first().issued_at.year
    Sequence.objects.filter(series="INV", year=year).update(last=F("last") + 1)  # a number given and lost
    record = ledger_check()
    assert invariants(record) == {"numbers_gapless"}
    assert "missing" in record.breaches[0]["detail"]


def test_ops2_payments_that_do_not_add_up_to_a_paid_invoice_are_caught(ledger):
    """OPS-2: a paid invoice whose succeeded payments fall short of its total is named."""
    payment = Payment.objects.filter(status="succeeded", invoice__status=InvoiceStatus.PAID).order_by("pk").first()
    Payment.objects.filter(pk=payment.pk).update(amount=F("amount") - Decimal("1.00"))
    record = ledger_check()
    assert invariants(record) == {"payments_match"}
    assert payment.invoice.number in record.breaches[0]["subject"]


def test_ops2_a_credit_balance_that_differs_from_the_notes_remaining_is_caught(ledger):
    """OPS-2: a credit note whose remaining is not its amount less what invoices used is named."""
    note = CreditNote.objects.exclude(kind=CreditNoteKind.REFUND).order_by("pk").first()
    CreditNote.objects.filter(pk=note.pk).update(remaining=F("remaining") - Decimal("0.01"))
    record = ledger_check()
    assert invariants(record) == {"credit_balances"}
    assert note.number in record.breaches[0]["subject"]


def test_ops2_a_refund_that_differs_from_its_credit_note_is_caught(ledger):
    """OPS-2: a succeeded refund unlike its refund credit note (and its payment's refunded amount) is named."""
    refund = Refund.objects.filter(status="succeeded").order_by("pk").first()
    Refund.objects.filter(pk=refund.pk).update(amount=F("amount") + Decimal("5.00"))
    record = ledger_check()
    assert "refunds_match" in invariants(record) and invariants(record) <= {"refunds_match"}


def test_ops2_a_breach_emails_staff_shows_on_the_admin_index_and_fails_the_command(ledger, client, settings):
    """OPS-2: the alert reaches the support address (LEDGER_ALERT_EMAILS empty, no ADMINS), the
    admin index names the failed check until a passing one, and the command exits non-zero."""
    settings.LEDGER_ALERT_EMAILS = []
    settings.ADMINS = []
    year = Invoice.objects.filter(number__isnull=False).order_by("pk").first().issued_at.year
    Sequence.objects.filter(series="INV", year=year).update(last=F("last") + 1)
    with pytest.raises(CommandError, match="1 breach"):
        call_command("ledger_check")
    assert [m.to for m in mail.outbox] == [[settings.SELLER_SUPPORT_EMAIL]]
    assert "Ledger check: 1 breach" in mail.outbox[0].subject and "numbers_gapless" in mail.outbox[0].body
    record = LedgerCheck.objects.get()
    assert not record.ok and record.alerted_to == settings.SELLER_SUPPORT_EMAIL
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    index = client.get("/admin/").content.decode()
    assert 'id="ledger-alert"' in index and f"/admin/ops/ledgercheck/{record.pk}/change/" in index
    detail = client.get(f"/admin/ops/ledgercheck/{record.pk}/change/").content.decode()
    assert "numbers_gapless" in detail and "missing" in detail
    Sequence.objects.filter(series="INV", year=year).update(last=F("last") - 1)
    call_command("ledger_check")
    assert 'id="ledger-alert"' not in client.get("/admin/").content.decode()


def test_ops2_the_ledger_check_is_scheduled_nightly_by_setup_schedules(db):
    """OPS-2: setup_schedules creates the daily ledger-check schedule, first at 03:00 UTC."""
    from django_q.models import Schedule

    call_command("setup_schedules")
    schedule = Schedule.objects.get(name="ledger-check")
    assert schedule.func == "ops.tasks.scheduled_ledger_check" and schedule.schedule_type == Schedule.DAILY
    assert schedule.next_run.hour == 3
