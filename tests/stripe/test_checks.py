"""PAYMENT_GATEWAY=stripe without usable keys stops the start with a clear message; the sandbox
default needs none. No emulator needed."""

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from invoices.checks import check_payment_settings, raise_on_payment_settings_errors

GOOD_SECRET = "sk_test_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3"
GOOD_PUBLIC = "pk_test_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3"


@pytest.fixture
def stripe_gateway(settings):
    settings.PAYMENT_GATEWAY = "stripe"
    settings.STRIPE_SECRET_KEY = GOOD_SECRET
    settings.STRIPE_PUBLISHABLE_KEY = GOOD_PUBLIC
    settings.STRIPE_LIVE_MODE = False
    settings.STRIPE_API_BASE = ""
    return settings


def ids(settings_problems):
    return [p.id for p in settings_problems]


def test_the_sandbox_default_needs_no_keys(settings):
    """PAY-1: the sandbox gateway, the default, starts with no Stripe keys."""
    settings.PAYMENT_GATEWAY = "sandbox"
    settings.STRIPE_SECRET_KEY = ""
    settings.STRIPE_PUBLISHABLE_KEY = ""
    assert check_payment_settings() == []
    raise_on_payment_settings_errors()


def test_good_test_keys_pass(stripe_gateway):
    """Deploy: well-formed Stripe test keys pass the start-up check."""
    assert check_payment_settings() == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"STRIPE_SECRET_KEY": ""}, "invoices.E002"),
        ({"STRIPE_SECRET_KEY": "sk_test_short"}, "invoices.E003"),
        ({"STRIPE_SECRET_KEY": GOOD_PUBLIC}, "invoices.E003"),
        ({"STRIPE_PUBLISHABLE_KEY": ""}, "invoices.E004"),
        ({"STRIPE_PUBLISHABLE_KEY": "pk_test_x y"}, "invoices.E005"),
        ({"STRIPE_PUBLISHABLE_KEY": "pk_live_" + "Z" * 24}, "invoices.E006"),
        ({"STRIPE_LIVE_MODE": True}, "invoices.E007"),
        ({"STRIPE_API_BASE": "localhost:12111"}, "invoices.E008"),
        ({"PAYMENT_GATEWAY": "paypal"}, "invoices.E001"),
    ],
)
def test_missing_or_malformed_settings_are_errors(stripe_gateway, changes, expected):
    """Deploy: PAYMENT_GATEWAY=stripe with a missing, malformed or mismatched setting is a named error, and the start
    stops."""
    for name, value in changes.items():
        setattr(stripe_gateway, name, value)
    assert expected in ids(check_payment_settings())
    with pytest.raises(ImproperlyConfigured, match="Payment settings are not usable"):
        raise_on_payment_settings_errors()


def test_the_error_names_the_setting_but_never_echoes_the_key(stripe_gateway):
    """Safety: the start-up error names the bad setting but never prints the secret key."""
    stripe_gateway.STRIPE_SECRET_KEY = "sk_live_leak"
    with pytest.raises(ImproperlyConfigured) as refused:
        raise_on_payment_settings_errors()
    assert "STRIPE_SECRET_KEY" in str(refused.value)
    assert "sk_live_leak" not in str(refused.value)


def test_an_api_base_in_live_mode_is_a_warning(stripe_gateway):
    """Deploy: a custom STRIPE_API_BASE in live mode is a warning (W001), not an error: the start goes on."""
    stripe_gateway.STRIPE_SECRET_KEY = "sk_live_" + "A" * 24
    stripe_gateway.STRIPE_PUBLISHABLE_KEY = "pk_live_" + "A" * 24
    stripe_gateway.STRIPE_LIVE_MODE = True
    stripe_gateway.STRIPE_API_BASE = "http://127.0.0.1:12111"
    assert ids(check_payment_settings()) == ["invoices.W001"]
    raise_on_payment_settings_errors()  # a warning does not stop the start


def test_manage_py_stops_at_start_without_the_keys(tmp_path):
    """The real start-up path: a process with PAYMENT_GATEWAY=stripe and no keys exits with the message."""
    from django.conf import settings

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings.local",
           "PAYMENT_GATEWAY": "stripe", "STRIPE_SECRET_KEY": "", "STRIPE_PUBLISHABLE_KEY": "",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'unused.sqlite3'}"}
    done = subprocess.run([sys.executable, "manage.py", "check"], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "PAYMENT_GATEWAY=stripe needs STRIPE_SECRET_KEY" in done.stderr
    assert "PAYMENT_GATEWAY=stripe needs STRIPE_PUBLISHABLE_KEY" in done.stderr
