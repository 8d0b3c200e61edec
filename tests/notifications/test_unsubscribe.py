"""NOT-2: non-billing e-mail stops with one click on a signed link; billing e-mail never stops."""

import re
from urllib.parse import urlparse

import pytest
from django.core import mail
from django.test import Client

from accounts.models import Account, AuditEvent
from notifications.models import EmailLog, ProductNews
from notifications.services import NotificationError, product_news_send, unsubscribe_token, unsubscribe_url
from subscriptions import billing
from tests.factories import AccountFactory, PropertyFactory, UserFactory

from .conftest import BILLING, OWNER, at, ingest, kind_of, only

pytestmark = pytest.mark.django_db


@pytest.fixture
def usage_alert(account, committed):
    """Report sessions through the usage API: 8,000 of Personal's 10,000 cross 80%, 2,000 more 100%."""
    with committed():
        billing.subscribe(account, "personal", now=at("2026-04-01"))
    prop = PropertyFactory(account=account)
    sent = {"sessions": 0}

    def report(sessions=8000):
        with committed():
            ingest(prop, sessions, start=sent["sessions"])
        sent["sessions"] += sessions

    mail.outbox.clear()
    return report


def path_of(url: str) -> str:
    return urlparse(url).path


def test_not2_usage_alert_carries_the_signed_link_in_body_and_headers(account, usage_alert):
    usage_alert()

    message = only("usage.alert")
    url = unsubscribe_url(account.pk, "usage_alerts")
    assert message.extra_headers["List-Unsubscribe"] == f"<{url}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in message.body


def test_not1_billing_emails_have_no_unsubscribe_link(account, committed):
    account.name = "Acme Inc."  # a name that ends with a full stop reads well in the footer
    account.save(update_fields=["name"])
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))

    message = only("trial.started")
    assert "List-Unsubscribe" not in message.extra_headers
    assert "List-Unsubscribe-Post" not in message.extra_headers
    assert "List-Unsubscribe" not in message.message()  # nor in the message as sent
    assert "/notifications/unsubscribe/" not in message.body
    assert "This billing e-mail for Acme Inc. goes to the account's owner" in message.body
    assert "cannot be turned off" in message.body and ".." not in message.body


def test_not2_one_click_unsubscribe_stops_usage_alerts_but_not_billing(account, committed, client, usage_alert):
    usage_alert()
    link = path_of(unsubscribe_url(account.pk, "usage_alerts"))
    mail.outbox.clear()

    response = client.post(link)  # not logged in; the confirmation page's button (GET changes nothing)

    assert response.status_code == 200
    assert b"You are unsubscribed" in response.content
    account.refresh_from_db()
    assert account.email_usage_alerts is False and account.email_product_news is True
    audit = AuditEvent.objects.get(account=account, action="email_preferences.updated")
    assert (audit.before["email_usage_alerts"], audit.after["email_usage_alerts"]) == (True, False)
    assert audit.reason == "one-click unsubscribe link"

    usage_alert(2000)  # crosses 100%
    assert mail.outbox == []
    with committed():
        billing.cancel(account.subscription, now=at("2026-04-11"))
    only("cancellation.scheduled")


