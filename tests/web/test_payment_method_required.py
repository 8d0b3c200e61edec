"""PAY-6: anything that leads to a charge (resuming a cancelled subscription, a plan change, a
purchase) needs a way to pay; without a card on file it is refused with a link to add one, and
nothing changes."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from subscriptions import billing
from tests.subscriptions.conftest import at

from .conftest import current


@pytest.fixture
def cancelled_without_card(account, travel):
    """Personal monthly from 2026-04-01, cancelled on 04-10, then the card removed (allowed: no
    charge is scheduled any more)."""
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    travel("2026-04-10")
    billing.cancel(current(account))
    billing.payment_method_remove(account)
    return current(account)


def test_pay6_resume_without_a_card_is_refused_with_a_link_to_add_one(cancelled_without_card, client_owner):
    response = client_owner.post(reverse("billing:resume"))
    page = response.content.decode()
    assert response.status_code == 409
    assert "There is no card on file. Add a payment method first to resume your Personal subscription" in page
    assert f'href="{reverse("billing:payment_method")}" id="add-card"' in page
    assert "renews as usual" not in page
    sub = current(cancelled_without_card.account)
    assert sub.cancel_at_period_end  # nothing changed
    assert not AuditEvent.objects.filter(action="cancellation.undone").exists()


def test_pay6_resume_works_again_once_a_card_is_added(cancelled_without_card, client_owner):
    billing.set_payment_method(cancelled_without_card.account, "pm_card_visa", now=at("2026-04-11"))
    assert client_owner.post(reverse("billing:resume")).status_code == 302
    assert not current(cancelled_without_card.account).cancel_at_period_end


def test_pay6_upgrade_and_extra_properties_without_a_card_are_refused(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "advanced", "monthly")
    billing.cancel(current(account))
    billing.payment_method_remove(account)
    plans = client_owner.get(reverse("billing:plans")).content.decode()
    assert 'id="no-card"' in plans and "add one before a change that is charged" in plans
    assert "free trial" not in plans  # a paying customer is offered no trial (TRI-1)
    page = client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "yearly"}).content.decode()
    assert "Add a payment method first to change to Advanced" in page and 'id="add-card"' in page
    response = client_owner.post(reverse("billing:change_confirm"),
                                 {"plan": "advanced", "cycle": "yearly", "quoted_amount": "278.04"})
    assert response.status_code == 409 and current(account).cycle == "monthly"
    page = client_owner.get(reverse("billing:extra_properties"), {"quantity": 2}).content.decode()
    assert "Add a payment method first to change your extra properties" in page
    with pytest.raises(billing.PaymentMethodRequired):
        billing.set_extra_properties(current(account), 2)
    assert current(account).extra_properties == 0


def test_pay6_a_move_to_free_needs_no_card(account, travel):
    """The one plan change that leads to no charge stays open without a card."""
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    billing.cancel(current(account))
    billing.payment_method_remove(account)
    billing.change_plan(current(account), "free", "monthly")
    sub = current(account)
    assert sub.scheduled_plan.code == "free"
