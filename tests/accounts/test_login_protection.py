"""ACC-4: repeated failed logins are locked out (customers on /login/, staff on /admin/login/), per
username and per client address, with a clear message and two ways back: the cool-off, or a
password reset (which lifts the pause for that username at once)."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.test import Client
from django.utils import timezone

from tests.factories import AccountFactory, UserFactory

PASSWORD = "password-123"
ATTACKER = "198.51.100.7"


@pytest.fixture(autouse=True)
def lockout_on(settings):
    """The suite runs with axes off (config/settings/test.py); these tests run the real thing."""
    settings.AXES_ENABLED = True
    settings.AXES_FAILURE_LIMIT = 10
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.TRUSTED_PROXIES = 0


@pytest.fixture
def customer(catalog):
    user = UserFactory(username="owner@acme.test")
    AccountFactory(owner=user)
    return user


@pytest.fixture
def staff(db):
    return UserFactory(username="support@prorata.test", is_staff=True, is_superuser=True)


def from_ip(ip: str = ATTACKER) -> Client:
    return Client(REMOTE_ADDR=ip)


def log_in(client: Client, username: str, password: str, path: str = "/login/"):
    return client.post(path, {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_acc4_200_wrong_passwords_then_the_right_one_does_not_log_a_customer_in(customer):
    client = from_ip()
    answers = [log_in(client, customer.username, f"guess-{i}").status_code for i in range(200)]

    response = log_in(client, customer.username, PASSWORD)

    assert answers[:9] == [200] * 9  # the form again, "didn't match"
    assert set(answers[9:]) == {429}  # the 10th failure reaches the limit
    assert response.status_code == 429
    assert not logged_in(client)
    assert client.get("/billing/").status_code == 302  # still sent to the login page
    page = response.content.decode()
    assert "Too many failed attempts" in page and "paused for 15 minutes" in page
    assert "Even the right password is refused" in page
    assert 'href="/password/reset/"' in page
    assert response["Retry-After"] == "900"


def test_acc4_200_wrong_passwords_then_the_right_one_does_not_log_staff_into_the_admin(staff):
    client = from_ip()
    for i in range(200):
        log_in(client, staff.username, f"guess-{i}", path="/admin/login/")

    response = log_in(client, staff.username, PASSWORD, path="/admin/login/")

    assert response.status_code == 429
    assert not logged_in(client)
    assert client.get("/admin/").status_code == 302
    page = response.content.decode()
    assert "Too many failed attempts" in page and 'href="/admin/login/"' in page
    assert "Axes → Access attempts" in page  # how a superuser lifts it


def test_acc4_below_the_limit_the_right_password_still_logs_in(customer):
    client = from_ip()
    for i in range(9):
        assert log_in(client, customer.username, f"typo-{i}").status_code == 200

    assert log_in(client, customer.username, PASSWORD).status_code == 302
    assert logged_in(client)


def test_acc4_per_username_failures_from_many_addresses_lock_that_username_everywhere(customer):
    """A distributed guess at one account: ten addresses, one try each."""
    for i in range(10):
        log_in(from_ip(f"203.0.113.{i}"), customer.username, f"guess-{i}")

    elsewhere = from_ip("192.0.2.99")
    assert log_in(elsewhere, customer.username, PASSWORD).status_code == 429
    assert not logged_in(elsewhere)


def test_acc4_the_username_is_counted_whatever_its_case_and_spaces(customer):
    client = from_ip()
    for i in range(10):
        log_in(client if i % 2 else from_ip(f"203.0.113.{i}"), f"  OWNER@Acme.TEST{' ' * (i % 3)}", f"g{i}")

    assert log_in(from_ip("192.0.2.1"), customer.username, PASSWORD).status_code == 429


def test_acc4_per_address_failures_over_many_usernames_lock_that_address(customer):
    """Password spraying from one address: one guess at each of many usernames."""
    client = from_ip()
    for i in range(10):
        log_in(client, f"someone{i}@example.test", "Winter2026!")

    assert log_in(client, customer.username, PASSWORD).status_code == 429
    other_place = from_ip("192.0.2.10")  # the customer is not locked: the address is
    assert log_in(other_place, customer.username, PASSWORD).status_code == 302


def test_acc4_behind_a_proxy_the_forwarded_client_address_is_counted(customer, settings):
    settings.TRUSTED_PROXIES = 1
    proxy = "10.0.0.2"
    for i in range(10):
        Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"1.2.3.4, {ATTACKER}").post(
            "/login/", {"username": f"x{i}@example.test", "password": "nope"})

    other = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="192.0.2.50")  # another customer, same proxy
    assert log_in(other, customer.username, PASSWORD).status_code == 302
    forged = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"192.0.2.51, {ATTACKER}")  # a forged left part
    assert log_in(forged, "y@example.test", "nope").status_code == 429


def test_acc4_a_forwarded_address_that_is_not_an_address_falls_back_to_the_peer(customer, settings):
    """Stored in an inet column: garbage must not turn a login into a 500 (PostgreSQL)."""
    settings.TRUSTED_PROXIES = 1
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="not-an-address")
    assert log_in(client, customer.username, "wrong").status_code == 200
    assert log_in(client, customer.username, PASSWORD).status_code == 302


def test_acc4_way_back_the_cool_off_ends_the_pause(customer):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        client = from_ip()
        for i in range(12):
            log_in(client, customer.username, f"guess-{i}")
        clock.shift(timedelta(minutes=14))
        assert log_in(client, customer.username, PASSWORD).status_code == 429
        clock.shift(timedelta(minutes=15, seconds=1))  # 15 minutes after the last failure

        response = log_in(client, customer.username, PASSWORD)

    assert response.status_code == 302
    assert logged_in(client)


def test_acc4_way_back_a_password_reset_lifts_the_pause_for_that_username(customer):
    attacker = from_ip()
    for i in range(30):
        log_in(attacker, customer.username, f"guess-{i}")
    owner = from_ip("192.0.2.20")
    locked = log_in(owner, customer.username, PASSWORD)
    assert locked.status_code == 429

    owner.get("/password/reset/")  # the link on the lockout page
    owner.post("/password/reset/", {"email": customer.email})
    link = re.search(r"https?://\S+/password/reset/\S+/\S+/", mail.outbox[-1].body)[0]
    form_url = owner.get(link).url  # Django moves the token out of the address bar
    done = owner.post(form_url, {"new_password1": "new-horse-battery-9", "new_password2": "new-horse-battery-9"})
    assert done.status_code == 302 and done.url == "/password/reset/done/"

    response = log_in(owner, customer.username, "new-horse-battery-9")

    assert response.status_code == 302
    assert logged_in(owner)


def test_acc4_lockout_page_passes_for_a_locked_customer_with_a_clear_way_back(customer):
    client = from_ip()
    for i in range(10):
        log_in(client, customer.username, f"guess-{i}")
    page = client.get("/login/")  # the form itself still shows; only attempts are refused
    assert page.status_code == 200
    assert 'href="/password/reset/"' in page.content.decode()


def test_ref2_behind_a_proxy_the_login_evidence_records_the_client_not_the_proxy(customer, settings):
    """REF-2's trial-usage evidence shows staff where a login came from: behind our proxy that is
    the forwarded client's address (as the lockout counts it), not the proxy's."""
    from accounts.models import LoginEvent

    settings.TRUSTED_PROXIES = 1
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.50")
    assert log_in(client, customer.username, PASSWORD).status_code == 302
    assert LoginEvent.objects.get(user=customer).ip == "192.0.2.50"
