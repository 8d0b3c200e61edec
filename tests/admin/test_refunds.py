"""Trial refunds (REF-2..5) and refunds for a system failure (REF-4), end to end through the admin."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AccountFlag, AuditEvent, FlagKind, Integration, LoginEvent, UsageDay
from invoices.models import (
    CreditNote,
    CreditNoteKind,
    Invoice,
    InvoiceKind,
    Payment,
    RefundRequest,
    SandboxCharge,
)
from subscriptions import billing, pricing, scheduler, staff, terms
from tests.factories import PropertyFactory

from .conftest import OWNER, at, kinds, messages_of

pytestmark = pytest.mark.django_db


def page(request):
    return reverse("admin:invoices_refundrequest_change", args=[request.pk])


def decide(request):
    return reverse("admin:invoices_refundrequest_decide", args=[request.pk])


def current(account):
    return account.subscriptions.select_related("plan").order_by("-id").first()


# --- REF-2: request, evidence, approval --------------------------------------------------------------


def test_ref2_owner_requests_a_refund_within_30_days_of_the_trial_charge(converted):
    owner = converted.account.owner
    request = billing.request_refund(converted, message="We never installed it.", actor=owner, now=at("2026-05-15"))
    assert (request.status, request.requested_by, request.message) == ("pending", owner, "We never installed it.")
    event = AuditEvent.objects.get(action="refund.requested")
    assert event.actor == owner and event.after["amount"] == "14.00"


def test_ref2_request_after_the_30_day_window_is_refused_with_the_date(converted):
    with pytest.raises(billing.NotEligible, match="within 30 days.*made on 2026-04-15.*last day to ask was 2026-05-15"):
        billing.request_refund(converted, now=at("2026-05-16T09:00"))
    refused = RefundRequest.objects.get(invoice=converted)
    assert refused.status == "refused" and "within 30 days" in refused.refusal_reason


def test_ref2_billing_manager_approves_in_full_ends_the_subscription_and_emails_the_owner(
    converted, manager, manager_client, committed, clock
):
    account = converted.account
    request = billing.request_refund(converted, actor=account.owner, now=at("2026-04-20"))
    with clock("2026-04-21T10:00"):
        response = manager_client.get(page(request))
        assert response.status_code == 200
        body = response.content.decode()
        assert "No usage during the trial" in body and "Approve and refund $14.00" in body
        with committed():
            response = manager_client.post(decide(request), {"approve": "1", "reason": "No usage at all."},
                                           follow=True)
    assert any("Refunded $14.00" in m for m in messages_of(response))
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_reason) == ("refunded", manager, "No usage at all.")
    assert request.decided_at == at("2026-04-21T10:00")
    # Money: the gateway refunded the whole charge; a refund credit note names the invoice.
    payment = Payment.objects.get(invoice=converted, status="succeeded")
    assert payment.refunded_amount == Decimal("14.00")
    assert SandboxCharge.objects.get(reference=payment.gateway_reference).refunded_amount == Decimal("14.00")
    note = CreditNote.objects.get(invoice=converted)
    assert (note.kind, note.amount, note.remaining, note.issued_by) == (CreditNoteKind.REFUND, Decimal("14.00"),
                                                                       Decimal("0.00"), manager)
    assert request.refund.credit_note == note
    # The subscription ended and the account is on Free.
    assert current(account).plan.code == "free"
    assert account.subscriptions.get(pk=converted.subscription_id).status == "canceled"
    # Audit: who, when, why, before and after.
    event = AuditEvent.objects.get(action="refund.approved")
    assert (event.actor, event.reason, event.before, event.after["status"]) == (
        manager, "No usage at all.", {"status": "pending"}, "refunded")
    assert event.after["credit_notes"] == [note.number]
    # The owner is e-mailed the outcome (REF-5).
    assert kinds() == [("refund.decided", [OWNER])]
    assert mail.outbox[0].subject == "Your refund request was approved"
    assert "$14.00" in mail.outbox[0].body


def test_ref2_approving_twice_refunds_once(converted, manager):
    request = billing.request_refund(converted, now=at("2026-04-20"))
    staff.decide_refund(request, approve=True, reason="No usage", actor=manager, now=at("2026-04-21"))
    with pytest.raises(billing.InvalidChange, match="already decided"):
        staff.decide_refund(request, approve=True, reason="again", actor=manager, now=at("2026-04-21"))
    assert SandboxCharge.objects.get().refunded_amount == Decimal("14.00")
    assert CreditNote.objects.filter(kind="refund").count() == 1


def test_ref2_evidence_shows_the_trial_activity_beside_the_decision(converted, support_client, clock):
    account = converted.account
    site = PropertyFactory(account=account, name="Shop", domain="shop.acme.test", created_at=at("2026-04-02"),
                           first_event_at=at("2026-04-03T12:00"))
    PropertyFactory(account=account, name="Blog", domain="blog.acme.test", created_at=at("2026-04-02"))
    UsageDay.objects.create(property=site, account=account, day=at("2026-04-03").date(), sessions=120)
    UsageDay.objects.create(property=site, account=account, day=at("2026-04-04").date(), sessions=80)
    UsageDay.objects.create(property=site, account=account, day=at("2026-05-04").date(), sessions=999)  # after
    Integration.objects.create(account=account, kind="google_ads", name="Ads", connected_at=at("2026-04-05"))
    LoginEvent.objects.create(user=account.owner, account=account, at=at("2026-04-02T09:00"), ip="192.0.2.1")
    LoginEvent.objects.create(user=account.owner, account=account, at=at("2026-04-09T09:00"))
    request = billing.request_refund(converted, now=at("2026-04-20"))
    with clock("2026-04-21"):
        body = support_client.get(page(request)).content.decode()
    assert "Usage during the trial: 200 sessions on 2 days" in body
    assert "2026-04-03 12:00 (during the trial)" in body and "shop.acme.test" in body
    assert "blog.acme.test" in body and "never" in body
    assert "Fri 2026-04-03</td><td>120" in body and "Sat 2026-04-04</td><td>80" in body and "<td>999" not in body
    assert "google_ads (Ads)" in body
    assert "Logins during the trial: 2" in body and "192.0.2.1" in body
    assert "No earlier trial, no identity match, no flag." in body


def test_tri2_refund_evidence_shows_identity_matches(converted, support_client, clock, catalog):
    from tests.factories import AccountFactory, UserFactory

    earlier = AccountFactory(name="Earlier Co", owner=UserFactory(username="first@acme.test"))
    billing.set_payment_method(earlier, "pm_card_visa", now=at("2026-01-01"))  # the same card as Acme's
    earlier.trial_used_at = at("2026-01-02")
    earlier.save(update_fields=["trial_used_at"])
    request = billing.request_refund(converted, now=at("2026-04-20"))
    with clock("2026-04-21"):
        body = support_client.get(page(request)).content.decode()
    assert f"Earlier Co</a> (#{earlier.pk})" in body and "same card (Visa •••• 4242)" in body


# --- REF-3: refused at once ----------------------------------------------------------------------------


def test_ref3_refused_at_once_when_the_charge_is_not_a_trial_conversion(account):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    invoice = Invoice.objects.get(subscription=sub, kind=InvoiceKind.SUBSCRIPTION)
    with pytest.raises(billing.NotEligible, match="Only the charge made when your free trial ended"):
        billing.request_refund(invoice, now=at("2026-04-02"))
    refused = RefundRequest.objects.get()
    assert refused.status == "refused" and refused.refusal_reason.startswith("Only the charge")
    assert AuditEvent.objects.filter(action="refund.refused", object_id=str(refused.pk)).exists()


def test_ref3_refused_at_once_when_already_requested_or_already_refunded(converted, manager):
    first = billing.request_refund(converted, now=at("2026-04-20"))
    with pytest.raises(billing.NotEligible, match="already requested on 2026-04-20 \\(pending review\\)"):
        billing.request_refund(converted, now=at("2026-04-21"))
    staff.decide_refund(first, approve=True, reason="No usage", actor=manager, now=at("2026-04-22"))
    with pytest.raises(billing.NotEligible, match="already refunded"):
        billing.request_refund(converted, now=at("2026-04-23"))
    assert RefundRequest.objects.filter(status="refused").count() == 2


def test_ref3_refused_at_once_when_the_account_is_flagged_for_trial_abuse(converted):
    AccountFlag.objects.create(account=converted.account, kind=FlagKind.TRIAL_ABUSE, detail="same card")
    with pytest.raises(billing.NotEligible, match="flagged for review of its free trial"):
        billing.request_refund(converted, now=at("2026-04-20"))
    assert terms.refund_refusal(converted, now=at("2026-04-20")).startswith("This account is flagged")


# --- REF-5: who decides ------------------------------------------------------------------------------


def test_ref5_support_reviews_but_cannot_approve(converted, support, support_client, clock):
    request = billing.request_refund(converted, now=at("2026-04-20"))
    with clock("2026-04-21"):
        body = support_client.get(page(request)).content.decode()
        assert "Approving needs the “approve refunds” permission" in body
        assert 'name="approve"' not in body and 'name="reject"' in body
        response = support_client.post(decide(request), {"approve": "1", "reason": "Looks fine"})
    assert response.status_code == 403
    with pytest.raises(staff.NotPermitted, match="approve refunds"):
        staff.decide_refund(request, approve=True, reason="Looks fine", actor=support, now=at("2026-04-21"))
    request.refresh_from_db()
    assert request.status == "pending" and not CreditNote.objects.exists()
    assert Payment.objects.get(invoice=converted).refunded_amount == Decimal("0")


def test_ref5_rejection_needs_a_reason_and_the_owner_is_emailed(converted, support, support_client, committed, clock):
    request = billing.request_refund(converted, now=at("2026-04-20"))
    with clock("2026-04-22"):
        response = support_client.post(decide(request), {"reject": "1", "reason": "  "}, follow=True)
        assert any("Give a reason" in m for m in messages_of(response))
        request.refresh_from_db()
        assert request.status == "pending" and not mail.outbox
        with committed():
            support_client.post(decide(request), {"reject": "1", "reason": "Sessions were tracked on 9 days."})
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_reason) == (
        "rejected", support, "Sessions were tracked on 9 days.")
    assert request.decided_at == at("2026-04-22")
    event = AuditEvent.objects.get(action="refund.rejected")
    assert event.actor == support and event.reason == "Sessions were tracked on 9 days."
    assert kinds() == [("refund.decided", [OWNER])]
    assert mail.outbox[0].subject == "Your refund request was declined"
    assert "Sessions were tracked on 9 days." in mail.outbox[0].body
    assert current(converted.account).plan.code == "personal"  # nothing else changes


# --- REF-4: refund one invoice, extend a period ------------------------------------------------------


def test_ref4_refund_one_invoice_for_a_system_failure(account, manager, manager_client, committed, clock):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    invoice = Invoice.objects.get(subscription=sub)
    url = reverse("admin:accounts_account_refund_invoice", args=[account.pk])
    with clock("2026-04-10"):
        form = manager_client.get(f"{url}?invoice={invoice.pk}")
        assert form.status_code == 200 and invoice.number in form.content.decode()
        missing = manager_client.post(url, {"invoice": invoice.pk, "reason": ""})
        assert missing.status_code == 200 and "This field is required" in missing.content.decode()
        assert not CreditNote.objects.exists()
        with committed():
            response = manager_client.post(url, {"invoice": invoice.pk, "reason": "Tracking outage 04-02..04-05"},
                                           follow=True)
    note = CreditNote.objects.get(invoice=invoice)
    assert any(f"Refunded $29.00 on invoice {invoice.number}; credit note {note.number}" in m
               for m in messages_of(response))
    assert (note.kind, note.amount, note.remaining) == ("refund", Decimal("29.00"), Decimal("0.00"))
    assert note.reason == "Refund for a system failure: Tracking outage 04-02..04-05"
    assert SandboxCharge.objects.get().refunded_amount == Decimal("29.00")
    event = AuditEvent.objects.get(action="invoice.refunded")
    assert (event.actor, event.reason, event.before, event.after["refunded"]) == (
        manager, "Tracking outage 04-02..04-05", {"refunded": "0.00"}, "29.00")
    assert current(account).plan.code == "advanced"  # the subscription does not change
    assert kinds() == [("credit_note.issued", [OWNER])]
    assert note.number in mail.outbox[0].subject
    with pytest.raises(billing.InvalidChange, match="Nothing paid by card is left"):
        staff.refund_invoice(invoice, reason="again", actor=manager, now=at("2026-04-11"))


def test_ref4_extend_the_current_period_by_n_days(account, manager, manager_client, committed, clock):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    url = reverse("admin:accounts_account_extend", args=[account.pk])
    with clock("2026-04-10"), committed():
        manager_client.post(url, {"days": "10", "reason": "Dashboard down for 10 days"})
    sub.refresh_from_db()
    assert sub.current_period_end == at("2026-05-11") and sub.anchor_at == at("2026-04-11")
    assert sub.current_period_start == at("2026-04-01")
    assert pricing.period_bounds(sub.anchor_at, sub.cycle, 1, sub.zone) == (at("2026-05-11"), at("2026-06-11"))
    event = AuditEvent.objects.get(action="period.extended")
    assert event.reason == "Dashboard down for 10 days" and event.before["period_end"] == "2026-05-01T00:00:00+00:00"
    assert event.after["period_end"] == "2026-05-11T00:00:00+00:00" and event.actor == manager
    assert kinds() == [("period.extended", [OWNER])]
    assert "May 11, 2026" in mail.outbox[0].body
    assert not CreditNote.objects.exists() and Invoice.objects.count() == 1  # no money moves


def test_ref4_support_cannot_refund_or_extend(account, support_client, clock):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    invoice = Invoice.objects.get(subscription=sub)
    with clock("2026-04-10"):
        for name in ("refund_invoice", "extend"):
            url = reverse(f"admin:accounts_account_{name}", args=[account.pk])
            assert support_client.get(url).status_code == 403
            assert support_client.post(url, {"invoice": invoice.pk, "days": 3, "reason": "x"}).status_code == 403
    sub.refresh_from_db()
    assert sub.current_period_end == at("2026-05-01") and not CreditNote.objects.exists()
    assert sub.current_period_end - sub.current_period_start == timedelta(days=30)


# --- REF-6: a paid change after the conversion shows the product was used -------------------------------


def test_ref6_a_paid_change_after_the_conversion_closes_the_open_request_and_tells_the_owner(
    converted, manager, committed
):
    """The reported case: a $14 trial refund was approved after the owner had paid for a yearly
    upgrade, and approval ended the prepaid year. Now the upgrade closes the request instead."""
    account = converted.account
    request = billing.request_refund(converted, actor=account.owner, now=at("2026-04-20"))
    with committed():
        quote = billing.change_plan(current(account), "advanced", "yearly", actor=account.owner,
                                    now=at("2026-04-22T09:00"))
    upgrade = quote.invoice
    request.refresh_from_db()
    assert request.status == "refused" and f"invoice {upgrade.number}" in request.refusal_reason
    assert "shows the product was used (REF-6)" in request.refusal_reason
    assert AuditEvent.objects.filter(action="refund.closed", object_id=str(request.pk)).exists()
    assert ("refund.decided", [OWNER]) in kinds()
    with pytest.raises(billing.InvalidChange, match="already decided"):
        staff.decide_refund(request, approve=True, reason="No usage", actor=manager, now=at("2026-04-23"))
    yearly = current(account)
    assert (yearly.plan.code, yearly.cycle, yearly.status) == ("advanced", "yearly", "active")  # the year stays
    assert not Payment.objects.filter(invoice=converted, refunded_amount__gt=0).exists()


def test_ref6_a_request_after_a_paid_change_is_refused_at_once_with_why(converted):
    account = converted.account
    quote = billing.change_plan(current(account), "advanced", "monthly", now=at("2026-04-18"))
    with pytest.raises(billing.NotEligible, match=f"invoice {quote.invoice.number}.*shows the product was used"):
        billing.request_refund(converted, now=at("2026-04-20"))
    assert RefundRequest.objects.get().status == "refused"


def test_ref6_staff_see_every_payment_since_the_conversion_and_the_paid_time_left(
    converted, manager_client, clock
):
    """Before deciding, the review shows later payments (here a renewal) and the paid time left."""
    account = converted.account
    with clock("2026-05-14T09:00"):
        request = billing.request_refund(converted, now=at("2026-05-14T09:00"))
    scheduler.run(at("2026-05-14T08:30"))  # the renewal for 05-15 to 06-15, paid 24 hours ahead
    renewal = Invoice.objects.get(account=account, kind=InvoiceKind.RENEWAL)
    with clock("2026-05-14T10:00"):
        body = manager_client.get(page(request)).content.decode()
    assert f">{renewal.number}</a> · Renewal" in body and "14.00 USD" in body
    assert "Paid service until 2026-06-15: 32 days left." in body
