"""Start-up checks for the payment settings: with PAYMENT_GATEWAY=stripe, a missing or malformed
key stops the process at start (`InvoicesConfig.ready`) and shows in `manage.py check`, instead
of failing at the first charge. The sandbox default needs no keys."""

import re

from django.conf import settings
from django.core.checks import ERROR, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from invoices.gateways import GATEWAYS

# dj-stripe refuses shorter keys (InvalidStripeAPIKey); Stripe's are much longer.
SECRET_KEY_RE = re.compile(r"^(sk|rk)_(test|live)_[A-Za-z0-9]{24,}$")
PUBLISHABLE_KEY_RE = re.compile(r"^pk_(test|live)_[A-Za-z0-9]{24,}$")
URL_RE = re.compile(r"^https?://[^/\s]+(/\S*)?$")


def _mode(key: str) -> str:
    return key.split("_")[1]


def payment_settings_problems() -> list:
    """Errors and warnings for the Payments settings block (config/settings/base.py)."""
    problems = []
    gateway = settings.PAYMENT_GATEWAY
    if gateway not in GATEWAYS:
        problems.append(Error(
            f"PAYMENT_GATEWAY={gateway!r} is not a gateway.",
            hint=f"Use one of: {', '.join(GATEWAYS)}.", id="invoices.E001",
        ))
        return problems
    if gateway != "stripe":
        return problems
    secret = settings.STRIPE_SECRET_KEY
    public = settings.STRIPE_PUBLISHABLE_KEY
    if not secret:
        problems.append(Error(
            "PAYMENT_GATEWAY=stripe needs STRIPE_SECRET_KEY.",
            hint="Set STRIPE_SECRET_KEY to the secret key from Stripe's dashboard (Developers > API keys).",
            id="invoices.E002",
        ))
    elif not SECRET_KEY_RE.match(secret):
        problems.append(Error(
            "STRIPE_SECRET_KEY is malformed: expected sk_test_… or sk_live_… (or a restricted rk_…) "
            "followed by at least 24 letters or digits.",
            hint="Copy the whole secret key from Stripe's dashboard; a publishable key (pk_…) is not a secret key.",
            id="invoices.E003",
        ))
    if not public:
        problems.append(Error(
            "PAYMENT_GATEWAY=stripe needs STRIPE_PUBLISHABLE_KEY (the card form loads Stripe.js with it).",
            hint="Set STRIPE_PUBLISHABLE_KEY to the publishable key (pk_…) from Stripe's dashboard.",
            id="invoices.E004",
        ))
    elif not PUBLISHABLE_KEY_RE.match(public):
        problems.append(Error(
            "STRIPE_PUBLISHABLE_KEY is malformed: expected pk_test_… or pk_live_… followed by at least "
            "24 letters or digits.",
            id="invoices.E005",
        ))
    if SECRET_KEY_RE.match(secret or "") and PUBLISHABLE_KEY_RE.match(public or ""):
        if _mode(secret) != _mode(public):
            problems.append(Error(
                f"STRIPE_SECRET_KEY is a {_mode(secret)} key but STRIPE_PUBLISHABLE_KEY is a {_mode(public)} key.",
                hint="Use the two keys of the same mode.", id="invoices.E006",
            ))
    if SECRET_KEY_RE.match(secret or "") and (_mode(secret) == "live") != settings.STRIPE_LIVE_MODE:
        problems.append(Error(
            f"STRIPE_SECRET_KEY is a {_mode(secret)} key but STRIPE_LIVE_MODE is {settings.STRIPE_LIVE_MODE}.",
            hint="Set STRIPE_LIVE_MODE=true with live keys, false with test keys.", id="invoices.E007",
        ))
    if settings.STRIPE_API_BASE and not URL_RE.match(settings.STRIPE_API_BASE):
        problems.append(Error(
            f"STRIPE_API_BASE={settings.STRIPE_API_BASE!r} is not an http(s) URL.", id="invoices.E008",
        ))
    if settings.STRIPE_API_BASE and settings.STRIPE_LIVE_MODE:
        problems.append(Warning(
            "STRIPE_API_BASE is set in live mode: live charges go to that address, not to Stripe.",
            hint="Leave STRIPE_API_BASE empty in production.", id="invoices.W001",
        ))
    return problems


@register(Tags.compatibility, "payments")
def check_payment_settings(app_configs=None, **kwargs):
    return payment_settings_problems()


def raise_on_payment_settings_errors() -> None:
    """Called at start-up: `manage.py` commands, gunicorn and the q2 cluster all stop here."""
    errors = [p for p in payment_settings_problems() if p.level >= ERROR]
    if errors:
        lines = "\n".join(f"  - {e.msg}" + (f" {e.hint}" if e.hint else "") for e in errors)
        raise ImproperlyConfigured(f"Payment settings are not usable:\n{lines}\nSee docs/stripe.md.")
