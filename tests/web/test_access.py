"""ACC-1 on the billing page: login everywhere, roles, CSRF, and another account's ids are a 404."""

import pytest
from django.test import Client
from django.urls import reverse

from invoices.models import Invoice
from subscriptions import billing

from .conftest import at, login

PAGES = [
    ("billing:overview", "get"), ("billing:plans", "get"), ("billing:change", "get"), ("billing:cancel", "get"),
    ("billing:extra_properties", "get"), ("billing:payment_method", "get"), ("billing:billing_details", "get"),
    ("billing:email_settings", "get"), ("billing:requests", "get"), ("invoices:list", "get"),
    ("billing:change_confirm", "post"), ("billing:resume", "post"), ("billing:extra_properties_confirm", "post"),
    ("billing:restore_request", "post"),
]
BILLING_ONLY = ["billing:plans", "billing:change", "billing:extra_properties", "billing:payment_method",
                "billing:billing_details", "billing:email_settings", "invoices:list"]


@pytest.fixture
def paid(account):
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    return Invoice.objects.get(account=account, number__isnull=False)


@pytest.mark.parametrize("name,method", PAGES)
def test_acc1_every_page_requires_login(db, name, method):
    response = getattr(Client(), method)(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_acc1_invoice_urls_require_login(paid):
    for name in ("invoices:detail", "invoices:pdf", "billing:refund_request"):
        response = Client().get(reverse(name, args=[paid.pk]))
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_acc1_member_sees_usage_only(account, member_user, paid):
    client = login(member_user)
    page = client.get(reverse("billing:overview"))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Usage in" in html and "Sessions this month" in html
    assert "Upcoming charges" not in html and paid.number not in html and "Change plan" not in html
    assert "usage only" in html
    for name in BILLING_ONLY + ["billing:cancel", "billing:requests"]:
        assert client.get(reverse(name)).status_code == 403, name
    assert client.get(reverse("invoices:detail", args=[paid.pk])).status_code == 403
    assert client.get(reverse("invoices:pdf", args=[paid.pk])).status_code == 403
    assert client.post(reverse("billing:change_confirm"),
                       {"plan": "advanced", "cycle": "monthly", "quoted_amount": "0"}).status_code == 403


def test_acc1_billing_role_changes_plans_and_sees_invoices_but_cannot_cancel(account, billing_user, paid):
    client = login(billing_user)
    for name in BILLING_ONLY:
        assert client.get(reverse(name)).status_code in (200, 302), name
    assert client.get(reverse("invoices:detail", args=[paid.pk])).status_code == 200
    overview = client.get(reverse("billing:overview")).content.decode()
    assert "Change plan" in overview and reverse("billing:cancel") not in overview
    assert client.get(reverse("billing:cancel")).status_code == 403
    assert client.post(reverse("billing:cancel"), {"reason": "x"}).status_code == 403
    assert not account.subscriptions.order_by("-id").first().cancel_at_period_end


def test_acc1_billing_role_cannot_resume_a_cancellation(account, billing_user, paid):
    sub = account.subscriptions.order_by("-id").first()
    billing.cancel(sub, reason="", now=at("2026-04-02"))
    response = login(billing_user).post(reverse("billing:resume"))
    assert response.status_code == 403
    assert account.subscriptions.order_by("-id").first().cancel_at_period_end


def test_acc1_another_accounts_invoice_and_credit_note_are_404(account, other_account, client_owner):
    billing.subscribe(other_account, "personal", "monthly", now=at("2026-04-01"))
    theirs = Invoice.objects.get(account=other_account, number__isnull=False)
    for name in ("invoices:detail", "invoices:pdf"):
        assert client_owner.get(reverse(name, args=[theirs.pk])).status_code == 404
    assert client_owner.post(reverse("billing:refund_request", args=[theirs.pk])).status_code == 404
    from invoices import services as ledger
    from invoices.models import CreditNote

    ledger.credit_note_issue(account=other_account, invoice=theirs, kind="correction", amount=theirs.total,
                             reason="test", now=at("2026-04-02"))
    note = CreditNote.objects.get(account=other_account)
    for name in ("invoices:credit_note", "invoices:credit_note_pdf"):
        assert client_owner.get(reverse(name, args=[note.pk])).status_code == 404


def test_acc1_draft_invoices_are_not_documents(account, client_owner):
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-01"))
    with pytest.raises(billing.PaymentDeclined):
        billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    draft = Invoice.objects.get(account=account)
    assert draft.number is None
    assert client_owner.get(reverse("invoices:detail", args=[draft.pk])).status_code == 404


def test_acc1_every_form_has_csrf(account, owner, paid):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    for name in ("billing:overview", "billing:cancel", "billing:payment_method", "billing:billing_details",
                 "billing:email_settings"):
        html = client.get(reverse(name)).content.decode()
        assert html.count('method="post"') == html.count("csrfmiddlewaretoken"), name
    quote = client.get(reverse("billing:change"), {"plan": "advanced", "cycle": "monthly"}).content.decode()
    assert "csrfmiddlewaretoken" in quote
    refused = client.post(reverse("billing:cancel"), {"reason": "no token"})
    assert refused.status_code == 403
    assert not account.subscriptions.order_by("-id").first().cancel_at_period_end
