"""In Chromium, as a customer would (issue 16): locked out after ten wrong passwords (ACC-4), back in
through the reset e-mail's link; the password change from the header; the unsubscribe link asks
before it unsubscribes (NOT-2)."""

import re
from urllib.parse import urlparse

import pytest
from django.core import mail
from playwright.sync_api import expect

from notifications.services import unsubscribe_url
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.browser
NEW = "new-horse-battery-9"


def submit_login(page, email, password):
    page.goto("/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_acc4_locked_out_then_back_in_through_the_reset_email(page, shot, catalog, settings, live_server):
    settings.AXES_ENABLED = True
    settings.SITE_URL = live_server.url
    AccountFactory(owner=UserFactory(username="owner@acme.test"), name="Acme Analytics")

    for i in range(10):
        submit_login(page, "owner@acme.test", f"wrong-{i}")
    expect(page.get_by_role("heading", name="Logging in is paused")).to_be_visible()
    shot("locked")
    page.get_by_role("link", name="Reset your password").click()
    page.get_by_label("E-mail").fill("owner@acme.test")
    page.get_by_role("button", name="E-mail me a reset link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()

    page.goto(re.search(r"https?://\S+/password/reset/\S+/\S+/", mail.outbox[-1].body)[0])
    page.get_by_label("New password", exact=True).fill(NEW)
    page.get_by_label("New password again").fill(NEW)
    page.get_by_role("button", name="Set my new password").click()
    expect(page.get_by_role("heading", name="Your password is changed")).to_be_visible()
    submit_login(page, "owner@acme.test", NEW)
    page.wait_for_url("**/billing/")

    page.get_by_role("link", name="Password").click()
    page.get_by_label("Current password").fill(NEW)
    page.get_by_label("New password", exact=True).fill("another-horse-7")
    page.get_by_label("New password again").fill("another-horse-7")
    page.get_by_role("button", name="Change password").click()
    page.wait_for_url("**/billing/")
    expect(page.get_by_text("Your password is changed.")).to_be_visible()
    shot("changed")


def test_not2_the_unsubscribe_link_asks_first_then_the_button_unsubscribes(page, shot, catalog):
    account = AccountFactory(name="Acme Analytics")

    page.goto(urlparse(unsubscribe_url(account.pk, "usage_alerts")).path)
    expect(page.get_by_role("heading", name="Unsubscribe from usage alerts?")).to_be_visible()
    account.refresh_from_db()
    assert account.email_usage_alerts is True
    page.get_by_role("button", name="Unsubscribe").click()

    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    shot()
    account.refresh_from_db()
    assert account.email_usage_alerts is False
