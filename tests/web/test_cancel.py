"""Cancellation from the billing page: owner only, confirmation with an optional reason (CAN-5),
service until the period end and Resume (CAN-2, CAN-3), a trial suspended at once (TRI-4, TRI-5)."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from subscriptions import billing

from .conftest import current


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def personal(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    return current(account)


def test_can5_cancel_asks_for_confirmation_and_keeps_the_reason(personal, client_owner, travel):
    travel("2026-04-10")
    page = _text(client_owner.get(reverse("billing:cancel")))
    assert "continues until <strong>2026-05-01</strong>" in page and "nothing is refunded" in page
    assert '<label for="id_reason">' in page and "Cancel my subscription" in page
    assert not current(personal.account).cancel_at_period_end  # the page alone changes nothing
    response = client_owner.post(reverse("billing:cancel"), {"reason": "Too expensive for us"})
    assert response.status_code == 302
    sub = current(personal.account)
    assert sub.cancel_at_period_end and sub.cancel_reason == "Too expensive for us"
    assert AuditEvent.objects.filter(action="cancellation.scheduled", reason="Too expensive for us").exists()


def test_can5_the_reason_is_optional(personal, client_owner):
    assert client_owner.post(reverse("billing:cancel"), {"reason": ""}).status_code == 302
    assert current(personal.account).cancel_at_period_end


def test_can3_after_cancelling_the_page_shows_until_when_and_resume(personal, client_owner, travel):
    travel("2026-04-10")
    client_owner.post(reverse("billing:cancel"), {"reason": ""})
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "service runs until 2026-05-01" in html and "Resume subscription" in html
    assert "No renewal charge is scheduled." in html and "None scheduled" in html
    assert client_owner.post(reverse("billing:resume")).status_code == 302
    assert not current(personal.account).cancel_at_period_end
    assert "Your subscription continues" in _text(client_owner.get(reverse("billing:overview")))


def test_can4_cancelling_a_trial_says_the_account_is_suspended_at_once(account, client_owner, travel):
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    page = _text(client_owner.get(reverse("billing:cancel")))
    assert "Your account is suspended at once" in page
    assert "reactivate the trial until 2026-04-15" in page and "Cancel my trial" in page
    client_owner.post(reverse("billing:cancel"), {"reason": "Just testing"})
    account.refresh_from_db()
    assert account.is_suspended and account.suspension_reason == "cancelled_trial"
    travel("2026-04-05")
    assert client_owner.post(reverse("billing:resume")).status_code == 302
    account.refresh_from_db()
    assert current(account).status == "trialing" and not account.is_suspended


def test_tri5_after_the_trial_end_date_reactivation_is_refused(account, client_owner, travel):
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    billing.cancel(current(account))
    travel("2026-04-16")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert "Reactivate trial" not in html
    response = client_owner.post(reverse("billing:resume"), follow=True)
    assert "There is no pending change to undo." in _text(response)
    assert current(account).status == "canceled"


def test_can1_free_plan_has_nothing_to_cancel(account, client_owner):
    response = client_owner.get(reverse("billing:cancel"), follow=True)
    assert "There is no paid subscription or trial to cancel." in _text(response)
