"""NOT-3: every e-mail is logged; sending is asynchronous and retried; a failed send never undoes
or blocks the billing action."""

from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from invoices.models import Invoice
from notifications import services
from notifications.models import EmailLog, EmailStatus
from notifications.tasks import EmailNotSent, email_send
from subscriptions import billing
from subscriptions.models import Status

from .conftest import BILLING, OWNER, at, kind_of

pytestmark = pytest.mark.django_db
FAILING = "tests.notifications.backends.FailingBackend"


def test_not3_every_email_is_logged_with_recipient_kind_subject_related_row_and_times(account, committed):
    with committed():
        billing.subscribe(account, "personal", now=at("2026-04-01"))

    invoice = Invoice.objects.get(account=account)
    logs = list(EmailLog.objects.order_by("recipient"))
    assert [(e.recipient, e.kind, e.status, e.attempts) for e in logs] == [
        (BILLING, "subscription.started", "sent", 1), (OWNER, "subscription.started", "sent", 1),
    ]
    for entry in logs:
        assert entry.account_id == account.pk
        assert (entry.related_type, entry.related_id) == ("invoice", str(invoice.pk))
        assert entry.subject == mail.outbox[0].subject
        assert entry.queued_at <= entry.sent_at
        assert "$14.00" in entry.body_text and "$14.00" in entry.body_html


def test_not3_failing_backend_leaves_the_action_done_the_log_failed_and_a_retry_sends(account, committed,
                                                                                       settings):
    settings.EMAIL_BACKEND = FAILING

    with committed():
        sub = billing.subscribe(account, "personal", now=at("2026-04-01"))  # does not raise

    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE and Invoice.objects.get(account=account).status == "paid"
    logs = list(EmailLog.objects.all())
    assert len(logs) == 2 and {e.status for e in logs} == {EmailStatus.FAILED}
    failed = logs[0]
    assert failed.error == "SMTPServerDisconnected: Connection unexpectedly closed"
    assert failed.attempts == 1
    assert failed.next_attempt_at == failed.last_attempt_at + timedelta(minutes=5)
    assert mail.outbox == []

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    too_early = failed.last_attempt_at + timedelta(minutes=4)
    call_command("send_pending_emails", "--now", too_early.isoformat())
    assert mail.outbox == []

    call_command("send_pending_emails", "--now", (failed.next_attempt_at + timedelta(seconds=1)).isoformat())

    assert sorted(m.to[0] for m in mail.outbox) == [BILLING, OWNER]
    assert {kind_of(m) for m in mail.outbox} == {"subscription.started"}
    assert all(m.attachments for m in mail.outbox)  # the receipt PDF is rebuilt for the retry
    assert {(e.status, e.attempts, e.error) for e in EmailLog.objects.all()} == {(EmailStatus.SENT, 2, "")}


def test_not3_backoff_grows_then_gives_up(account, committed, settings):
    settings.EMAIL_BACKEND = FAILING
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))
    entry = EmailLog.objects.get(recipient=OWNER)
    gaps = []
    while entry.next_attempt_at is not None:
        gaps.append(round((entry.next_attempt_at - entry.last_attempt_at).total_seconds() / 60))
        services.email_retry_due(now=entry.next_attempt_at)
        entry.refresh_from_db()

    assert gaps == list(services.BACKOFF_MINUTES)
    assert (entry.status, entry.attempts) == (EmailStatus.FAILED, services.MAX_ATTEMPTS)
    assert services.email_retry_due(now=entry.last_attempt_at + timedelta(days=30))["sent"] == 0

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.email_retry_now([entry])["sent"] == 1  # staff can still push it from the admin
    entry.refresh_from_db()
    assert entry.status == EmailStatus.SENT


def test_not3_q2_task_raises_after_logging_a_failure_so_the_cluster_retries(account, committed, settings):
    settings.EMAIL_BACKEND = FAILING
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))
    entry = EmailLog.objects.get(recipient=OWNER)
    EmailLog.objects.filter(pk=entry.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))

    with pytest.raises(EmailNotSent):
        email_send(entry.pk)

    entry.refresh_from_db()
    assert entry.attempts == 2
    assert email_send(entry.pk) == "not due"  # an early redelivery waits for the backoff


def test_not3_a_message_is_sent_once_even_if_two_senders_run(account, committed):
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))
    entry = EmailLog.objects.get(recipient=OWNER)

    assert services.email_deliver(entry.pk) == "skipped"  # already sent by the task
    assert email_send(entry.pk) == "skipped"
    assert len([m for m in mail.outbox if m.to == [OWNER]]) == 1


def test_not3_email_the_broker_never_ran_is_sent_by_the_scheduled_retry(account, committed, monkeypatch):
    monkeypatch.setattr(services, "email_enqueue", lambda ids: None)  # the broker is down
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))
    assert mail.outbox == []
    queued = EmailLog.objects.get(recipient=OWNER)
    assert queued.status == EmailStatus.QUEUED

    assert services.email_retry_due(now=queued.queued_at + timedelta(minutes=1))["sent"] == 0
    counts = services.email_retry_due(now=queued.queued_at + services.STUCK_AFTER)

    assert counts["sent"] == 2
    assert sorted(m.to[0] for m in mail.outbox) == [BILLING, OWNER]


def test_not3_a_failing_listener_never_undoes_the_billing_action(account, committed, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("template bug")

    monkeypatch.setattr(services, "event_context", broken)

    with committed():
        sub = billing.start_trial(account, "personal", now=at("2026-04-01"))

    sub.refresh_from_db()
    assert sub.status == Status.TRIALING
    assert not EmailLog.objects.exists()
