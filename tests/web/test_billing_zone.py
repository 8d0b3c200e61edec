"""D-5 on the billing page: the owner chooses the billing time zone on the billing details page; it
applies from the next period and is audited. Sign-up starts with the browser's zone."""

from django.urls import reverse

from accounts.models import Account, AuditEvent
from subscriptions import billing
from tests.signup import sign_up

from .conftest import current


def test_d5_the_owner_chooses_the_zone_from_the_iana_list_and_it_applies_from_the_next_period(
        account, client_owner, travel):
    travel("2026-01-31")
    billing.subscribe(account, "personal", "monthly")
    page = client_owner.get(reverse("billing:billing_details")).content.decode()
    assert '<select name="timezone"' in page and '<optgroup label="Pacific">' in page
    assert '<option value="UTC" selected>UTC</option>' in page
    assert '<option value="Pacific/Kiritimati">Kiritimati</option>' in page
    assert "Your periods follow the calendar of UTC." in page

    travel("2026-02-10")
    response = client_owner.post(reverse("billing:billing_details"), {"timezone": "Pacific/Kiritimati"}, follow=True)
    page = response.content.decode()
    assert "Billing time zone saved." in page
    assert "Your current period follows the calendar of UTC and still ends on 2026-02-28 (UTC)." in page
    assert "From 2026-02-28, your periods follow Pacific/Kiritimati." in page
    assert '<option value="Pacific/Kiritimati" selected>Kiritimati</option>' in page
    account.refresh_from_db()
    assert account.timezone == "Pacific/Kiritimati" and account.company == ""  # the details form was not posted
    assert current(account).timezone == "UTC"
    event = AuditEvent.objects.get(action="billing_zone.updated")
    assert (event.before, event.after, event.actor_id) == (
        {"timezone": "UTC"}, {"timezone": "Pacific/Kiritimati"}, account.owner.pk)


def test_d5_a_zone_not_offered_is_refused_and_nothing_changes(account, client_owner):
    response = client_owner.post(reverse("billing:billing_details"), {"timezone": "Mars/Olympus"})
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    account.refresh_from_db()
    assert account.timezone == "UTC"
    assert not AuditEvent.objects.filter(action="billing_zone.updated").exists()


def test_d5_sign_up_takes_the_browsers_zone_and_falls_back_to_utc(client, catalog):
    page = client.get(reverse("signup")).content.decode()
    assert 'name="timezone"' in page and "resolvedOptions().timeZone" in page
    sign_up(client, account_name="Chatham", email="c@example.com", password="a-long-password-1",
            timezone="Pacific/Chatham")
    assert Account.objects.get(name="Chatham").timezone == "Pacific/Chatham"
    client.logout()
    sign_up(client, account_name="Nowhere", email="n@example.com", password="a-long-password-1",
            timezone="Mars/Olympus")
    assert Account.objects.get(name="Nowhere").timezone == "UTC"
