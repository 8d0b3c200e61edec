"""One e-mail per event kind, to the right people, with the right amounts and dates, each driven
by the real engine action: customer actions (subscriptions.billing), the billing run
(subscriptions.scheduler), usage ingestion (usage.ingest) and staff decisions
(subscriptions.staff)."""


import pytest
from django.core import mail

from invoices.models import Invoice, InvoiceKind
from notifications.models import EmailLog
from subscriptions import billing, scheduler
from subscriptions import staff as staff_actions
from tests.factories import PropertyFactory, UserFactory

from .conftest import BILLING, OWNER, at, html_of, ingest, only

pytestmark = pytest.mark.django_db


def subscribed(account, committed, plan="personal", cycle="monthly", day="2026-04-01"):
    with committed():
        sub = billing.subscribe(account, plan, cycle, now=at(day))
    mail.outbox.clear()
    return sub


def trialing(account, committed, plan="personal", day="2026-04-01T08:00"):
    with committed():
        sub = billing.start_trial(account, plan, now=at(day))
    mail.outbox.clear()
    return sub


@pytest.fixture
def staff(db):
    """A billing manager holding every staff permission."""
    return UserFactory(username="manager@prorata.test", is_staff=True, is_superuser=True)


def pdf_names(message) -> list[str]:
    return [name for name, _content, mimetype in message.attachments if mimetype == "application/pdf"]


# --- TRI-7 -----------------------------------------------------------------------------------------


def test_tri7_trial_started_email_states_plan_end_date_and_price(account, committed):
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))

    message = only("trial.started")
    assert message.subject == "Your Personal trial has started: free until April 15, 2026"
    assert "Trial ends: April 15, 2026" in message.body
    assert "$14.00 per month" in message.body
    assert "http://testserver/billing/" in message.body or "/billing/" in message.body
    assert "April 15, 2026" in html_of(message)


def test_tri7_trial_ends_in_3_days_email_states_the_coming_charge(account, committed):
    trialing(account, committed)

    with committed():
        scheduler.run(now=at("2026-04-12T08:00"))

    message = only("trial.ending_soon")
    assert message.subject == "Your Personal trial ends on April 15, 2026: $14.00 will be charged"
    assert "Charged then: $14.00 to your Visa ending in 4242" in message.body


def test_tri7_trial_converted_email_is_the_receipt_with_the_invoice_pdf(account, committed):
    trialing(account, committed)

    with committed():
        scheduler.run(now=at("2026-04-15T08:00"))

    message = only("trial.converted")
    invoice = Invoice.objects.get(account=account, kind=InvoiceKind.TRIAL_CONVERSION)
    assert message.subject == "Receipt: your Personal subscription has started ($14.00 paid)"
    assert f"Invoice {invoice.number}" in message.body
    assert ("Next charge: $14.00 on May 14, 2026, for "
            "Personal (monthly) from May 15, 2026 to June 15, 2026.") in message.body
    assert pdf_names(message) == [f"invoice-{invoice.number}.pdf"]


def test_tri4_trial_cancelled_email_says_nothing_was_charged_and_until_when_it_can_return(account, committed):
    sub = trialing(account, committed)

    with committed():
        billing.cancel(sub, reason="Too expensive", now=at("2026-04-05"))

    message = only("trial.canceled")
    assert message.subject == "Your Personal trial is cancelled"
    assert "Charged: nothing" in message.body
    assert "Can be reactivated until: April 15, 2026" in message.body


def test_tri6_trial_plan_change_email_keeps_the_end_date(account, committed):
    sub = trialing(account, committed)

    with committed():
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-05"))

    message = only("subscription.trial_plan_changed")
    assert message.subject == "Your trial is now on Advanced, still free until April 15, 2026"
    assert "Then: $29.00 per month" in message.body


# --- subscriptions, upgrades, downgrades, cancellation (NOT-1) -------------------------------------


def test_not1_first_subscription_sends_one_receipt_with_the_pdf(account, committed):
    with committed():
        billing.subscribe(account, "personal", now=at("2026-04-01T09:30"))

    message = only("subscription.started")  # payment.succeeded for the same invoice is not sent twice
    invoice = Invoice.objects.get(account=account)
    assert message.subject == "Receipt: your Personal subscription has started ($14.00 paid)"
    assert ("Next charge: $14.00 on April 30, 2026, for "
            "Personal (monthly) from May 1, 2026 to June 1, 2026.") in message.body
    assert pdf_names(message) == [f"invoice-{invoice.number}.pdf"]


