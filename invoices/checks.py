"""Start-up checks for the payment settings: with PAYMENT_GATEWAY=stripe, a missing or malformed
key stops the process at start (`InvoicesConfig.ready`) and shows in `manage.py check`, instead
of failing at the first charge. The sandbox default needs no keys."""

import re

from django.conf import settings
from django.core.checks import ERROR, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from accounts.countries import is_country
from accounts.vat import is_eu, vat_id_valid
from invoices.gateways import GATEWAYS
from invoices.tax_rules import MODES

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


# --- the seller and tax settings (TAX-1, TAX-3) ----------------------------------------------------------

DEMO_SELLER = {"SELLER_NAME": "Prorata Demo Inc.", "SELLER_ADDRESS": "1 Market Street\nSan Francisco, CA 94105"}


def seller_problems() -> list:
    """Warnings for a deployment whose invoices would not be legally complete: the seller's legal
    name, address, country or tax ID missing (or still the demo's), a tax ID that fails its check."""

    problems = []
    for name in ("SELLER_NAME", "SELLER_ADDRESS", "SELLER_COUNTRY"):
        value = getattr(settings, name)
        if not value.strip() or DEMO_SELLER.get(name) == value:
            problems.append(Warning(
                f"{name} is {'empty' if not value.strip() else 'still the demo value'}: every invoice and credit "
                "note prints the seller's legal name, address and country (TAX-1).",
                hint=f"Set {name} in the environment (README, Configuration).", id="invoices.W010"))
    country = settings.SELLER_COUNTRY.upper()
    if country and not is_country(country):
        problems.append(Warning(f"SELLER_COUNTRY={settings.SELLER_COUNTRY!r} is not an ISO 3166-1 alpha-2 code.",
                                hint="Use two capital letters, like DE or US.", id="invoices.W011"))
    if not settings.SELLER_TAX_ID.strip():
        problems.append(Warning(
            "SELLER_TAX_ID is empty: invoices print no tax ID for the seller"
            + (" although an EU seller's invoices must carry its VAT ID." if is_eu(country) else "."),
            hint="Set SELLER_TAX_ID to your VAT ID (e.g. DE136695976) or tax number.", id="invoices.W012"))
    elif is_eu(country) and not vat_id_valid(country, settings.SELLER_TAX_ID):
        problems.append(Warning(f"SELLER_TAX_ID={settings.SELLER_TAX_ID!r} is not a valid VAT ID of {country} "
                                "(format and check digit).", id="invoices.W013"))
    return problems


@register(Tags.compatibility, deploy=True)
def check_seller_details(app_configs=None, **kwargs):
    return seller_problems()


@register(Tags.compatibility)
def check_tax_settings(app_configs=None, **kwargs):
    if settings.TAX_COLLECT not in MODES:
        return [Error(f"TAX_COLLECT={settings.TAX_COLLECT!r} is not one of {', '.join(MODES)}.",
                      hint="auto: EU VAT rules for a seller in the EU, none outside; domestic: a seller outside "
                           "the EU charges its own rate at home; off: no tax.", id="invoices.E010")]
    return []
