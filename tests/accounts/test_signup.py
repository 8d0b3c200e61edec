"""Issue 28 item 3: sign-up does not tell which e-mail addresses have accounts. A valid form always
answers "Check your e-mail" and queues one e-mail (a confirmation link to an unknown address, "you
already have an account" to a known one); the signed, time-limited link creates the account."""

import base64
import json
import re

import pytest
import time_machine
from django.contrib.auth.hashers import check_password
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import signup
from accounts.models import Account, Membership
from tests.factories import UserFactory
from tests.signup import signup_link

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-password-1"
FORM = {"account_name": "Globex", "password": PASSWORD, "timezone": "Europe/Paris"}


@pytest.fixture
def queued(monkeypatch):
    """The broker takes the tasks and nothing runs them yet (as with a real cluster)."""
    tasks = []
    monkeypatch.setattr(signup, "task_enqueue", lambda func, *args, group: tasks.append((func, args)) or True)
    return tasks


def normalised(response) -> str:
    """The page with what differs per request by design (CSRF token, CSP nonces) blanked."""
    body = response.content.decode()
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken" value=""', body)
    return re.sub(r'nonce="[^"]*"', 'nonce=""', body)


def test_acc4_sign_up_answers_known_and_unknown_addresses_byte_identically_and_queues_one_email_each(
        catalog, queued):
    """Issue 28: the same status, template and body for a known and an unknown address, no account
    created and nothing sent in either request (the same queued task); the worker then sends the
    unknown address its link and the known one a "you already have an account" note."""
    UserFactory(username="known@example.test", email="known@example.test")
    known = Client().post(reverse("signup"), {**FORM, "email": "Known@Example.test"})
    unknown = Client().post(reverse("signup"), {**FORM, "email": "new@example.test"})
    assert mail.outbox == []
    assert known.status_code == unknown.status_code == 200
    assert [t.name for t in known.templates] == [t.name for t in unknown.templates]
    assert normalised(known) == normalised(unknown)
    assert "Check your e-mail" in normalised(known)
    assert Account.objects.count() == 0
    assert [func for func, _args in queued] == ["accounts.signup.signup_send"] * 2

    assert [signup.signup_send(*args) for _func, args in queued] == ["known", "confirm"]
    to_known, to_new = mail.outbox
    assert to_known.to == ["known@example.test"] and to_new.to == ["new@example.test"]
    assert "already have an account" in to_known.body and "/signup/confirm/" not in to_known.body
    assert "/login/" in to_known.body and "/password/reset/" in to_known.body
    assert "/signup/confirm/" in to_new.body and "/signup/confirm/" in to_new.alternatives[0][0]


def test_acc4_sign_up_sends_the_email_itself_when_the_broker_is_down(client, catalog, monkeypatch):
    """Issue 28: with no broker the request sends the e-mail itself, not nothing."""
    monkeypatch.setattr(signup, "task_enqueue", lambda func, *args, group: False)
    client.post(reverse("signup"), {**FORM, "email": "new@example.test"})
    assert [m.to for m in mail.outbox] == [["new@example.test"]]


def test_acc4_sign_up_link_get_creates_nothing_and_post_creates_the_account_and_logs_in(client, catalog):
    """Issue 28: opening the link only shows a button (mail scanners follow links); pressing it creates
    the account on Free with the chosen name, zone and password, logs in and welcomes."""
    client.post(reverse("signup"), {**FORM, "email": "Hank@Globex.example"})
    link = signup_link("hank@globex.example")
    shown = client.get(link)
    assert shown.status_code == 200 and b"Create my account" in shown.content and b"Globex" in shown.content
    assert Account.objects.count() == 0

    done = client.post(link, follow=True)
    assert done.redirect_chain == [(reverse("billing:overview"), 302)]
    assert "Welcome to Prorata. You are on the Free plan." in done.content.decode()
    account = Account.objects.get(name="Globex")
    user = Membership.objects.get(account=account).user
    assert user.username == "hank@globex.example" and account.timezone == "Europe/Paris"
    assert account.subscription.plan.code == "free"
    assert user.check_password(PASSWORD)
    assert Client().login(username="hank@globex.example", password=PASSWORD)


def test_acc4_sign_up_link_used_twice_is_refused_and_says_log_in(client, catalog):
    """Issue 28: the second use of a link creates no second account and points to logging in."""
    client.post(reverse("signup"), {**FORM, "email": "new@example.test"})
    link = signup_link("new@example.test")
    client.post(link)
    again = Client().post(link)
    assert again.status_code == 409 and b"used already" in again.content and b'href="/login/"' in again.content
    assert Client().get(link).status_code == 409
    assert Account.objects.count() == 1


def test_acc4_sign_up_link_for_an_address_that_got_an_account_meanwhile_says_log_in(client, catalog):
    """Issue 28: two sign-ups of one address: the second link to be used refuses and says "log in"."""
    client.post(reverse("signup"), {**FORM, "email": "new@example.test"})
    link = signup_link("new@example.test")
    UserFactory(username="new@example.test", email="new@example.test")
    refused = client.post(link)
    assert refused.status_code == 409 and b"Log in instead" in refused.content
    assert Account.objects.count() == 0


def test_acc4_sign_up_link_expires_after_24_hours(client, catalog):
    """Issue 28: a link older than SIGNUP_LINK_HOURS is refused with a way to sign up again."""
    with time_machine.travel("2026-03-01 09:00Z", tick=False):
        client.post(reverse("signup"), {**FORM, "email": "new@example.test"})
    link = signup_link("new@example.test")
    with time_machine.travel("2026-03-02 08:59Z", tick=False):
        assert client.get(link).status_code == 200
    with time_machine.travel("2026-03-02 09:01Z", tick=False):
        expired = client.post(link)
    assert expired.status_code == 400 and b"expired" in expired.content
    assert b'href="/signup/"' in expired.content
    assert Account.objects.count() == 0


def test_acc4_sign_up_link_tampered_is_refused(client, catalog):
    """Issue 28: a changed payload, a cut signature or a value signed for another purpose (another
    salt) creates nothing."""
    client.post(reverse("signup"), {**FORM, "email": "new@example.test"})
    token = signup_link("new@example.test").split("/")[-2]
    payload, stamp, signature = token.split(":")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**data, "e": "victim@example.test"}).encode()).decode().rstrip("=")
    from django.core import signing

    other_salt = signing.TimestampSigner(salt="something.else").sign_object(data)
    for bad in (f"{forged}:{stamp}:{signature}", f"{payload}:{stamp}:{signature[:-2]}", other_salt):
        refused = client.post(reverse("signup_confirm", kwargs={"token": bad}))
        assert refused.status_code == 400 and b"not valid" in refused.content
    assert Account.objects.count() == 0


def test_acc4_the_password_is_never_in_the_link_or_the_email_only_its_hash(client, catalog):
    """Issue 28: the signed link is readable by anyone who holds it; it carries a hash of the chosen
    password, never the password."""
    client.post(reverse("signup"), {**FORM, "email": "new@example.test"})
    message = mail.outbox[-1]
    assert PASSWORD not in message.body and PASSWORD not in message.alternatives[0][0]
    token = signup_link("new@example.test").split("/")[-2]
    payload = token.split(":")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).decode()
    assert PASSWORD not in decoded
    assert check_password(PASSWORD, json.loads(decoded)["p"])
