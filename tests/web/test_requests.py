"""Customer requests: a refund of the trial-conversion charge (REF-2, REF-3) and the days a
monthly→yearly upgrade forfeited (UPG-3)."""

import pytest
from django.urls import reverse

from invoices.models import InvoiceKind, RefundRequest
from subscriptions import billing, scheduler
from subscriptions.models import RestoreRequest

from .conftest import at, current


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def converted(account, travel):
    """A trial started 2026-04-01 and converted (charged) on 2026-04-15."""
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    scheduler.run(now=at("2026-04-15T00:01"))
    invoice = account.invoices.get(kind=InvoiceKind.TRIAL_CONVERSION)
    assert invoice.status == "paid"
    return invoice


def test_ref2_owner_requests_a_refund_of_the_trial_conversion(converted, client_owner, travel):
    travel("2026-04-20")
    page = _text(client_owner.get(reverse("billing:requests")))
    assert f"Invoice {converted.number}" in page and "Request a refund of $14.00" in page
    detail = _text(client_owner.get(reverse("invoices:detail", args=[converted.pk])))
    assert "Request a refund" in detail
    response = client_owner.post(reverse("billing:refund_request", args=[converted.pk]), {"message": "Not for us"},
                                 follow=True)
    assert "Your refund request for invoice" in _text(response)
    request = RefundRequest.objects.get(invoice=converted)
    assert request.status == "pending" and request.message == "Not for us"
    page = _text(client_owner.get(reverse("billing:requests")))
    assert "Pending review" in page and "Request a refund of" not in page


def test_ref3_a_request_for_another_charge_is_refused_with_the_reason(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    invoice = account.invoices.get()
    assert "Request a refund" not in _text(client_owner.get(reverse("invoices:detail", args=[invoice.pk])))
    response = client_owner.post(reverse("billing:refund_request", args=[invoice.pk]), follow=True)
    assert "Your refund request was refused: Only the charge made when your free trial ended" in _text(response)
    assert RefundRequest.objects.get(invoice=invoice).status == "refused"


def test_ref2_after_30_days_the_button_is_gone_and_the_reason_shown(converted, client_owner, travel):
    travel("2026-05-20")
    page = _text(client_owner.get(reverse("billing:requests")))
    assert "Request a refund of" not in page and "within 30 days of the charge" in page
    response = client_owner.post(reverse("billing:refund_request", args=[converted.pk]), follow=True)
    assert "was refused" in _text(response)


def test_ref2_only_the_owner_may_request(converted, billing_user, travel):
    from .conftest import login

    travel("2026-04-20")
    assert login(billing_user).post(reverse("billing:refund_request", args=[converted.pk])).status_code == 403
    assert not RefundRequest.objects.exists()


@pytest.fixture
def yearly(account, travel):
    """Personal monthly from 2026-04-01, upgraded to Advanced yearly on Thu 2026-04-16 (15 days forfeited)."""
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    travel("2026-04-16")
    billing.change_plan(current(account), "advanced", "yearly")
    return current(account)


def test_upg3_restore_request_within_five_working_days(yearly, client_owner, travel):
    travel("2026-04-23")
    overview = _text(client_owner.get(reverse("billing:overview")))
    assert "Ask for my forfeited days" in overview
    response = client_owner.post(reverse("billing:restore_request"), follow=True)
    assert "You asked for 15 forfeited days" in _text(response)
    assert RestoreRequest.objects.get(subscription=yearly).days == 15
    assert "Restore 15 days" in _text(client_owner.get(reverse("billing:requests")))


def test_upg3_after_five_working_days_the_button_is_gone_and_a_post_is_refused(yearly, client_owner, travel):
    travel("2026-04-24")
    assert "Ask for my forfeited days" not in _text(client_owner.get(reverse("billing:overview")))
    page = _text(client_owner.get(reverse("billing:requests")))
    assert "the last day to ask was Thursday 2026-04-23" in page
    response = client_owner.post(reverse("billing:restore_request"), follow=True)
    assert "Your request was refused: Forfeited days can be restored only within 5 working days" in _text(response)
    assert not RestoreRequest.objects.exists()
