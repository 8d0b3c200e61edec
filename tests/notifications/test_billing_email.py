"""PAY-5: invoices and receipts also go to the account's billing e-mail address."""

from accounts.models import Account
from notifications.kinds import NOTIFICATIONS
from notifications.services import recipients_for
from tests.factories import AccountFactory


def test_pay5_invoices_and_receipts_also_go_to_the_billing_email_address(catalog):
    account = AccountFactory()
    owner = account.owner.email
    Account.objects.filter(pk=account.pk).update(billing_email="Accounts@Acme.example")
    account.refresh_from_db()
    for code in ("payment.succeeded", "subscription.started", "credit_note.issued", "payment.failed"):
        assert recipients_for(NOTIFICATIONS[code], account) == [owner, "Accounts@Acme.example"], code
    for code in ("trial.started", "cancellation.scheduled", "usage.alert", "product.news"):  # not invoices
        assert recipients_for(NOTIFICATIONS[code], account) == [owner], code


def test_pay5_without_a_billing_email_address_the_owner_alone_is_written_to(catalog):
    account = AccountFactory()
    assert recipients_for(NOTIFICATIONS["payment.succeeded"], account) == [account.owner.email]


def test_pay5_the_billing_email_address_is_written_to_once(catalog):
    account = AccountFactory()
    Account.objects.filter(pk=account.pk).update(billing_email=account.owner.email.upper())
    account.refresh_from_db()
    assert recipients_for(NOTIFICATIONS["payment.succeeded"], account) == [account.owner.email]


def test_pay5_a_receipt_is_logged_and_sent_to_the_billing_email_address(catalog, django_capture_on_commit_callbacks):
    from datetime import UTC, datetime

    from django.core import mail

    from notifications.models import EmailLog
    from subscriptions import billing

    now = datetime(2026, 4, 1, tzinfo=UTC)
    account = AccountFactory()
    Account.objects.filter(pk=account.pk).update(billing_email="accounts@acme.example", trial_used_at=now)
    account.refresh_from_db()
    billing.set_payment_method(account, "pm_card_visa", now=now)
    with django_capture_on_commit_callbacks(execute=True):
        billing.subscribe(account, "personal", now=now)
    receipt = EmailLog.objects.get(kind="subscription.started", recipient="accounts@acme.example")
    assert receipt.subject.startswith("Receipt")
    assert any(m.to == ["accounts@acme.example"] and m.attachments for m in mail.outbox)  # with the invoice PDF
