"""ACC-4: customers reset their own password by e-mail and change it when logged in, through
Django's auth views with our templates; both are audited (ACC-3)."""

import re
from urllib.parse import urlparse

import pytest
from django.core import mail
from django.test import Client

from accounts.models import AuditEvent
from tests.factories import AccountFactory, UserFactory

PASSWORD = "password-123"
NEW = "new-horse-battery-9"


@pytest.fixture
def customer(catalog):
    user = UserFactory(username="owner@acme.test")
    AccountFactory(owner=user, name="Acme")
    return user


def reset_link(message) -> str:
    return re.search(r"(https?://\S+/password/reset/[^/\s]+/[^/\s]+/)", message.body)[1]


def reset_path(message) -> str:
    return urlparse(reset_link(message)).path


def test_acc4_the_login_page_links_to_password_reset(client, db):
    page = client.get("/login/").content.decode()
    assert '<a href="/password/reset/">Forgot your password?</a>' in page


def test_acc4_the_admin_login_page_links_to_the_same_reset(client, db):
    page = client.get("/admin/login/").content.decode()
    assert 'href="/admin/password_reset/"' in page
    assert client.get("/admin/password_reset/").status_code == 200


def test_acc4_reset_by_email_then_log_in_with_the_new_password(customer, settings):
    settings.SITE_URL = "https://billing.example.com"
    client = Client()

    asked = client.post("/password/reset/", {"email": "Owner@Acme.test"}, HTTP_HOST="127.0.0.1")

    assert asked.status_code == 302 and asked.url == "/password/reset/sent/"
    assert "Check your e-mail" in client.get(asked.url).content.decode()
    [message] = mail.outbox
    assert message.to == ["owner@acme.test"] and message.subject == "Reset your Prorata password"
    link = reset_link(message)
    assert link.startswith("https://billing.example.com/password/reset/")  # SITE_URL, never the Host header
    html = next(body for body, kind in message.alternatives if kind == "text/html")
    assert link.removeprefix("https://billing.example.com") in html
    assert "works once, for 3 hours" in message.body

    form = client.get(reset_path(message), follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": NEW, "new_password2": NEW}, follow=True)
    assert "Your password is changed" in done.content.decode()

    assert not client.login(username=customer.username, password=PASSWORD)
    assert client.post("/login/", {"username": customer.username, "password": NEW}).status_code == 302
    audit = AuditEvent.objects.get(action="user.password_reset")
    assert audit.actor == customer and audit.account.name == "Acme"


def test_acc4_a_reset_link_works_once(customer):
    client = Client()
    client.post("/password/reset/", {"email": customer.email})
    path = reset_path(mail.outbox[0])
    form_url = client.get(path).url
    client.post(form_url, {"new_password1": NEW, "new_password2": NEW})

    again = Client().get(path, follow=True)

    page = again.content.decode()
    assert "This link does not work any more" in page and 'href="/password/reset/"' in page


def test_acc4_reset_refuses_a_weak_new_password_with_the_reason(customer):
    client = Client()
    client.post("/password/reset/", {"email": customer.email})
    form_url = client.get(reset_path(mail.outbox[0])).url

    response = client.post(form_url, {"new_password1": "12345678", "new_password2": "12345678"})

    assert response.status_code == 200
    assert "This password is too common" in response.content.decode()
    customer.refresh_from_db()
    assert customer.check_password(PASSWORD)


def test_acc4_reset_for_an_unknown_address_says_the_same_and_sends_nothing(db, client):
    response = client.post("/password/reset/", {"email": "nobody@example.test"})

    assert response.status_code == 302 and response.url == "/password/reset/sent/"
    assert mail.outbox == []


def test_acc4_change_password_from_the_billing_pages(customer):
    client = Client()
    client.force_login(customer)
    assert 'href="/account/password/"' in client.get("/billing/").content.decode()

    wrong = client.post("/account/password/", {"old_password": "not-it", "new_password1": NEW, "new_password2": NEW})
    assert wrong.status_code == 200 and "Your old password was entered incorrectly" in wrong.content.decode()
    customer.refresh_from_db()
    assert customer.check_password(PASSWORD)

    changed = client.post("/account/password/", {"old_password": PASSWORD, "new_password1": NEW,
                                                  "new_password2": NEW}, follow=True)

    assert changed.redirect_chain[-1][0] == "/billing/"
    assert "Your password is changed" in changed.content.decode()  # and still logged in here
    customer.refresh_from_db()
    assert customer.check_password(NEW)
    assert AuditEvent.objects.filter(action="user.password_changed", actor=customer).count() == 1


def test_acc4_change_password_ends_the_other_sessions(customer):
    here, elsewhere = Client(), Client()
    here.force_login(customer)
    elsewhere.force_login(customer)

    here.post("/account/password/", {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW})

    assert here.get("/billing/").status_code == 200
    assert elsewhere.get("/billing/").status_code == 302


def test_acc4_change_password_needs_a_login(client, db):
    response = client.get("/account/password/")
    assert response.status_code == 302 and response.url.startswith("/login/")