def test_not1_upgrade_email_states_the_prorated_charge(account, committed):
    sub = subscribed(account, committed)

    with committed():
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16T10:00"))

    message = only("subscription.upgraded")
    assert message.subject == "Receipt: you upgraded to Advanced ($7.50 paid)"
    assert "($29.00 − $14.00) × 15/30 days = $7.50" in message.body
    assert ("Next charge: $29.00 on April 30, 2026, for "
            "Advanced (monthly) from May 1, 2026 to June 1, 2026.") in message.body
    assert len(pdf_names(message)) == 1


def test_dwn1_downgrade_scheduled_email_states_the_date_and_new_price(account, committed):
    sub = subscribed(account, committed, plan="advanced")

    with committed():
        billing.change_plan(sub, "personal", "monthly", now=at("2026-04-10"))

    message = only("downgrade.scheduled")
    assert message.subject == "Your change to Personal is scheduled for May 1, 2026"
    assert "From May 1, 2026: Personal at $14.00 per month" in message.body


def test_dwn3_downgrade_applied_email_lists_the_paused_properties(account, committed):
    sub = subscribed(account, committed, plan="advanced")
    PropertyFactory(account=account, name="Shop", domain="shop.example.com")
    with committed():
        billing.change_plan(sub, "personal", "monthly", now=at("2026-04-10"))
    for name in ("Blog", "Docs", "Forum"):  # added after the downgrade was accepted: 4 > 3 when it falls due
        PropertyFactory(account=account, name=name, domain=f"{name.lower()}.example.com")
    with committed():
        scheduler.run(now=at("2026-04-30T01:00"))  # the renewal at the new price, 24 hours ahead
    mail.outbox.clear()

    with committed():
        scheduler.run(now=at("2026-05-01T00:00"))

    message = only("downgrade.applied")
    assert message.subject == "Your plan is now Personal"
    assert "Personal allows 3 active properties" in message.body
    assert "- Forum" in message.body
    assert "Forum" in html_of(message)


def test_not1_cancellation_scheduled_email_states_the_end_date(account, committed):
    sub = subscribed(account, committed)

    with committed():
        billing.cancel(sub, reason="Closing the shop", now=at("2026-04-10"))

    message = only("cancellation.scheduled")
    assert message.subject == "Your Personal subscription will end on May 1, 2026"
    assert "Service continues until: May 1, 2026" in message.body


def test_not1_cancellation_effective_email_says_the_account_is_on_free(account, committed):
    sub = subscribed(account, committed)
    with committed():
        billing.cancel(sub, now=at("2026-04-10"))
    mail.outbox.clear()

    with committed():
        scheduler.run(now=at("2026-05-01T00:00"))

    message = only("cancellation.effective")
    assert message.subject == "Your Personal subscription has ended; you are on Free"


def test_not1_resumed_email_states_the_next_renewal(account, committed):
    sub = subscribed(account, committed)
    with committed():
        billing.cancel(sub, now=at("2026-04-10"))
    mail.outbox.clear()

    with committed():
        billing.resume(sub, now=at("2026-04-12"))

    message = only("subscription.resumed")
    assert message.subject == "Your Personal subscription continues"
    assert ("Next charge: $14.00 on April 30, 2026, for "
            "Personal (monthly) from May 1, 2026 to June 1, 2026.") in message.body


def test_not1_extra_properties_email_states_the_prorated_charge(account, committed):
    sub = subscribed(account, committed, plan="advanced", day="2026-06-01")

    with committed():
        billing.set_extra_properties(sub, 2, now=at("2026-06-11"))

    message = only("add_on.changed")
    assert message.subject == "Extra properties: you now have 2"
    assert "We charged $40.00" in message.body
    assert len(pdf_names(message)) == 1


# --- REN-5, DUN-1, SUS-2 ------------------------------------------------------------------------


def test_ren5_renewal_receipt_with_the_invoice_pdf(account, committed):
    subscribed(account, committed)

    with committed():
        scheduler.run(now=at("2026-04-30T01:00"))

    message = only("payment.succeeded")
    invoice = Invoice.objects.get(account=account, kind=InvoiceKind.RENEWAL)
    assert message.subject == f"Receipt for invoice {invoice.number}: $14.00 paid"
    assert pdf_names(message) == [f"invoice-{invoice.number}.pdf"]
    # It pays for May: the next renewal is at the end of May, not at the end of April.
    assert ("Next charge: $14.00 on May 31, 2026, for "
            "Personal (monthly) from June 1, 2026 to July 1, 2026.") in message.body


