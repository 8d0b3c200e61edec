"""Issue 28 item 3: which e-mail addresses have accounts cannot be learnt from sign-up (throttled
per client address) nor from the password-reset request (same answer, same work: the e-mail is
queued, never sent inside the request)."""

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import auth
from accounts.models import Account
from tests.factories import UserFactory
from tests.signup import sign_up

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """The broker takes the tasks and nothing runs them yet (as with a real cluster)."""
    tasks = []
    monkeypatch.setattr(auth, "task_enqueue", lambda func, *args, group: tasks.append((func, args)) or True)
    return tasks


def test_acc4_password_reset_answers_known_and_unknown_addresses_alike_and_sends_nothing_in_the_request(
        client, queued):
    """Issue 28 item 3: the known and the unknown address get the same redirect and the same
    queued task; no e-mail leaves during either request; the worker then mails the known one only."""
    UserFactory(username="known@example.test", email="known@example.test")
    known = client.post(reverse("password_reset"), {"email": "known@example.test"})
    assert mail.outbox == []
    unknown = client.post(reverse("password_reset"), {"email": "nobody@example.test"})
    assert mail.outbox == []
    assert (known.status_code, known.url) == (unknown.status_code, unknown.url) == (302, "/password/reset/sent/")
    assert [func for func, _args in queued] == ["accounts.auth.password_reset_send"] * 2
    for _func, args in queued:
        auth.password_reset_send(*args)
    assert [m.to for m in mail.outbox] == [["known@example.test"]]
    assert "/password/reset/" in mail.outbox[0].body


def test_acc4_password_reset_sends_itself_when_the_broker_is_down(client, monkeypatch, settings):
    """Issue 28 item 3: with no broker the request still sends the link (as before), not nothing."""
    monkeypatch.setattr(auth, "task_enqueue", lambda func, *args, group: False)
    UserFactory(username="known@example.test", email="known@example.test")
    client.post(reverse("password_reset"), {"email": "known@example.test"})
    assert [m.to for m in mail.outbox] == [["known@example.test"]]


def test_acc1_sign_up_attempts_are_throttled_per_client_address(client, catalog, settings):
    """Issue 28 item 3: past SIGNUP_RATE attempts from one address, sign-up answers 429 without
    saying whether the address exists; another address may still sign up."""
    from django.core.cache import cache

    cache.clear()
    settings.SIGNUP_RATE = "3/h"
    UserFactory(username="taken@example.test", email="taken@example.test")
    form = {"account_name": "X", "email": "taken@example.test", "password": "a-long-password-1"}
    for _ in range(3):
        assert b"Check your e-mail" in client.post(reverse("signup"), form).content
    throttled = client.post(reverse("signup"), {**form, "email": "fresh@example.test"})
    assert throttled.status_code == 429 and b"Too many sign-ups" in throttled.content
    assert b"already exists" not in throttled.content
    assert not any(m.to == ["fresh@example.test"] for m in mail.outbox)
    assert not Account.objects.filter(memberships__user__email="fresh@example.test").exists()
    other = sign_up(Client(REMOTE_ADDR="203.0.113.9"), **{**form, "email": "fresh@example.test"})
    assert other.status_code == 302
    assert Account.objects.filter(memberships__user__email="fresh@example.test").exists()
