"""Every setting is read from the environment here (django-environ); other modules only adjust.

Production differs from development only by environment variables: see README's table.
"""

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import environ
from csp.constants import NONCE, NONE, SELF, UNSAFE_INLINE

from core.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
# Rotation (docs/operations.md): the previous keys, still accepted for sessions, reset links and
# unsubscribe links signed with them; new ones are signed with SECRET_KEY only.
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env.str("SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "djstripe",
    "axes",
    "django_countries",
    "core",
    "accounts",
    "plans",
    "subscriptions",
    "invoices",
    "notifications",
    "api",
    "metrics",
    "ops",
    "usage",
    "backoffice",
    "ninja",  # the API docs' Swagger UI from its own static files, not a CDN (issue 28)
]

MIDDLEWARE = [
    "core.logs.RequestIdMiddleware",  # OPS-3: first, so every later log line carries the request id
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # OPS-1: request counts and latencies
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # issue 28: a Content-Security-Policy on every page
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # ACC-4: turns a locked-out login into the lockout page
    "core.security.PrivateNoStoreMiddleware",  # billing pages stay out of caches (core/security.py)
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.current_account",
                "core.context_processors.seller",
            ],
        },
    },
]

# Database: SQLite file by default; PostgreSQL in production (DATABASE_URL).
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}


def tune_database(db: dict) -> dict:
    """SQLite: immediate transactions and a busy timeout, so webhooks, q2 workers and the web
    server can write side by side without "database is locked" (WAL is set on connect).
    Connections are kept for a minute on both: django-q2's ORM broker closes a connection that
    may not be kept before every enqueue, which cost a reconnect per queued e-mail."""
    if db["ENGINE"].endswith("sqlite3"):
        db.setdefault("OPTIONS", {}).update(
            {"transaction_mode": "IMMEDIATE", "timeout": 20, "init_command": "PRAGMA journal_mode=WAL;"}
        )
    db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    db.setdefault("CONN_HEALTH_CHECKS", True)
    return db


tune_database(DATABASES["default"])
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# ACC-4: django-axes refuses logins (customers' /login/ and staff's /admin/login/) past
# AXES_FAILURE_LIMIT failures per username or per client address within the cool-off
# (accounts/auth.py). Failures live in the database (axes' AccessAttempt, in the admin), not the cache.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_ENABLED = env.bool("AXES_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_USERNAME_CALLABLE = "accounts.auth.login_username"
AXES_CLIENT_IP_CALLABLE = "accounts.auth.client_ip"
AXES_LOCKOUT_CALLABLE = "accounts.auth.login_locked_out"
AXES_RESET_ON_SUCCESS = False  # else one valid login of the attacker's own would clear an address's count
# Reverse proxies in front of the app that append to X-Forwarded-For (the client address for the
# per-address lockout); 0 = use REMOTE_ADDR. Production defaults to 1 (HTTPS terminates in front).
TRUSTED_PROXIES = env.int("TRUSTED_PROXIES", default=0)
PASSWORD_RESET_TIMEOUT = env.int("PASSWORD_RESET_TIMEOUT", default=3 * 3600)  # seconds a reset link works
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "billing:overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# E-mail: console by default; EMAIL_URL=smtp+tls://user:pass@host:587 in production.
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Prorata Billing <billing@prorata.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL



def redis_with_timeouts(url: str, connect: float, answer: float) -> str:
    """`url` with redis-py's socket timeouts added where it sets none. Redis is a cache and a
    broker, never the source of truth: a Redis that is down or hung must fail a call within
    seconds, which its callers answer without it (docs/reliability.md), not hold the request
    (redis-py's default is to wait for ever)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_connect_timeout", str(connect))
    query.setdefault("socket_timeout", str(answer))
    return urlunsplit(parts._replace(query=urlencode(query)))


def redis_outwaiting(url: str, wait: float) -> str:
    """`url` whose answer timeout (socket_timeout, set by `redis_with_timeouts` or by the URL itself)
    is lengthened by `wait`: for a connection that blocks `wait` seconds on purpose."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query["socket_timeout"] = str(float(query["socket_timeout"]) + wait)
    return urlunsplit(parts._replace(query=urlencode(query)))