def test_ren5_renewal_receipt_after_a_scheduled_downgrade_names_the_next_periods_price(account, committed):
    sub = subscribed(account, committed, plan="advanced")
    with committed():
        billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))
    mail.outbox.clear()
    with committed():
        scheduler.run(now=at("2026-04-30T01:00"))

    message = only("payment.succeeded")
    assert "$14.00 paid" in message.subject
    assert ("Next charge: $14.00 on May 31, 2026, for "
            "Personal (monthly) from June 1, 2026 to July 1, 2026.") in message.body


def test_ren5_yearly_renewal_email_7_days_ahead(account, committed):
    subscribed(account, committed, cycle="yearly", day="2026-04-01")

    with committed():
        scheduler.run(now=at("2027-03-25T00:00"))

    message = only("renewal.upcoming")
    assert message.subject == "Your Personal subscription renews on April 1, 2027 for $134.40"
    assert "Charged to: your Visa ending in 4242" in message.body


def test_dun1_failed_payment_email_states_reason_and_next_retry(account, committed):
    subscribed(account, committed)
    billing.set_payment_method(account, "pm_card_chargeDeclinedInsufficientFunds", now=at("2026-04-20"))
    mail.outbox.clear()

    with committed():
        scheduler.run(now=at("2026-04-30T01:00"))

    message = only("payment.failed")
    assert message.subject == "Payment of $14.00 failed: please update your payment method"
    assert "Reason: " in message.body and "insufficient funds" in message.body.lower()
    assert "Attempt: 1" in message.body
    assert "Next automatic retry: May 1, 2026" in message.body


def test_sus2_suspension_for_non_payment_is_e_mailed_with_the_last_failure(account, committed, settings):
    settings.BILLING_RETRY_DAYS = [1]
    subscribed(account, committed)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-20"))
    with committed():
        scheduler.run(now=at("2026-04-30T01:00"))
    mail.outbox.clear()

    with committed():
        scheduler.run(now=at("2026-05-01T01:00"))

    kinds = sorted({m.extra_headers["X-Prorata-Kind"] for m in mail.outbox})
    assert kinds == ["account.suspended", "payment.failed"]
    suspended = [m for m in mail.outbox if m.extra_headers["X-Prorata-Kind"] == "account.suspended"]
    assert sorted(m.to[0] for m in suspended) == [BILLING, OWNER]
    assert "Reason: Non-payment" in suspended[0].body
    last_failure = next(m for m in mail.outbox if m.extra_headers["X-Prorata-Kind"] == "payment.failed")
    assert "Next automatic retry: none" in last_failure.body
    assert "Attempt: 2" in last_failure.body


def test_sus2_staff_suspension_and_lift_are_e_mailed_with_the_reason(account, committed, staff):
    with committed():
        staff_actions.suspend_account(account, reason="Spam sent from a tracked property", actor=staff,
                                      now=at("2026-04-10"))

    message = only("account.suspended")
    assert "Reason: Policy violation" in message.body
    assert "Note from our team: Spam sent from a tracked property" in message.body
    assert "Suspended on: April 10, 2026" in message.body
    mail.outbox.clear()

    with committed():
        staff_actions.lift_suspension(account, reason="Property removed", actor=staff, now=at("2026-04-12"))

    message = only("account.reactivated")
    assert "Was suspended for: Policy violation" in message.body
    assert "Note from our team: Property removed" in message.body
    assert "Reactivated on: April 12, 2026" in message.body


def test_dun3_new_card_after_suspension_reactivates_and_e_mails(account, committed, settings):
    settings.BILLING_RETRY_DAYS = [1]
    subscribed(account, committed)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-20"))
    with committed():
        scheduler.run(now=at("2026-04-30T01:00"))
        scheduler.run(now=at("2026-05-01T01:00"))
    mail.outbox.clear()

    with committed():
        billing.set_payment_method(account, "pm_card_visa", now=at("2026-05-03T12:00"))

    kinds = sorted(m.extra_headers["X-Prorata-Kind"] for m in mail.outbox)
    assert kinds == ["account.reactivated"] * 2 + ["payment.succeeded"] * 2  # one receipt, though emitted twice
    receipt = next(m for m in mail.outbox if m.extra_headers["X-Prorata-Kind"] == "payment.succeeded")
    assert "$14.00" in receipt.subject
    assert len(pdf_names(receipt)) == 1


# --- REF-5, UPG-3, DWN-4, REF-4 -----------------------------------------------------------------------


