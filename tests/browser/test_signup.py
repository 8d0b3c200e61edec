"""Issue 28 item 3 in Chromium: sign-up by e-mailed link, end to end, and the same answer for an
address that has an account; every page of it axe-clean."""

import pytest
from playwright.sync_api import expect

from accounts.models import Account
from tests.factories import UserFactory
from tests.signup import signup_link

from .test_self_service import axe_clean

pytestmark = pytest.mark.browser


def fill_sign_up(page, email: str) -> None:
    page.goto("/signup/")
    axe_clean(page, "sign-up form")
    page.get_by_label("Company or account name").fill("Link Co")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill("a-long-passphrase-42")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()


def test_acc4_sign_up_through_the_emailed_link_in_chromium(page, catalog):
    """Issue 28: the form answers "Check your e-mail" and creates nothing; the link shows a button;
    pressing it creates the account, logs in and welcomes; the link used again says "log in"."""
    fill_sign_up(page, "owner@link.example")
    axe_clean(page, "check your e-mail")
    assert not Account.objects.filter(name="Link Co").exists()

    link = signup_link("owner@link.example")
    page.goto(link)
    expect(page.get_by_role("heading", name="Finish signing up")).to_be_visible()
    axe_clean(page, "finish signing up")
    assert not Account.objects.filter(name="Link Co").exists()
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url("**/billing/")
    expect(page.get_by_text("Welcome to Prorata. You are on the Free plan.")).to_be_visible()
    assert Account.objects.get(name="Link Co").subscription.plan.code == "free"

    page.context.clear_cookies()
    page.goto(link)
    expect(page.get_by_role("alert")).to_contain_text("This link was used already")
    axe_clean(page, "sign-up link used already")
    page.locator("#content").get_by_role("link", name="Log in", exact=True).click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_acc4_sign_up_with_a_known_address_answers_the_same_page_in_chromium(page, catalog):
    """Issue 28: an address with an account gets the same "Check your e-mail" page, and its e-mail
    says to log in; nothing is created."""
    UserFactory(username="known@link.example", email="known@link.example")
    fill_sign_up(page, "known@link.example")
    expect(page.get_by_text("We have sent an e-mail to the address you gave.")).to_be_visible()
    expect(page.get_by_text("already exists")).to_have_count(0)
    assert not Account.objects.filter(name="Link Co").exists()
    from django.core import mail

    assert "already have an account" in mail.outbox[-1].body
    page.goto("/signup/confirm/not-a-token/")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    axe_clean(page, "sign-up link not valid")
