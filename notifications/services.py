"""Writes for notifications: turn a domain event into logged e-mails, send them, retry them, and
change the opt-out preferences (NOT-1..3).

Flow: the engine emits an event; after its transaction commits the outbox (`core.events`) calls
`notify_event`, which renders the e-mail once per recipient, stores an `EmailLog` row (queued) and,
after that row commits, enqueues the django-q2 task `notifications.tasks.email_send`. The task
sends through Django's e-mail backend. A failure is recorded on the row (failed, error, next
attempt with backoff); `email_retry_due`, run by the `send_pending_emails` command on a schedule,
sends what is due. Nothing here raises into the billing action that emitted the event.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.crypto import constant_time_compare

from accounts.audit import audit
from accounts.locks import account_lock
from accounts.models import Account
from accounts.preferences import email_preferences_update
from core.broker import task_enqueue
from core.clock import clock
from core.events import Event
from core.seller import seller
from invoices.models import CreditNote, Invoice
from invoices.pdf import credit_note_pdf, invoice_pdf

from .facts import event_facts
from .kinds import NOTIFICATIONS, PRODUCT_NEWS, Kind, billing_url, event_context, related_of
from .models import Category, EmailLog, EmailStatus, ProductNews

log = logging.getLogger(__name__)

# Minutes to wait after the n-th failed attempt before the next one; then we give up.
BACKOFF_MINUTES = (5, 15, 45, 120, 360)
MAX_ATTEMPTS = len(BACKOFF_MINUTES) + 1
# A message the broker has not picked up after this long is sent by the scheduled retry.
STUCK_AFTER = timedelta(minutes=10)
# How long a sender holds its claim on a row (longer than any SMTP timeout).
CLAIM_FOR = timedelta(minutes=5)

UNSUBSCRIBE_SALT = "notifications.unsubscribe"
# NOT-2: the account switch behind each non-billing category.
PREFERENCE_FIELDS = {
    Category.USAGE_ALERTS: "email_usage_alerts",
    Category.PRODUCT_NEWS: "email_product_news",
}


class NotificationError(Exception):
    """A refused request; the message is fit to show staff or a customer."""


class EmailNotSent(Exception):
    """Raised by the q2 task after the failure is logged, so django-q2 records a failed task and
    redelivers it after Q_CLUSTER["retry"] seconds (up to max_attempts)."""


# --- preferences and unsubscribe links (NOT-2) ---------------------------------------


def wants(account: Account, category: str) -> bool:
    """Billing e-mail cannot be turned off (NOT-1); the others follow the account's switches."""
    field = PREFERENCE_FIELDS.get(category)
    return True if field is None else bool(getattr(account, field))


def unsubscribe_token(account_id: int, category: str) -> str:
    """A signature over (account, category): the link works for that pair only."""
    return signing.Signer(salt=UNSUBSCRIBE_SALT).signature(f"{account_id}:{category}")


def unsubscribe_token_valid(account_id: int, category: str, token: str) -> bool:
    return category in PREFERENCE_FIELDS and constant_time_compare(unsubscribe_token(account_id, category), token)


def unsubscribe_url(account_id: int, category: str) -> str:
    path = reverse("notifications:unsubscribe", args=[account_id, category, unsubscribe_token(account_id, category)])
    return settings.SITE_URL.rstrip("/") + path


@transaction.atomic
def preference_set(*, account: Account, category: str, enabled: bool, actor=None, source: str = "",
                   now: datetime | None = None) -> Account:
    """Turn one non-billing category on or off. Goes through the billing page's own write
    (accounts.preferences), so both paths audit the same way (ACC-3)."""

    field = PREFERENCE_FIELDS.get(category)
    if field is None:
        raise NotificationError("Billing e-mails cannot be turned off.")
    account = account_lock(account.pk)  # the other switch is read under the lock
    values = {"usage_alerts": account.email_usage_alerts, "product_news": account.email_product_news}
    values["usage_alerts" if category == Category.USAGE_ALERTS else "product_news"] = enabled
    return email_preferences_update(account, **values, actor=actor, now=now, source=source)


# --- queueing ------------------------------------------------------------------------


# PAY-5: the billing e-mail address gets invoices and receipts: the e-mails that carry an invoice or a
# credit note, and the one asking to pay an invoice that failed.
TO_BILLING_EMAIL = {"payment.failed"}


