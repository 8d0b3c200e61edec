"""Playwright for Python driving Debian's Chromium against pytest-django's live server.

One browser per module (launching is the slow part); a fresh context (cookies) per test. The
tests skip cleanly when /usr/bin/chromium is missing. Never `playwright install`: it downloads a
browser. Screenshots go to tests/artifacts/ (git-ignored).
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
PASSWORD = "password-123"  # tests.factories.UserFactory

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make between
# browser steps are still synchronous and sequential, so Django's async guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(config, items):
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing (apt-get install chromium)")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server, transactional_db):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900},
                                  accept_downloads=True)
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def shot(page, request):
    """shot() saves a full-page screenshot named after the test."""
    ARTIFACTS.mkdir(exist_ok=True)

    def take(suffix: str = "") -> Path:
        path = ARTIFACTS / f"{request.node.name}{'-' + suffix if suffix else ''}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def log_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/billing/")


def sign_up(page, name: str, email: str, password: str) -> None:
    """Sign up as a customer does (issue 28): the form, "Check your e-mail", the e-mailed link (read
    from django.core.mail.outbox: the live server runs in this process), its button; ends on the
    billing overview."""
    from playwright.sync_api import expect

    from tests.signup import signup_link

    page.goto("/signup/")
    page.get_by_label("Company or account name").fill(name)
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()
    page.goto(signup_link(email))
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url("**/billing/")