# Cache (entitlements): Redis when REDIS_URL is set, process memory otherwise.
REDIS_URL = env.str("REDIS_URL", default="")
REDIS_CONNECT_TIMEOUT = env.float("REDIS_CONNECT_TIMEOUT", default=0.5)
REDIS_TIMEOUT = env.float("REDIS_TIMEOUT", default=1.0)
# django-q2's Redis broker waits for a task with a blocking pop of Q_BROKER_WAIT_SECONDS (`BLPOP key 1`,
# fixed in django_q/brokers/redis_broker.py). Its socket must wait longer than that pop, or on an idle
# queue the socket times out first, the pusher dies ("Failed to pull task from broker") and the
# sentinel restarts it: 5 restarts a minute and seconds of pickup delay with Redis healthy (issue 28).
# So the broker's answer timeout is the pop's wait plus REDIS_TIMEOUT; the cache keeps the short one.
Q_BROKER_WAIT_SECONDS = 1
Q_BROKER_REDIS_URL = ""
if REDIS_URL:
    REDIS_URL = redis_with_timeouts(REDIS_URL, REDIS_CONNECT_TIMEOUT, REDIS_TIMEOUT)
    Q_BROKER_REDIS_URL = redis_outwaiting(REDIS_URL, Q_BROKER_WAIT_SECONDS)
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# django-q2: Redis broker for a cluster on several machines, the ORM broker otherwise.
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="prorata"),
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=300),
    "retry": env.int("Q_RETRY", default=360),
    "max_attempts": 3,
    # OPS-3: on SIGTERM each worker finishes its task, then the cluster runs the tasks it already took
    # from the broker before it stops (django-q2 takes workers² by default): one per worker keeps a
    # stop within about two task lengths. Tasks still in the broker stay there for another worker.
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=env.int("Q_WORKERS", default=2)),
    "catch_up": False,
    "label": "Scheduled tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = Q_BROKER_REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Payments: the built-in sandbox gateway by default; "stripe" in production (docs/stripe.md).
# With PAYMENT_GATEWAY=stripe a missing or malformed key stops the start (invoices/checks.py).
PAYMENT_GATEWAY = env.str("PAYMENT_GATEWAY", default="sandbox")
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="")  # e.g. a local emulator; empty = Stripe
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
STRIPE_LIVE_MODE = env.bool("STRIPE_LIVE_MODE", default=False)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)  # safe: every write has a key
# Stripe answers 429 past 100 requests a second in live mode, 25 in test mode: every request takes a
# token of this shared limit first (core/ratelimit.py), with headroom for the dashboard and webhooks' reads
# (0: no limit).
STRIPE_MAX_REQUESTS_PER_SECOND = env.float(
    "STRIPE_MAX_REQUESTS_PER_SECOND", default=80 if STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_")) else 20)
# Charges in flight at once per billing-run worker (StripeGateway.charge_many): at ~250 ms a request,
# 32 keep up with 128 requests a second; the rate limit above is the bound.
STRIPE_CONCURRENCY = env.int("STRIPE_CONCURRENCY", default=32)
STRIPE_TEST_SECRET_KEY = STRIPE_SECRET_KEY if not STRIPE_LIVE_MODE else ""
STRIPE_LIVE_SECRET_KEY = STRIPE_SECRET_KEY if STRIPE_LIVE_MODE else ""
# One Stripe customer per account (Account.email is the owner's address).
DJSTRIPE_SUBSCRIBER_MODEL = "accounts.Account"
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
DJSTRIPE_USE_NATIVE_JSONFIELD = True
DJSTRIPE_WEBHOOK_VALIDATION = "verify_signature"

# Billing policy settings (../shared/billing-policy.md).
BILLING_RENEWAL_LEAD_HOURS = env.int("BILLING_RENEWAL_LEAD_HOURS", default=24)  # REN-1
BILLING_RETRY_DAYS = [int(d) for d in env.list("BILLING_RETRY_DAYS", default=["1", "3", "5", "7"])]  # DUN-2
BILLING_DOWNGRADE_TIMING = env.str("BILLING_DOWNGRADE_TIMING", default="period_end")  # DWN-4
BILLING_RESTORE_WORKING_DAYS = env.int("BILLING_RESTORE_WORKING_DAYS", default=5)  # UPG-3
BILLING_REFUND_WINDOW_DAYS = env.int("BILLING_REFUND_WINDOW_DAYS", default=30)  # REF-2
BILLING_RUN_EVERY_MINUTES = env.int("BILLING_RUN_EVERY_MINUTES", default=15)
BILLING_RUN_CHUNK_SIZE = env.int("BILLING_RUN_CHUNK_SIZE", default=250)
BILLING_RUN_BATCH = env.int("BILLING_RUN_BATCH", default=500)  # renewals per transaction (set-wise path)
BILLING_RUN_WAIT_MS = env.int("BILLING_RUN_WAIT_MS", default=600_000)  # how long a run waits for its chunks
# A queued chunk no worker has started within this time is taken back and run by the run itself
# (a broker that lost its queue, e.g. Redis restarted without saving; issue 28).
BILLING_RUN_CHUNK_START_MS = env.int("BILLING_RUN_CHUNK_START_MS", default=30_000)
# PAY-2: an `unknown` payment younger than this may still be in flight on another worker.
BILLING_SETTLE_GRACE_SECONDS = env.int("BILLING_SETTLE_GRACE_SECONDS", default=120)
# Requests per API key on /api/v1/ (api/throttle.py): "N/s", "N/10s", "N/m"; empty or "off" = none.
# Far above the documented load (entitlements ~2,000 requests/s in all): it stops a runaway client.
API_KEY_RATE = env.str("API_KEY_RATE", default="20000/s")
BILLING_DEFAULT_CURRENCY = env.str("BILLING_DEFAULT_CURRENCY", default="USD")
BILLING_MAX_UNIT_PRICE = Decimal("1000000")

# OPS-3: JSON lines (LOG_FORMAT=json, production's default) or plain lines (development), each with
# the request id or the django-q2 task id and the account (core/logs.py).
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)