def recipients_for(kind: Kind, account: Account) -> list[str]:
    """Billing and usage e-mail go to the owner and billing-role users (NOT-1); product news to the
    owner; invoices and receipts also to the account's billing e-mail address (PAY-5). Each address once."""
    if kind.category == Category.PRODUCT_NEWS:
        owner = account.owner
        users = [owner] if owner and owner.email and owner.is_active else []
    else:
        users = account.billing_recipients()
    addresses = [user.email for user in users]
    if account.billing_email and kind.is_billing and (kind.attach_pdf or kind.code in TO_BILLING_EMAIL):
        addresses.append(account.billing_email)
    seen, emails = set(), []
    for email in addresses:
        if email.lower() not in seen:
            seen.add(email.lower())
            emails.append(email)
    return emails


def render(kind: Kind, ctx: dict) -> tuple[str, str, str]:
    """Subject, plain text and HTML of one e-mail."""
    subject = " ".join(kind.subject(ctx).split())
    ctx = {**ctx, "subject": subject}
    text = render_to_string(f"notifications/{kind.template_name}.txt", ctx)
    html = render_to_string(f"notifications/{kind.template_name}.html", ctx)
    return subject, text, html


def email_queue(*, kind: Kind, account: Account, ctx: dict, related: tuple[str, str],
                now: datetime | None = None) -> list[EmailLog]:
    """Render and log the e-mail for every recipient, then enqueue the sends after commit."""
    now = clock(now)
    recipients = recipients_for(kind, account)
    if not recipients:
        log.warning("No recipient for %s on account %s", kind.code, account.pk)
        return []
    # NOT-4: replies reach support; an event's e-mail names the address in force at the event.
    reply_to = ctx.get("support_email") or seller().support_email
    ctx = {"account_name": account.name, **ctx, "account": account, "billing_url": billing_url(),
           "category": kind.category, "category_label": Category(kind.category).label.lower(),
           "support_email": reply_to}
    if not kind.is_billing:
        ctx["unsubscribe_url"] = unsubscribe_url(account.pk, kind.category)
    subject, text, html = render(kind, ctx)
    with transaction.atomic():
        logs = EmailLog.objects.bulk_create(
            EmailLog(recipient=email, kind=kind.code, category=kind.category, subject=subject, body_text=text,
                     body_html=html, account=account, related_type=related[0], related_id=related[1],
                     attach_pdf=kind.attach_pdf, reply_to=reply_to, queued_at=now)
            for email in recipients
        )
        ids = [entry.pk for entry in logs]
        transaction.on_commit(lambda: email_enqueue(ids))
    return logs


def notify_event(event: Event) -> list[EmailLog]:
    """The domain-event handler (subscribed in NotificationsConfig.ready)."""
    kind = NOTIFICATIONS.get(event.kind)
    account = Account.objects.filter(pk=event.account_id).first()
    if kind is None or account is None:
        return []
    if not wants(account, kind.category):
        return []
    related = related_of(event.kind, account.pk, event.data)
    if kind.once_per_related and EmailLog.objects.filter(
        kind=kind.code, account=account, related_type=related[0], related_id=related[1]
    ).exists():
        log.info("%s for %s %s was already e-mailed; not sending it twice", kind.code, *related)
        return []
    # NOT-4: the facts fixed when the event happened. A row written before events carried facts
    # has none: its e-mail is written from the account as it is now, as it always was.
    ctx = event_context(event, account, event.facts or event_facts([event])[0])
    if kind.skip and kind.skip(ctx):
        return []
    return email_queue(kind=kind, account=account, ctx=ctx, related=related)


def email_enqueue(log_ids: list[int]) -> None:
    """Hand each message to django-q2. Never raises: a row the broker did not take (it is down)
    stays queued and `email_retry_due` sends it."""
    for log_id in log_ids:
        try:
            if not task_enqueue("notifications.tasks.email_send", log_id, group="notifications"):
                log.warning("E-mail %s not queued now; it stays in the log for the retry", log_id)
        except EmailNotSent:
            pass  # inline run (sync): already logged as failed, the retry sends it
        except Exception:  # NOT-3: a failed send never undoes or blocks a billing action
            log.warning("E-mail %s not sent now; it stays in the log for the retry", log_id, exc_info=True)


# --- sending -------------------------------------------------------------------------


def related_pdf(entry: EmailLog) -> tuple[str, bytes] | None:
    if entry.related_type == "invoice":
        invoice = Invoice.objects.filter(pk=entry.related_id).first()
        if invoice is not None and invoice.number:
            return f"invoice-{invoice.number}.pdf", invoice_pdf(invoice)
    if entry.related_type == "credit_note":
        note = CreditNote.objects.filter(pk=entry.related_id).first()
        if note is not None:
            return f"credit-note-{note.number}.pdf", credit_note_pdf(note)
    return None