@pytest.fixture
def refund_request(account, committed):
    trialing(account, committed)
    with committed():
        scheduler.run(now=at("2026-04-15T08:00"))
    invoice = Invoice.objects.get(account=account, kind=InvoiceKind.TRIAL_CONVERSION)
    with committed():
        request = billing.request_refund(invoice, message="I never used it", actor=account.owner,
                                               now=at("2026-04-20"))
    mail.outbox.clear()
    return request


def test_ref5_refund_approved_email_states_the_amount(account, committed, refund_request, staff):
    with committed():
        staff_actions.decide_refund(refund_request, approve=True, reason="No usage during the trial", actor=staff,
                                    now=at("2026-04-21"))

    message = only("refund.decided")
    assert message.subject == "Your refund request was approved"
    assert "We refunded $14.00 to your Visa ending in 4242" in message.body
    assert refund_request.invoice.number in message.body
    assert "Note: No usage during the trial" in message.body


def test_ref5_refund_rejected_email_gives_the_reason(account, committed, refund_request, staff):
    with committed():
        staff_actions.decide_refund(refund_request, approve=False, actor=staff, now=at("2026-04-21"),
                                    reason="Two properties tracked 5,000 sessions in the trial")

    message = only("refund.decided")
    assert message.subject == "Your refund request was declined"
    assert "($14.00) was DECLINED" in message.body
    assert "Reason: Two properties tracked 5,000 sessions in the trial" in message.body


def test_upg3_restore_days_decision_email_states_the_new_period_end(account, committed, staff):
    sub = subscribed(account, committed)
    with committed():
        billing.change_plan(sub, "advanced", "yearly", now=at("2026-04-16"))
        request = billing.request_restore_days(sub, actor=account.owner, now=at("2026-04-20"))
    mail.outbox.clear()

    with committed():
        staff_actions.decide_restore(request, approve=True, actor=staff, now=at("2026-04-21"))

    message = only("restore.decided")
    assert message.subject == "Your request to restore 15 days was approved"
    assert "Period now ends: May 1, 2027" in message.body
    assert ("Next charge: $278.04 on April 30, 2027, for "
            "Advanced (yearly) from May 1, 2027 to May 1, 2028.") in message.body


def test_dwn4_immediate_downgrade_sends_the_credit_note_and_the_plan_change(account, committed, settings):
    settings.BILLING_DOWNGRADE_TIMING = "immediate"
    sub = subscribed(account, committed, plan="advanced")

    with committed():
        billing.change_plan(sub, "personal", "monthly", now=at("2026-04-16"))

    kinds = sorted(m.extra_headers["X-Prorata-Kind"] for m in mail.outbox)
    assert kinds == ["credit_note.issued"] * 2 + ["downgrade.applied"] * 2
    note = next(m for m in mail.outbox if m.extra_headers["X-Prorata-Kind"] == "credit_note.issued")
    assert note.subject == "Credit note CN-2026-000001 issued: $7.50"
    assert "applied automatically to your next invoices" in note.body
    assert pdf_names(note) == ["credit-note-CN-2026-000001.pdf"]


def test_ref4_period_extension_email_states_days_and_new_end(account, committed, staff):
    sub = subscribed(account, committed)

    with committed():
        staff_actions.extend_period(sub, 3, reason="Tracking outage on April 18", actor=staff, now=at("2026-04-20"))

    message = only("period.extended")
    assert message.subject == "Your subscription was extended by 3 days, to May 4, 2026"
    assert "Reason: Tracking outage on April 18" in message.body


def test_ref4_staff_refund_sends_the_refund_credit_note(account, committed, staff):
    subscribed(account, committed)
    invoice = Invoice.objects.get(account=account)

    with committed():
        staff_actions.refund_invoice(invoice, reason="Tracking outage on April 18", actor=staff,
                                     now=at("2026-04-20"))

    message = only("credit_note.issued")
    assert message.subject == "Credit note CN-2026-000001 issued: $14.00"
    assert "refunded to your card" in message.body
    assert f"correcting invoice {invoice.number}" in message.body
    assert pdf_names(message) == ["credit-note-CN-2026-000001.pdf"]


# --- USE-6 (non-billing) -------------------------------------------------------------------------


def test_use6_usage_alert_at_80_percent_is_sent_once(account, committed):
    subscribed(account, committed)
    prop = PropertyFactory(account=account)

    with committed():
        ingest(prop, 8000)

    message = only("usage.alert")
    assert message.subject == "You have used 80% of your April 2026 sessions"
    assert "Sessions counted in April 2026: 8,000" in message.body
    assert "Included in Personal: 10,000" in message.body
    assert "$2.00 per 1,000" in message.body
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert EmailLog.objects.filter(kind="usage.alert").count() == 2
