"""NOT-4: an e-mail states the facts at the moment of its event, whatever happened before it was
delivered (issue 23). The outbox keeps its rows here (`held`: the broker is down and no worker
drains), so each e-mail is written later than its event, as with the scheduler stopped."""

from decimal import Decimal

import pytest
from django.core import mail
from django.db import transaction

from accounts.models import Account
from core import events
from core.models import PendingEvent
from core.money import format_money
from invoices import batch
from invoices.models import CreditNote, Invoice
from invoices.tax_rates import EU_RATES, tax_rates_load_file
from notifications import facts as notification_facts
from notifications.models import EmailLog
from plans.models import Plan
from subscriptions import billing, scheduler, staff, terms
from subscriptions.models import Subscription
from subscriptions.statement import account_statement
from tests.factories import UserFactory

from .conftest import OWNER, at, kind_of

pytestmark = pytest.mark.django_db

SELLER_DE = {"SELLER_NAME": "Beispiel Analytics GmbH", "SELLER_ADDRESS": "Hauptstrasse 1\n10115 Berlin",
             "SELLER_COUNTRY": "DE", "SELLER_TAX_ID": "DE136695976", "SELLER_REGISTRATION": "Amtsgericht Berlin HRB 1",
             "SELLER_SUPPORT_EMAIL": "support@beispiel.example"}


@pytest.fixture
def held(monkeypatch, django_capture_on_commit_callbacks):
    """Every action commits (its after-commit work runs) but the outbox is not delivered: call the
    returned `deliver()` to deliver what it holds, e-mails sent."""
    monkeypatch.setattr(events, "deliver_soon", lambda ids=None: None)

    def deliver():
        mail.outbox.clear()
        with django_capture_on_commit_callbacks(execute=True):
            events.deliver(None, max_seconds=None)
    return deliver


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def taxed(settings, account):
    """A seller in Germany and a customer in Germany: every invoice adds VAT at 19 % (TAX-2)."""
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    Account.objects.filter(pk=account.pk).update(company="Kunde GmbH", country="DE", address="Weg 1\nKöln")
    account.refresh_from_db()
    return account


def current(account) -> Subscription:
    return account.subscriptions.select_related("plan", "scheduled_plan").order_by("-id").first()


def sent(kind: str, to: str = OWNER):
    return next(m for m in mail.outbox if kind_of(m) == kind and m.to == [to])


def written_now() -> dict:
    """The e-mails the outbox's events would be written as if delivered now (then undone)."""
    class Undo(Exception):
        pass

    written = {}
    try:
        with transaction.atomic():
            events.deliver(None, max_seconds=None)
            written = {(e.kind, e.recipient, e.related_id): (e.subject, e.body_text, e.body_html, e.reply_to)
                       for e in EmailLog.objects.all()}
            raise Undo
    except Undo:
        pass
    return written


def test_not4_an_upgrade_receipt_delivered_after_a_cancellation_states_the_next_charge_at_the_upgrade(
        account, held, committed):
    with committed():
        billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    with committed():
        billing.change_plan(current(account), "advanced", "monthly", now=at("2026-04-16"))
    at_upgrade = account_statement(account, at("2026-04-16")).next_charge_sentence
    assert at_upgrade.startswith("Next charge: ")
    with committed():
        billing.cancel(current(account), reason="too expensive", now=at("2026-04-20"))
    assert PendingEvent.objects.count() >= 3 and not EmailLog.objects.exists()  # nothing delivered yet
    held()
    receipt = sent("subscription.upgraded")
    assert at_upgrade in receipt.body
    assert "Nothing more is charged" not in receipt.body
    cancellation = sent("cancellation.scheduled")
    assert "will end on May 1, 2026" in cancellation.body


def test_not4_queued_emails_read_as_at_their_event_after_seller_details_zone_and_plan_change(
        account, taxed, held, committed, settings):
    """Documents issued and their e-mails queued; then the seller's settings, the account's billing
    details, its time zone and its plan change; the e-mails delivered read exactly as they would
    have at their events (subject, text, HTML, Reply-To)."""
    with committed():
        billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T20:00"))
    with committed():
        billing.set_extra_properties(current(account), 2, now=at("2026-04-10T20:00"))
    expected = written_now()
    assert {kind for kind, _to, _id in expected} == {"subscription.started", "add_on.changed"}

    settings.SELLER_NAME, settings.SELLER_SUPPORT_EMAIL = "Other Seller SE", "help@other.example"
    Account.objects.filter(pk=account.pk).update(name="Renamed Analytics", company="Other GmbH",
                                                 address="Neue Strasse 2\nBonn", country="AT")
    account.refresh_from_db()
    billing.set_billing_zone(account, "Pacific/Kiritimati", now=at("2026-04-11"))  # UTC+14: every date moves
    Plan.objects.filter(code="advanced").update(name="Advanced Plus", monthly_price=Decimal("39.00"))
    with committed():
        billing.change_plan(current(account), "personal", "monthly", now=at("2026-04-12"))  # a downgrade
    held()
    delivered = {(e.kind, e.recipient, e.related_id): (e.subject, e.body_text, e.body_html, e.reply_to)
                 for e in EmailLog.objects.all()}
    for key, email in expected.items():
        assert delivered[key] == email, key
    assert sent("subscription.started").reply_to == [SELLER_DE["SELLER_SUPPORT_EMAIL"]]


