"""The billing details page (INV-4): VAT IDs checked and refused with the reason (TAX-4), countries
by their ISO names, the optional live VIES check, the billing e-mail address (PAY-5)."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from accounts import preferences
from accounts.models import AuditEvent

DETAILS = {"company": "Acme SARL", "address": "1 rue Exemple\n75001 Paris", "country": "FR"}


def post(client, **fields):
    return client.post(reverse("billing:billing_details"), {**DETAILS, **fields})


@pytest.mark.parametrize(("country", "vat_id", "reason"), [
    ("FR", "FR00303265045", "The check digit of FR00303265045 is wrong"),
    ("AT", "ATU13585628", "The check digit of ATU13585628 is wrong"),
    ("FR", "not a vat id !!", "is not written like a VAT ID from France"),
    ("FR", "DE136695976", "A VAT ID from France starts with FR"),
    ("DE", "DE1366959", "has the wrong number of characters for a VAT ID from Germany"),
    ("", "FR40303265045", "Choose the country of your billing address first"),
    # Issue 28, finding 6: an EU VAT ID on an address outside the EU was accepted.
    ("US", "DE136695976", "DE136695976 is a VAT ID from Germany, not from United States of America"),
    ("CH", "EL094259216", "EL094259216 is a VAT ID from Greece, not from Switzerland"),
])
def test_tax4_an_invalid_vat_id_is_refused_with_the_reason_and_nothing_is_saved(
        account, client_owner, country, vat_id, reason):
    response = post(client_owner, country=country, vat_id=vat_id)
    page = response.content.decode()
    assert response.status_code == 200 and reason in page
    assert 'id="id_vat_id_error"' in page  # shown on the VAT ID field (the form's aria-describedby)
    account.refresh_from_db()
    assert (account.company, account.country, account.vat_id) == ("", "", "")
    assert not AuditEvent.objects.filter(action="billing_details.updated").exists()


@pytest.mark.parametrize(("country", "typed", "stored"), [
    ("fr", "fr 40 303 265 045", "FR40303265045"),
    ("FR", "40303265045", "FR40303265045"),  # the country's prefix added
    ("GR", "094259216", "EL094259216"),  # Greece's VAT IDs start with EL
    ("AT", "ATU 1358 5627", "ATU13585627"),
    ("GB", "GB 980 7806 84", "GB980780684"),  # outside the EU, checked by stdnum too
    ("US", "12-3456789", "123456789"),  # no check known for the country: kept as letters and digits
])
def test_tax4_the_normalised_vat_id_is_stored(account, client_owner, country, typed, stored):
    assert post(client_owner, country=country, vat_id=typed).status_code == 302
    account.refresh_from_db()
    assert account.vat_id == stored and account.vat_id_checked_at is None  # VIES is off by default


def test_tax1_countries_are_offered_by_their_iso_names(account, client_owner):
    """The select lists ISO 3166 names (django-countries), not the time-zone database's informal ones."""
    page = client_owner.get(reverse("billing:billing_details")).content.decode()
    for option in ('<option value="US">United States of America (US)</option>',
                   '<option value="WS">Samoa (WS)</option>',
                   '<option value="VC">Saint Vincent and the Grenadines (VC)</option>'):
        assert option in page, option


def test_pay5_the_billing_email_address_is_saved_and_an_invalid_one_refused(account, client_owner):
    response = post(client_owner, billing_email="not-an-address")
    assert response.status_code == 200 and "Enter a valid email address" in response.content.decode()
    assert post(client_owner, billing_email=" accounts@acme.example ").status_code == 302
    account.refresh_from_db()
    assert account.billing_email == "accounts@acme.example"
    assert AuditEvent.objects.get(action="billing_details.updated").after["billing_email"] == "accounts@acme.example"


class FakeVies:
    """Stands in for `requests.post` to VIES."""

    def __init__(self, answer=None, fail=False):
        self.answer, self.fail, self.calls = answer, fail, []

    def __call__(self, url, json, timeout):
        self.calls.append(json)
        if self.fail:
            raise ConnectionError("VIES down")
        answer = self.answer

        class Response:
            def raise_for_status(self):
                return None

            def json(self):
                return answer

        return Response()


NOW = datetime(2026, 4, 1, tzinfo=UTC)


def update(account, vat_id, post):
    return preferences.billing_details_update(account, company="Acme SARL", address="", country="FR", vat_id=vat_id,
                                              now=NOW, post=post)


def test_tax4_vies_is_off_by_default_and_never_asked(account):
    vies = FakeVies({"valid": False})
    account = update(account, "FR40303265045", vies)
    assert account.vat_id == "FR40303265045" and vies.calls == []


def test_tax4_vies_on_records_the_consultation_number(account, settings):
    settings.VAT_VIES_CHECK, settings.SELLER_TAX_ID = True, "DE136695976"
    vies = FakeVies({"valid": True, "requestIdentifier": "WAPIAAAAW1234", "userError": "VALID"})
    account = update(account, "FR40303265045", vies)
    assert (account.vat_id, account.vat_id_checked_at, account.vat_id_consultation) == (
        "FR40303265045", NOW, "WAPIAAAAW1234")
    assert vies.calls == [{"countryCode": "FR", "vatNumber": "40303265045", "requesterMemberStateCode": "DE",
                           "requesterNumber": "136695976"}]
    update(account, "FR40303265045", vies)  # already confirmed: not asked again
    assert len(vies.calls) == 1
    assert "VIES confirmed your VAT ID (consultation WAPIAAAAW1234)" in preferences.billing_details_notes(account)[1]


def test_tax4_vies_on_refuses_an_unregistered_id_and_saves_nothing(account, settings):
    settings.VAT_VIES_CHECK = True
    with pytest.raises(preferences.VatIdRefused, match="VIES, the EU's register of VAT IDs, says it is not registered"):
        update(account, "FR40303265045", FakeVies({"valid": False, "userError": "INVALID"}))
    account.refresh_from_db()
    assert account.vat_id == "" and account.company == ""


@pytest.mark.parametrize("vies", [FakeVies(fail=True), FakeVies({"valid": False, "userError": "MS_UNAVAILABLE"})],
                         ids=["no-answer", "member-state-unavailable"])
def test_tax4_vies_unavailable_keeps_the_offline_check(account, settings, vies):
    settings.VAT_VIES_CHECK = True
    account = update(account, "FR40303265045", vies)
    assert account.vat_id == "FR40303265045" and account.vat_id_checked_at is None
    assert "VIES could not be reached" in preferences.billing_details_notes(account)[1]
