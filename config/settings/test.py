"""pytest: SQLite in memory by default, TEST_DATABASE_URL for PostgreSQL; tasks run inline."""

from .base import *  # noqa: F403
from .base import Q_CLUSTER, env, tune_database

DEBUG = False
SECRET_KEY = "test-only-secret-key-0123456789-0123456789-0123456789"
DATABASES = {"default": env.db("TEST_DATABASE_URL", default="sqlite:///:memory:")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": env.str("TEST_SQLITE_NAME", default="")} if env.str(
        "TEST_SQLITE_NAME", default=""
    ) else {}
tune_database(DATABASES["default"])
DATABASES["default"].pop("CONN_MAX_AGE", None)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
Q_CLUSTER.pop("redis", None)
Q_CLUSTER["orm"] = "default"
PAYMENT_GATEWAY = "sandbox"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# ACC-4's lockout is switched on by the tests that prove it (tests/accounts/test_login_protection.py);
# elsewhere it would count the suite's own logins (and Client.login() passes no request to axes).
AXES_ENABLED = env.bool("AXES_ENABLED", default=False)
# Issue 28's sign-up throttle counts per client address in the process' cache, which the suite's own
# sign-ups (all from 127.0.0.1) would fill; tests/ops/test_enumeration.py switches it on.
SIGNUP_RATE = env.str("SIGNUP_RATE", default="off")