def test_not4_a_receipt_shows_the_invoices_lines_tax_and_total(account, taxed, held, committed):
    with committed():
        billing.subscribe(account, "advanced", "yearly", now=at("2026-04-01"))
    held()
    invoice = Invoice.objects.get(account=account, kind="subscription")
    assert invoice.tax_amount > 0
    money = lambda amount: format_money(amount, invoice.currency)  # noqa: E731
    receipt = sent("subscription.started")
    html = next(content for content, mimetype in receipt.alternatives if mimetype == "text/html")
    for text in (receipt.body, html):
        for line in invoice.lines.all():
            assert money(line.amount) in text
        assert f"{invoice.tax_label} on {money(invoice.net_amount)}" in text
        assert money(invoice.tax_amount) in text and money(invoice.total) in text
    assert f"Total: {money(invoice.total)}" in receipt.body


def test_not4_a_credit_note_email_states_its_net_tax_and_total(account, taxed, held, committed):
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    with committed():
        billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01"))
    with committed():
        staff.downgrade_now(current(account), "personal", reason="Tracking outage", actor=staff_user,
                            now=at("2026-04-11"))
    held()
    note = CreditNote.objects.get(account=account)
    assert note.tax_amount > 0
    money = lambda amount: format_money(amount, note.currency)  # noqa: E731
    email = sent("credit_note.issued")
    assert f"Net: {money(note.net_amount)}" in email.body
    assert f"{note.tax_label} reversed: {money(note.tax_amount)}" in email.body
    assert f"Amount: {money(note.amount)} (tax included)" in email.body
    assert f"({money(note.amount)} available)" in email.body


def test_dwn4_the_staff_downgrade_now_email_says_staff_applied_it_now_not_as_scheduled(account, held, committed):
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    with committed():
        billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01"))
    with committed():
        staff.downgrade_now(current(account), "personal", reason="Tracking outage", actor=staff_user,
                            now=at("2026-04-11"))
    held()
    email = sent("downgrade.applied")
    assert "as scheduled" not in email.body
    assert "Our team changed your plan from Advanced to Personal now" in email.body


def test_ren5_a_renewal_paid_wholly_by_credit_sends_a_receipt(account, held, committed):
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    with committed():
        billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01"))
    with committed():  # (29 - 14) x 29/30 = 14.50 of credit, more than Personal's 14.00 renewal
        staff.downgrade_now(current(account), "personal", reason="Tracking outage", actor=staff_user,
                            now=at("2026-04-02"))
    held()
    with committed():
        scheduler.run(at("2026-04-30T00:00"))
    renewal = Invoice.objects.get(account=account, kind="renewal")
    assert (renewal.status, renewal.total, renewal.credit_applied) == ("paid", Decimal("0.00"), Decimal("14.00"))
    held()
    receipt = sent("payment.succeeded")
    assert renewal.number in receipt.subject and "paid by credit" in receipt.subject
    assert "is paid by your credit: nothing was charged" in receipt.body


def test_not4_replies_reach_support_and_the_suspension_email_says_so(account, held, committed, settings):
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    with committed():
        billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    with committed():
        staff.suspend_account(account, reason="Spam reported on a tracked site", actor=staff_user,
                              now=at("2026-04-05"))
    held()
    assert mail.outbox
    assert all(message.reply_to == [settings.SELLER_SUPPORT_EMAIL] for message in mail.outbox)
    assert "reply to this e-mail" in sent("account.suspended").body


@pytest.mark.parametrize(("cycle", "extra", "zone"), [("monthly", 0, "UTC"), ("yearly", 2, "America/New_York"),
                                                      ("monthly", 1, "Pacific/Kiritimati")])
def test_not4_a_set_wise_receipt_states_the_next_charge_the_statement_said_at_the_renewal(
        account, taxed, held, committed, monkeypatch, cycle, extra, zone):
    """The billing run's receipts (set-wise, no statement worked out per receipt in the run's
    transaction) state what `account_statement` said at the renewal, even after a cancellation."""
    Account.objects.filter(pk=account.pk).update(timezone=zone)
    account.refresh_from_db()
    with committed():
        billing.subscribe(account, "advanced", cycle, now=at("2026-04-01"))
        if extra:
            billing.set_extra_properties(current(account), extra, now=at("2026-04-01"))
    held()
    renew_at = current(account).current_period_end - terms.renewal_lead()
    set_wise, taken = [], []
    issue_many = batch.invoices_issue_many
    monkeypatch.setattr(batch, "invoices_issue_many",
                        lambda drafts, **kw: set_wise.extend(drafts) or issue_many(drafts, **kw))
    account_facts = notification_facts.account_facts
    monkeypatch.setattr(notification_facts, "account_facts",
                        lambda event: taken.append(event.kind) or account_facts(event))
    with committed():
        scheduler.run(renew_at)
    assert len(set_wise) == 1 and "payment.succeeded" not in taken  # set-wise; no statement per receipt
    said = account_statement(account, renew_at).next_charge_sentence
    assert said.startswith("Next charge: ")
    with committed():
        billing.cancel(current(account), reason="", now=renew_at)
    held()
    assert said in sent("payment.succeeded").body