def build_message(entry: EmailLog) -> EmailMultiAlternatives:
    headers = {"Auto-Submitted": "auto-generated", "X-Prorata-Kind": entry.kind}
    if entry.category in PREFERENCE_FIELDS and entry.account_id:
        # RFC 8058 one-click unsubscribe, for non-billing e-mail only (NOT-2).
        headers["List-Unsubscribe"] = f"<{unsubscribe_url(entry.account_id, entry.category)}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message = EmailMultiAlternatives(
        subject=entry.subject, body=entry.body_text, from_email=settings.DEFAULT_FROM_EMAIL,
        to=[entry.recipient], headers=headers, reply_to=[entry.reply_to or seller().support_email],
    )
    message.attach_alternative(entry.body_html, "text/html")
    if entry.attach_pdf:
        attachment = related_pdf(entry)
        if attachment is not None:
            message.attach(attachment[0], attachment[1], "application/pdf")
    return message


def email_deliver(log_id: int, *, now: datetime | None = None, force: bool = False) -> str:
    """Send one logged e-mail. Returns "sent", "failed" or "skipped" (sent already, given up, or
    another sender holds it). Never raises. `force` (staff) sends even after the last attempt."""
    now = clock(now)
    # Claim the row with a conditional UPDATE: two workers never send the same message.
    claimable = EmailLog.objects.filter(pk=log_id, status__in=[EmailStatus.QUEUED, EmailStatus.FAILED])
    if not force:
        claimable = claimable.filter(attempts__lt=MAX_ATTEMPTS)
    claimed = claimable.filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).update(
        claimed_until=now + CLAIM_FOR
    )
    if not claimed:
        return "skipped"
    entry = EmailLog.objects.get(pk=log_id)
    attempts = entry.attempts + 1
    try:
        build_message(entry).send(fail_silently=False)
    except Exception as exc:  # SMTP, socket, PDF: record it, retry later (NOT-3)
        retry_in = BACKOFF_MINUTES[attempts - 1] if attempts <= len(BACKOFF_MINUTES) else None
        EmailLog.objects.filter(pk=log_id).update(
            status=EmailStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000], attempts=attempts,
            last_attempt_at=now, next_attempt_at=now + timedelta(minutes=retry_in) if retry_in else None,
            claimed_until=None,
        )
        log.warning("E-mail %s (%s to %s) failed, attempt %s: %s", log_id, entry.kind, entry.recipient, attempts, exc)
        return "failed"
    EmailLog.objects.filter(pk=log_id).update(
        status=EmailStatus.SENT, sent_at=now, attempts=attempts, last_attempt_at=now, next_attempt_at=None,
        claimed_until=None, error="",
    )
    return "sent"


def email_retry_due(*, now: datetime | None = None) -> dict[str, int]:
    """Send failed e-mails whose backoff has passed and queued ones the broker never ran."""
    now = clock(now)
    due = EmailLog.objects.filter(
        Q(status=EmailStatus.FAILED, next_attempt_at__lte=now)
        | Q(status=EmailStatus.QUEUED, queued_at__lte=now - STUCK_AFTER)
    ).order_by("id").values_list("id", flat=True)
    counts = {"sent": 0, "failed": 0, "skipped": 0}
    for log_id in list(due):
        counts[email_deliver(log_id, now=now)] += 1
    return counts


def email_retry_now(entries, *, now: datetime | None = None) -> dict[str, int]:
    """Staff: send the given failed e-mails again at once, whatever their backoff."""
    counts = {"sent": 0, "failed": 0, "skipped": 0}
    for entry in entries:
        if entry.status == EmailStatus.FAILED:
            counts[email_deliver(entry.pk, now=now, force=True)] += 1
    return counts


# --- product news (NOT-2) --------------------------------------------------------------


def product_news_send(news: ProductNews, *, actor=None, now: datetime | None = None) -> int:
    """Queue `news` to the owner of every account that wants product news. Once per news item."""
    now = clock(now)
    kind = NOTIFICATIONS[PRODUCT_NEWS]
    with transaction.atomic():
        news = ProductNews.objects.select_for_update().get(pk=news.pk)
        if news.sent_at is not None:
            raise NotificationError(f"“{news.subject}” was already sent on {news.sent_at:%Y-%m-%d %H:%M}.")
        count = 0
        accounts = Account.objects.filter(email_product_news=True).prefetch_related("memberships__user")
        for account in accounts.order_by("id"):
            ctx = {"news": news, "paragraphs": [p.strip() for p in news.body.split("\n\n") if p.strip()]}
            count += len(email_queue(kind=kind, account=account, ctx=ctx, related=("product_news", str(news.pk)),
                                     now=now))
        news.sent_at, news.sent_by, news.recipients_count = now, actor, count
        news.save(update_fields=["sent_at", "sent_by", "recipients_count"])
        audit(account=None, actor=actor, action="notifications.product_news_sent", obj=news,
              after={"subject": news.subject, "recipients": count}, now=now)
    return count
