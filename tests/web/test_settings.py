"""Billing details (INV-4) and e-mail settings (NOT-2) on the billing page."""

import pytest
from django.urls import reverse

from accounts.models import AuditEvent
from invoices.models import Invoice
from subscriptions import billing

from .conftest import current


def test_inv4_billing_details_are_saved_audited_and_on_later_invoices_only(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    page = client_owner.get(reverse("billing:billing_details")).content.decode()
    for field in ("company", "address", "country", "vat_id"):
        assert f'<label for="id_{field}">' in page
    response = client_owner.post(reverse("billing:billing_details"), {
        "company": "Acme GmbH", "address": "Hauptstr. 1\n10115 Berlin", "country": "de", "vat_id": "DE 136 695 976"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert (account.company, account.country, account.vat_id) == ("Acme GmbH", "DE", "DE136695976")
    event = AuditEvent.objects.get(action="billing_details.updated")
    assert event.before["company"] == "" and event.after["company"] == "Acme GmbH"
    travel("2026-04-16")
    billing.change_plan(current(account), "advanced", "monthly")
    first, later = Invoice.objects.filter(account=account).order_by("id")
    assert first.bill_to_company == "" and later.bill_to_company == "Acme GmbH"
    html = client_owner.get(reverse("invoices:detail", args=[later.pk])).content.decode()
    assert "Acme GmbH" in html and "Germany" in html and "VAT ID DE136695976" in html


def test_inv4_the_country_is_chosen_from_the_iso_list(account, client_owner):
    page = client_owner.get(reverse("billing:billing_details")).content.decode()
    assert '<select name="country"' in page and '<option value="DE">Germany (DE)</option>' in page


def test_inv4_a_country_code_that_is_no_country_is_refused_and_nothing_is_saved(account, client_owner):
    for code in ("D1", "XX", "ZZ"):  # two letters are not enough: it must be an ISO 3166-1 country
        response = client_owner.post(reverse("billing:billing_details"), {"company": "Acme", "country": code})
        assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    account.refresh_from_db()
    assert (account.company, account.country) == ("", "")
    assert not AuditEvent.objects.filter(action="billing_details.updated").exists()


def test_inv4_the_service_refuses_an_unknown_country_with_a_clear_message(account):
    from accounts.preferences import billing_details_update
    from accounts.services import AccountError

    with pytest.raises(AccountError, match="'XX' is not a country code"):
        billing_details_update(account, company="Acme", address="", country="xx", vat_id="")
    account.refresh_from_db()
    assert account.company == ""


def test_not2_switches_turn_off_non_billing_kinds(account, client_owner):
    page = client_owner.get(reverse("billing:email_settings")).content.decode()
    assert '<label for="id_email_usage_alerts">' in page and "Billing e-mails always reach you" in page
    response = client_owner.post(reverse("billing:email_settings"), {"email_usage_alerts": "on"})
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.email_usage_alerts is True and account.email_product_news is False
    event = AuditEvent.objects.get(action="email_preferences.updated")
    assert event.before == {"email_usage_alerts": True, "email_product_news": True}


def test_not2_unsubscribe_from_all_keeps_billing_email(account, client_owner):
    response = client_owner.post(reverse("billing:email_settings"), {"unsubscribe_all": "1"}, follow=True)
    html = response.content.decode()
    assert "Billing e-mails still reach you" in html
    account.refresh_from_db()
    assert not account.email_usage_alerts and not account.email_product_news
    from notifications.services import wants

    assert wants(account, "billing") and not wants(account, "usage_alerts") and not wants(account, "product_news")
