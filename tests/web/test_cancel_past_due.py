"""CAN-6: cancelling while past due, with the period in force unpaid, ends the subscription at once:
the unpaid renewal is voided, the account moves to Free (excess properties paused), and the cancel
page says so before the owner confirms (never "the period you paid for")."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from core.models import PendingEvent
from invoices.models import Invoice
from subscriptions import billing, renewals
from subscriptions.models import Status
from tests.factories import PropertyFactory
from tests.subscriptions.conftest import at

from .conftest import current


@pytest.fixture
def past_due(account, travel):
    """Personal monthly from 2026-04-01, 3 properties; the renewal of 2026-05-01 fails and the
    unpaid period has begun."""
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    for _ in range(3):
        PropertyFactory(account=account)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-02"))
    renewals.renew(current(account).pk, at("2026-04-30T01:00"))
    renewals.rollover(current(account).pk, at("2026-05-01T01:00"))
    sub = current(account)
    assert sub.status == Status.PAST_DUE and sub.current_period_start == at("2026-05-01")
    travel("2026-05-03")
    return sub


def test_can6_cancel_page_while_past_due_says_it_ends_at_once(past_due, client_owner):
    page = client_owner.get(reverse("billing:cancel")).content.decode()
    invoice = Invoice.objects.get(subscription=past_due, kind="renewal", status="open")
    assert "Your subscription ends at once." in page
    assert f"invoice {invoice.number} ($14.00, 2026-05-01 to 2026-06-01) is voided" in page
    assert "moves to the Free plan as soon as you confirm" in page
    assert "the period you paid for" not in page and "continues until" not in page
    assert current(past_due.account).status == Status.PAST_DUE  # the page alone changes nothing


def test_can6_cancelling_while_past_due_ends_at_once_and_moves_to_free(past_due, client_owner):
    account = past_due.account
    PendingEvent.objects.all().delete()
    response = client_owner.post(reverse("billing:cancel"), {"reason": "Card expired, moving on"}, follow=True)
    assert "Your subscription has ended and your account is on the Free plan" in response.content.decode()
    past_due.refresh_from_db()
    assert past_due.status == Status.CANCELED and past_due.ended_at is not None
    assert past_due.cancel_reason == "Card expired, moving on"
    assert current(account).plan.code == "free" and current(account).status == Status.ACTIVE
    assert Invoice.objects.get(subscription=past_due, kind="renewal").status == "void"
    assert account.properties.live().filter(status="paused").count() == 2  # Free allows 1: paused, not deleted
    assert account.properties.live().count() == 3
    effective = AuditEvent.objects.get(action="cancellation.effective")
    assert effective.reason == "Card expired, moving on" and effective.after["plan"] == "free"
    assert not AuditEvent.objects.filter(action="cancellation.scheduled").exists()
    kinds = list(PendingEvent.objects.values_list("kind", flat=True))  # the outbox, before delivery
    assert "cancellation.effective" in kinds and "cancellation.scheduled" not in kinds


def test_can6_in_the_24_hours_before_the_unpaid_period_the_paid_period_runs_out(account, travel):
    """The renewal failed 24 hours ahead (REN-1) but the paid period is still in force: CAN-2."""
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-02"))
    renewals.renew(current(account).pk, at("2026-04-30T01:00"))
    sub = billing.cancel(current(account), now=at("2026-04-30T02:00"))
    assert sub.status == Status.ACTIVE and sub.cancel_at_period_end
    assert sub.current_period_end == at("2026-05-01")
    assert Invoice.objects.get(subscription=sub, kind="renewal").status == "void"