def test_not2_rfc8058_one_click_post_without_csrf_token(account):
    client = Client(enforce_csrf_checks=True)

    response = client.post(path_of(unsubscribe_url(account.pk, "usage_alerts")), {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    account.refresh_from_db()
    assert account.email_usage_alerts is False


def test_not2_resubscribe_from_the_confirmation_page(account, client):
    client.post(path_of(unsubscribe_url(account.pk, "product_news")))
    token = unsubscribe_token(account.pk, "product_news")

    response = client.post(f"/notifications/resubscribe/{account.pk}/product_news/{token}/")

    assert response.status_code == 200
    account.refresh_from_db()
    assert account.email_product_news is True


def test_not2_tampered_link_is_refused(account, client):
    token = unsubscribe_token(account.pk, "usage_alerts")
    tampered = ("A" if token[0] != "A" else "B") + token[1:]

    response = client.get(f"/notifications/unsubscribe/{account.pk}/usage_alerts/{tampered}/")

    assert response.status_code == 403
    account.refresh_from_db()
    assert account.email_usage_alerts is True


def test_not2_foreign_link_is_refused_for_another_account_or_kind(account, client):
    other = AccountFactory()
    token = unsubscribe_token(account.pk, "usage_alerts")

    other_account = client.get(f"/notifications/unsubscribe/{other.pk}/usage_alerts/{token}/")
    other_kind = client.get(f"/notifications/unsubscribe/{account.pk}/product_news/{token}/")

    assert (other_account.status_code, other_kind.status_code) == (403, 403)
    other.refresh_from_db()
    account.refresh_from_db()
    assert other.email_usage_alerts and account.email_product_news and account.email_usage_alerts


def test_not1_billing_category_cannot_be_unsubscribed_even_with_a_valid_signature(account, client):
    token = unsubscribe_token(account.pk, "billing")

    response = client.get(f"/notifications/unsubscribe/{account.pk}/billing/{token}/")

    assert response.status_code == 403


def test_not2_product_news_goes_to_opted_in_owners_only_once(account, committed):
    opted_out = AccountFactory(owner=UserFactory(username="quiet@example.test"))
    Account.objects.filter(pk=opted_out.pk).update(email_product_news=False)
    news = ProductNews.objects.create(subject="Funnels are here", body="Track funnels.\n\nSee the docs.")

    with committed():
        count = product_news_send(news, now=at("2026-04-10"))

    assert count == 1
    message = only("product.news", to=(OWNER,))  # owners only: not the billing-role user
    assert BILLING not in message.to
    assert message.subject == "Funnels are here"
    assert "Track funnels." in message.body and "See the docs." in message.body
    assert message.extra_headers["List-Unsubscribe"] == f"<{unsubscribe_url(account.pk, 'product_news')}>"
    assert EmailLog.objects.get(kind="product.news").related_type == "product_news"
    with pytest.raises(NotificationError, match="already sent"):
        product_news_send(news)


def test_not2_product_news_unsubscribe_keeps_usage_alerts(account, committed, client, usage_alert):
    client.post(path_of(unsubscribe_url(account.pk, "product_news")))
    news = ProductNews.objects.create(subject="News", body="Body")

    with committed():
        product_news_send(news)
    usage_alert()

    assert {kind_of(m) for m in mail.outbox} == {"usage.alert"}


# -- RFC 8058: opening the link changes nothing; POST unsubscribes ----------------------------


@pytest.mark.parametrize("method", ["get", "head"])
def test_not2_opening_the_link_only_asks_for_confirmation(account, client, method):
    """Mail scanners and link prefetchers open every link in an e-mail (issue 16)."""
    link = path_of(unsubscribe_url(account.pk, "usage_alerts"))

    answers = [getattr(client, method)(link) for _ in range(3)]

    assert {a.status_code for a in answers} == {200}
    account.refresh_from_db()
    assert account.email_usage_alerts is True
    assert not AuditEvent.objects.filter(account=account, action="email_preferences.updated").exists()
    if method == "get":
        page = answers[0].content.decode()
        assert "Unsubscribe from usage alerts?" in page
        assert f'<form method="post" action="{link}">' in page and ">Unsubscribe</button>" in page


def test_not2_the_confirmation_page_button_unsubscribes(account, client):
    link = path_of(unsubscribe_url(account.pk, "product_news"))
    page = client.get(link).content.decode()
    field = re.search(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', page)

    response = client.post(link, {field[1]: field[2]})

    assert b"You are unsubscribed" in response.content
    account.refresh_from_db()
    assert account.email_product_news is False and account.email_usage_alerts is True


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=B"])
def test_not2_rfc8058_mail_client_post_without_session_or_csrf(account, content_type):
    """What a mail client sends (RFC 8058 section 3.1): a POST whose body is List-Unsubscribe=One-Click."""
    body = ("List-Unsubscribe=One-Click" if content_type.startswith("application")
            else '--B\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n--B--\r\n')
    client = Client(enforce_csrf_checks=True)

    response = client.generic("POST", path_of(unsubscribe_url(account.pk, "usage_alerts")), body,
                              content_type=content_type)

    assert response.status_code == 200
    assert not client.cookies.get("sessionid")
    account.refresh_from_db()
    assert account.email_usage_alerts is False


def test_not2_headers_carry_an_https_link_in_angle_brackets(account, usage_alert, settings):
    settings.SITE_URL = "https://billing.example.com"
    usage_alert()

    sent = only("usage.alert").message()  # the MIME message as it leaves

    token = unsubscribe_token(account.pk, "usage_alerts")
    assert sent["List-Unsubscribe"] == (
        f"<https://billing.example.com/notifications/unsubscribe/{account.pk}/usage_alerts/{token}/>"
    )
    assert sent["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_not2_deploy_check_wants_an_https_site_url(settings):
    from notifications.checks import site_url_is_https

    settings.SITE_URL = "http://billing.example.com"
    assert [w.id for w in site_url_is_https()] == ["notifications.W001"]
    settings.SITE_URL = "https://billing.example.com"
    assert site_url_is_https() == []
