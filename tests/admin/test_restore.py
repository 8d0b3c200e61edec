"""UPG-3: restoring the monthly days a monthly -> yearly upgrade forfeited, decided in the admin."""

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AuditEvent
from subscriptions import billing, pricing, staff, terms
from subscriptions.models import RestoreRequest

from .conftest import OWNER, at, kinds, messages_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def upgraded(account):
    """The policy's example: Personal monthly 04-01 -> 05-01, Advanced yearly on Thu 2026-04-16."""
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    billing.change_plan(sub, "advanced", "yearly", now=at("2026-04-16"))
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (at("2026-04-16"), at("2027-04-16"))
    mail.outbox.clear()
    return sub


def test_upg3_request_up_to_the_fifth_working_day_is_accepted_and_approval_moves_the_period_end(
    upgraded, support, support_client, committed, clock
):
    request = billing.request_restore_days(upgraded, actor=upgraded.account.owner, now=at("2026-04-23T18:00"))
    assert (request.days, request.upgraded_on.isoformat(), request.status) == (15, "2026-04-16", "pending")
    assert AuditEvent.objects.filter(action="restore.requested").exists()
    url = reverse("admin:subscriptions_restorerequest_change", args=[request.pk])
    with clock("2026-04-24T10:00"):
        page = support_client.get(url).content.decode()
        assert "from 2027-04-16 to <strong>2027-05-01</strong>" in page and "Thursday 2026-04-23" in page
        with committed():
            response = support_client.post(reverse("admin:subscriptions_restorerequest_decide", args=[request.pk]),
                                           {"approve": "1", "reason": ""}, follow=True)
    assert any("the period now ends on 2027-05-01" in m for m in messages_of(response))
    upgraded.refresh_from_db()
    assert upgraded.current_period_end == at("2027-05-01") and upgraded.current_period_start == at("2026-04-16")
    assert pricing.period_bounds(upgraded.anchor_at, "yearly", 1, upgraded.zone) == (at("2027-05-01"), at("2028-05-01"))
    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decided_at) == ("approved", support, at("2026-04-24T10:00"))
    event = AuditEvent.objects.get(action="restore.approved")
    assert event.before["period_end"] == "2027-04-16T00:00:00+00:00"
    assert event.after["period_end"] == "2027-05-01T00:00:00+00:00" and event.actor == support
    assert kinds() == [("restore.decided", [OWNER])]
    assert mail.outbox[0].subject == "Your request to restore 15 days was approved"
    assert "May 1, 2027" in mail.outbox[0].body


def test_upg3_request_on_the_sixth_working_day_is_refused_with_why(upgraded):
    with pytest.raises(billing.NotEligible, match="within 5 working days.*Thursday 2026-04-16.*Thursday 2026-04-23"):
        billing.request_restore_days(upgraded, now=at("2026-04-24T09:00"))
    assert terms.restore_refusal(upgraded, now=at("2026-04-24")).startswith("Forfeited days can be restored only")
    assert not RestoreRequest.objects.exists()


def test_upg3_one_request_per_upgrade(upgraded):
    billing.request_restore_days(upgraded, now=at("2026-04-17"))
    with pytest.raises(billing.NotEligible, match="already asked for these 15 days on 2026-04-17"):
        billing.request_restore_days(upgraded, now=at("2026-04-18"))


def test_upg3_only_after_a_monthly_to_yearly_upgrade(account):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    with pytest.raises(billing.NotEligible, match="only after an upgrade from a monthly to a yearly plan"):
        billing.request_restore_days(sub, now=at("2026-04-17"))


def test_upg3_rejection_needs_a_reason_and_leaves_the_period_alone(upgraded, support, support_client, committed,
                                                                   clock):
    request = billing.request_restore_days(upgraded, now=at("2026-04-20"))
    decide = reverse("admin:subscriptions_restorerequest_decide", args=[request.pk])
    with clock("2026-04-21"):
        support_client.post(decide, {"reject": "1", "reason": ""})
        request.refresh_from_db()
        assert request.status == "pending"
        with committed():
            support_client.post(decide, {"reject": "1", "reason": "The days were already credited by phone."})
    request.refresh_from_db()
    upgraded.refresh_from_db()
    assert (request.status, request.decision_reason) == ("rejected", "The days were already credited by phone.")
    assert upgraded.current_period_end == at("2027-04-16")
    assert AuditEvent.objects.get(action="restore.rejected").reason == "The days were already credited by phone."
    assert kinds() == [("restore.decided", [OWNER])]
    assert "declined" in mail.outbox[0].subject


def test_upg3_only_restore_deciders_may_decide(upgraded, manager):
    request = billing.request_restore_days(upgraded, now=at("2026-04-20"))
    with pytest.raises(staff.NotPermitted, match="decide restore-days requests"):
        staff.decide_restore(request, approve=True, actor=manager, now=at("2026-04-21"))
