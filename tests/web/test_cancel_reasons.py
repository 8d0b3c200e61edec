"""CAN-5: cancelling asks for an optional reason, a short list plus free text, kept on the
subscription for staff (the admin's subscription page and a list filter)."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from subscriptions import billing
from subscriptions.models import CancelReason
from tests.admin.conftest import staff_member

from .conftest import current


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def personal(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    return current(account)


def test_can5_the_cancel_page_offers_the_short_list_and_free_text(personal, client_owner):
    page = _text(client_owner.get(reverse("billing:cancel")))
    assert "<legend>Why are you cancelling? (optional)</legend>" in page
    for code, label in CancelReason.choices:
        assert f'value="{code}"' in page and label in page
    assert '<input type="radio" name="reason_code" value="" id="id_reason_code_0" checked>' in page  # preselected
    assert "I would rather not say" in page
    assert '<label for="id_reason">Anything else you want to tell us? (optional)</label>' in page


def test_can5_the_chosen_reason_and_the_words_are_kept_and_audited(personal, client_owner):
    response = client_owner.post(reverse("billing:cancel"), {"reason_code": "too_expensive",
                                                             "reason": "  We only need it in summer.  "})
    assert response.status_code == 302
    sub = current(personal.account)
    assert sub.cancel_at_period_end
    assert sub.cancel_reason_code == "too_expensive" and sub.cancel_reason == "We only need it in summer."
    assert sub.get_cancel_reason_code_display() == "It is too expensive"
    event = AuditEvent.objects.get(action="cancellation.scheduled")
    assert event.after["cancel_reason_code"] == "too_expensive" and event.reason == "We only need it in summer."


def test_can5_no_reason_at_all_is_fine(personal, client_owner):
    assert client_owner.post(reverse("billing:cancel"), {"reason_code": "", "reason": ""}).status_code == 302
    sub = current(personal.account)
    assert sub.cancel_at_period_end and sub.cancel_reason_code == "" and sub.cancel_reason == ""


def test_can5_a_code_not_on_the_list_is_refused_and_nothing_changes(personal, client_owner):
    response = client_owner.post(reverse("billing:cancel"), {"reason_code": "hacked", "reason": ""})
    assert response.status_code == 200 and "Select a valid choice" in _text(response)
    assert not current(personal.account).cancel_at_period_end
    with pytest.raises(billing.InvalidChange, match="Choose a reason from the list"):
        billing.cancel(personal, reason_code="hacked")


def test_can5_a_cancelled_trial_keeps_its_reason_and_reactivating_clears_it(account, client_owner, travel):
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    client_owner.post(reverse("billing:cancel"), {"reason_code": "missing_features", "reason": "No Shopify"})
    sub = current(account)
    assert sub.status == "canceled" and sub.cancel_reason_code == "missing_features"
    assert sub.cancel_reason == "No Shopify"
    billing.resume(sub)
    sub.refresh_from_db()
    assert sub.status == "trialing" and sub.cancel_reason_code == "" and sub.cancel_reason == ""


def test_can5_resuming_clears_the_reason_but_the_audit_log_keeps_it(personal):
    billing.cancel(personal, reason_code="unused", reason="Quiet season")
    billing.resume(personal)
    personal.refresh_from_db()
    assert personal.cancel_reason_code == "" and not personal.cancel_at_period_end
    assert AuditEvent.objects.filter(action="cancellation.scheduled", after__cancel_reason_code="unused",
                                     reason="Quiet season").exists()


def test_can5_staff_see_the_reason_on_the_subscription_and_filter_by_it(personal, account):
    from django.test import Client

    from accounts.groups import SUPPORT, ensure_staff_groups
    from tests.factories import AccountFactory

    billing.cancel(personal, reason_code="switched_service", reason="Moving to a competitor")
    other = AccountFactory()
    billing.set_payment_method(other, "pm_card_visa")
    billing.subscribe(other, "personal", "monthly")
    billing.cancel(current(other), reason_code="too_expensive")
    support = staff_member("support-can5@prorata.test", ensure_staff_groups()[SUPPORT])
    client = Client()
    client.force_login(support)
    page = _text(client.get(reverse("admin:subscriptions_subscription_change", args=[personal.pk])))
    assert "Cancellation reason (CAN-5)" in page
    assert "I am switching to another service" in page and "Moving to a competitor" in page
    listing = client.get(reverse("admin:subscriptions_subscription_changelist"),
                         {"cancel_reason_code": "switched_service"})
    html = _text(listing)
    assert "By cancellation reason" in html
    assert f"/admin/subscriptions/subscription/{personal.pk}/change/" in html
    assert f"/admin/subscriptions/subscription/{current(other).pk}/change/" not in html
