"""What the e-mails tell customers matches what happened (issue 14's reports, each seen in use)."""

from django.core import mail

from accounts.models import Account
from core.money import format_money
from invoices.models import Invoice, InvoiceKind
from subscriptions import billing, scheduler
from subscriptions.models import Subscription

from .conftest import OWNER, at, html_of, only


def test_tri5_a_reactivated_trial_is_announced_as_the_trial_again(account, committed):
    """It was e-mailed as "Your Personal subscription continues"."""
    with committed():
        sub = billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))
        billing.cancel(sub, now=at("2026-04-03"))
    mail.outbox.clear()
    with committed():
        billing.resume(Subscription.objects.get(pk=sub.pk), now=at("2026-04-04"))
    message = only("subscription.resumed")
    assert message.subject == "Your Personal trial is active again"


def test_not1_the_first_receipt_does_not_repeat_the_trial_refusal(account, committed):
    """After a used trial, subscribing from the plans page printed "This account has already had
    a free trial" on the receipt: that sentence belongs to the quote, not to the invoice."""
    Account.objects.filter(pk=account.pk).update(trial_used_at=at("2026-01-15"))
    account.refresh_from_db()
    with committed():
        quote = billing.change_plan(account.subscription, "personal", "monthly", now=at("2026-04-01"))
    assert any("already had a free trial" in note for note in quote.notes)
    message = only("subscription.started")
    assert "already had a free trial" not in message.body and "already had a free trial" not in html_of(message)
    assert not quote.invoice.notes


def test_dun1_the_failed_payment_email_leads_to_the_payment_method_page(account, committed):
    """Its button and link went to /billing/, one more click away from fixing the card."""
    with committed():
        billing.subscribe(account, "personal", now=at("2026-04-01"))
        billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-02"))
    mail.outbox.clear()
    with committed():
        scheduler.run(at("2026-04-30T01:00"))
    message = only("payment.failed")
    assert "Update your payment method: http://127.0.0.1:8000/billing/payment-method/" in message.body
    assert 'href="http://127.0.0.1:8000/billing/payment-method/"' in html_of(message)


def test_upg1_a_switch_to_yearly_is_worded_as_a_switch_not_an_upgrade_to_the_same_plan(account, committed):
    """It read "You upgraded from Advanced to Advanced (yearly)"."""
    with committed():
        sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    mail.outbox.clear()
    with committed():
        billing.change_plan(sub, "advanced", "yearly", now=at("2026-04-16"))
    message = only("subscription.upgraded")
    invoice = Invoice.objects.get(account=account, kind=InvoiceKind.UPGRADE)
    assert message.subject == f"Receipt: Advanced is now yearly ({format_money(invoice.total)} paid)"
    assert "You switched Advanced to yearly billing." in message.body
    assert "from Advanced to Advanced" not in message.body
    assert OWNER in message.to