# OPS-1: /metrics (Prometheus) answers a staff session or `Authorization: Bearer <METRICS_TOKEN>`;
# with METRICS_TOKEN empty only staff can read it. /healthz and /readyz are open (they say nothing secret).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# OPS-2: who is e-mailed when the nightly ledger check finds a breach (default: the support address).
LEDGER_ALERT_EMAILS = env.list("LEDGER_ALERT_EMAILS", default=[])
# Issue 28: sign-up attempts per client address ("N/s", "N/m", "N/h"; "off" = none), so that the
# "already exists" answer cannot be used to list which addresses have accounts.
SIGNUP_RATE = env.str("SIGNUP_RATE", default="10/h")
# Answers under these paths are never cached (core/security.py), nor any answer to a logged-in user.
BILLING_NO_STORE_PREFIXES = ["/billing/", "/account/", "/notifications/"]


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""


# Issue 28: a Content-Security-Policy on every page (django-csp). Scripts only from this site, with a
# per-response nonce for the few inline ones ({{ request.csp_nonce }}), and Stripe.js for the card
# form; inline style attributes are allowed (no script runs from them). No CDN.
STRIPE_ORIGINS = sorted({o for o in (origin(STRIPE_JS_URL), "https://js.stripe.com") if o})
CONTENT_SECURITY_POLICY = {
    # The entitlement API answers JSON to servers, mostly from its WSGI fast path (api/fastpath.py),
    # which replays Django's headers and cannot replay django-csp's (its directives' order varies).
    "EXCLUDE_URL_PREFIXES": ["/api/v1/entitlements/"],
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE, *STRIPE_ORIGINS],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF, *STRIPE_ORIGINS, origin(STRIPE_API_BASE) or "https://api.stripe.com"],
        "frame-src": [*STRIPE_ORIGINS, "https://hooks.stripe.com"],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    },
}

# The seller (TAX-1): printed on every invoice, credit note and billing e-mail; the support address
# is shown on the billing pages and in every suspension banner. The demo is a US company.
SELLER_NAME = env.str("SELLER_NAME", default="Prorata Demo Inc.")
SELLER_ADDRESS = env.str("SELLER_ADDRESS", default="1 Market Street\nSan Francisco, CA 94105")
SELLER_COUNTRY = env.str("SELLER_COUNTRY", default="US")  # ISO 3166-1 alpha-2
SELLER_TAX_ID = env.str("SELLER_TAX_ID", default="")  # e.g. a VAT ID (DE123456789) or an EIN
SELLER_REGISTRATION = env.str("SELLER_REGISTRATION", default="")  # e.g. "Amtsgericht Berlin HRB 12345"
SELLER_SUPPORT_EMAIL = env.str("SELLER_SUPPORT_EMAIL", default="support@prorata.localhost")

# Taxes (TAX-2, TAX-3; docs/policy-decisions.md). The rates are data: `manage.py load_tax_rates`
# loads invoices/tax_rates/eu.json (or your file). TAX_COLLECT: "auto" = EU VAT rules for a seller
# in the EU, no tax for a seller outside it; "domestic" = a seller outside the EU charges its own
# country's rate to customers there; "off" = no tax at all.
TAX_COLLECT = env.str("TAX_COLLECT", default="auto")
TAX_PRICES_INCLUDE_TAX = env.bool("TAX_PRICES_INCLUDE_TAX", default=False)  # catalog prices include tax
# TAX-4: VAT IDs are checked offline (format, check digit); VIES confirms them live when on.
VAT_VIES_CHECK = env.bool("VAT_VIES_CHECK", default=False)
VAT_VIES_URL = env.str("VAT_VIES_URL",
                       default="https://ec.europa.eu/taxation_customs/vies/rest-api/check-vat-number")
VAT_VIES_TIMEOUT = env.float("VAT_VIES_TIMEOUT", default=10.0)  # seconds
