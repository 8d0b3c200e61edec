"""The WSGI fast path for cached entitlement answers (api/fastpath.py, issue 8).

Every test sends the same WSGI request to Django's application alone and to the fast path wrapped
around it, and requires the same status, headers (in order) and body; `django_calls` tells whether
the fast path answered itself or handed the request to Django.
"""

from datetime import timedelta

import pytest
import time_machine
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory, override_settings
from django.utils import timezone

from accounts.models import Account
from api.fastpath import MIDDLEWARE_EFFECT, EntitlementFastPath, fast_path_blockers
from api.models import ApiKey, api_key_hash
from api.services import _valid_keys, api_key_revoke
from core import events

from .conftest import NOW

PROD_SECURITY = {
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
    "SECURE_CONTENT_TYPE_NOSNIFF": True,
    "X_FRAME_OPTIONS": "DENY",
}


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """Like Django's test client: the handler must not close the connection holding the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


class Apps:
    """Django's WSGI application, and the fast path in front of another instance of it."""

    def __init__(self):
        self.django = WSGIHandler()
        self.django_calls: list[str] = []
        inner = WSGIHandler()

        def counted(environ, start_response):
            self.django_calls.append(environ["PATH_INFO"])
            return inner(environ, start_response)

        self.fast = EntitlementFastPath(counted)


@pytest.fixture
def apps(db):
    return Apps()


def wsgi(app, path, *, key=None, method="GET", **headers):
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    environ = RequestFactory().generic(method, path, headers=headers).environ
    started = {}

    def start_response(status, response_headers, exc_info=None):
        started.update(status=status, headers=response_headers)

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], started["headers"], body


def both(apps, path, **kwargs):
    """The fast path's response, after checking that Django alone gives exactly the same."""
    before = len(apps.django_calls)
    fast = wsgi(apps.fast, path, **kwargs)
    handed_over = len(apps.django_calls) > before
    assert fast == wsgi(apps.django, path, **kwargs)
    return fast, handed_over


def url(prop_or_tag) -> str:
    return f"/api/v1/entitlements/{getattr(prop_or_tag, 'tracking_tag', prop_or_tag)}"


def warm(apps, prop, key, **headers):
    """The first request for a key and a tag goes through Django, which fills the caches."""
    status, _, _ = wsgi(apps.django, url(prop), key=key, **headers)
    assert status == "200 OK"


def test_the_fast_path_serves_the_ninja_route():
    """The fast path's prefix, read from the ninja entitlement route, is the documented /api/v1/entitlements/."""
    assert EntitlementFastPath(WSGIHandler()).prefix == "/api/v1/entitlements/"


def test_cached_answer_is_served_without_django_and_is_identical(apps, api_key, personal_prop,
                                                                django_assert_num_queries):
    """Speed: a cached entitlement answer is served by the fast path without Django and with no query, identical to
    Django's (status, headers, body)."""
    warm(apps, personal_prop, api_key)
    with django_assert_num_queries(0):
        (status, headers, body), handed_over = both(apps, url(personal_prop), key=api_key)
    assert (status, handed_over) == ("200 OK", False)
    assert ("Cache-Control", "private, max-age=10") in headers
    assert ("Content-Length", str(len(body))) in headers
    assert b'"active": true' in body


def test_the_first_request_fills_the_caches_through_django(apps, api_key, personal_prop):
    """The first request for a key and a tag goes through Django, which fills the caches; the next one is served by the
    fast path."""
    (status, _, _), handed_over = both(apps, url(personal_prop), key=api_key)
    assert (status, handed_over) == ("200 OK", True)
    assert both(apps, url(personal_prop), key=api_key)[1] is False


def test_suspended_account_answer_is_identical(apps, api_key, personal_prop):
    """SUS-1: for a suspended account the fast path answers itself, identically to Django: stop tracking, reason
    account_suspended."""
    Account.objects.filter(pk=personal_prop.account_id).update(status="suspended", suspension_reason="non_payment")
    warm(apps, personal_prop, api_key)
    (status, _, body), handed_over = both(apps, url(personal_prop), key=api_key)
    assert (status, handed_over) == ("200 OK", False)
    assert b'"reason": "account_suspended"' in body


def test_unknown_tag_is_django_s_404(apps, api_key, personal_prop):
    """An unknown tracking tag is handed to Django and gets Django's exact 404 answer."""
    warm(apps, personal_prop, api_key)  # the key is cached: only the tag is unknown
    (status, _, body), handed_over = both(apps, url("PR-nosuchtag"), key=api_key)
    assert (status, handed_over, body) == ("404 Not Found", True, b'{"detail": "No property has this tracking tag."}')


@pytest.mark.parametrize("tag", ["bad%20tag", "a" * 41, "tag%0A", "t.g"])
def test_malformed_tag_is_django_s_422(apps, api_key, personal_prop, tag):
    """A malformed tracking tag (space, 41 characters, newline, dot) is handed to
    Django and gets its exact 422 answer."""
    warm(apps, personal_prop, api_key)
    (status, _, body), handed_over = both(apps, url(tag), key=api_key)
    assert (status, handed_over) == ("422 Unprocessable Entity", True)
    assert b"tracking_tag" in body


@pytest.mark.parametrize("key", [None, "", "prk_not-a-key", "x" * 300])
def test_missing_or_unknown_key_is_django_s_401(apps, api_key, personal_prop, key):
    """Safety: a cached answer is never served without a valid key: a missing, empty, unknown or oversized key gets
    Django's exact 401."""
    warm(apps, personal_prop, api_key)  # the answer is cached: only the key is wrong
    (status, headers, _), handed_over = both(apps, url(personal_prop), key=key)
    assert (status, handed_over) == ("401 Unauthorized", True)
    assert ("WWW-Authenticate", "Bearer") in headers


def test_other_auth_schemes_are_django_s_401(apps, api_key, personal_prop):
    """Safety: a valid key sent with another scheme than Bearer (Basic) gets Django's 401, not the cached answer."""
    warm(apps, personal_prop, api_key)
    (status, _, _), handed_over = both(apps, url(personal_prop), Authorization=f"Basic {api_key}")
    assert (status, handed_over) == ("401 Unauthorized", True)


def test_a_key_revoked_here_is_refused_at_once(apps, api_key, personal_prop, django_capture_on_commit_callbacks):
    """Safety: a key revoked in this process is refused by the fast path at once, with Django's 401."""
    warm(apps, personal_prop, api_key)
    assert both(apps, url(personal_prop), key=api_key)[0][0] == "200 OK"
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(ApiKey.objects.get(key_hash=api_key_hash(api_key)))
    (status, _, _), handed_over = both(apps, url(personal_prop), key=api_key)
    assert (status, handed_over) == ("401 Unauthorized", True)


def test_a_key_revoked_in_another_process_is_refused_within_two_seconds(apps, api_key, personal_prop):
    """The other process drops the shared cache entry; this one's own layer lives LOCAL_AUTH_SECONDS."""
    with time_machine.travel(NOW, tick=False) as clock:
        warm(apps, personal_prop, api_key)
        ApiKey.objects.filter(key_hash=api_key_hash(api_key)).update(revoked_at=timezone.now())
        cache.delete(_valid_keys.shared_key(api_key_hash(api_key)))
        clock.shift(timedelta(seconds=1))
        assert wsgi(apps.fast, url(personal_prop), key=api_key)[0] == "200 OK"  # the documented bound
        clock.shift(timedelta(seconds=1.5))
        (status, _, _), handed_over = both(apps, url(personal_prop), key=api_key)
    assert (status, handed_over) == ("401 Unauthorized", True)


def test_the_answer_changes_after_invalidation(apps, api_key, personal_prop, django_capture_on_commit_callbacks):
    """SUS-1: after the account.suspended event the fast path drops its cached answer; Django computes the suspended
    answer, which is cached again."""
    warm(apps, personal_prop, api_key)
    assert b'"active": true' in both(apps, url(personal_prop), key=api_key)[0][2]
    Account.objects.filter(pk=personal_prop.account_id).update(status="suspended", suspension_reason="non_payment")
    assert b'"active": true' in wsgi(apps.fast, url(personal_prop), key=api_key)[2]  # still cached
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("account.suspended", personal_prop.account_id, reason="non_payment", note="")
    (status, _, body), handed_over = both(apps, url(personal_prop), key=api_key)
    assert (status, handed_over) == ("200 OK", True)  # a miss: Django computed the new answer
    assert b'"reason": "account_suspended"' in body
    assert both(apps, url(personal_prop), key=api_key)[1] is False  # and cached it for the fast path


def test_production_security_headers_are_identical(db, api_key, personal_prop):
    """Safety: under production security settings the fast path sends Django's security headers, and plain HTTP gets
    Django's HTTPS redirect."""
    with override_settings(**PROD_SECURITY):
        apps = Apps()
        https = {"X-Forwarded-Proto": "https"}
        warm(apps, personal_prop, api_key, **https)
        (status, headers, _), handed_over = both(apps, url(personal_prop), key=api_key, **https)
        assert (status, handed_over) == ("200 OK", False)
        names = [name for name, _ in headers]
        assert {"Strict-Transport-Security", "X-Content-Type-Options", "Referrer-Policy",
                "Cross-Origin-Opener-Policy", "X-Frame-Options"} <= set(names)
        # Plain HTTP under SECURE_SSL_REDIRECT: Django's redirect.
        (status, _, _), handed_over = both(apps, url(personal_prop), key=api_key)
        assert (status, handed_over) == ("301 Moved Permanently", True)


def test_a_host_outside_allowed_hosts_is_django_s_400(apps, api_key, personal_prop):
    """Safety: a Host outside ALLOWED_HOSTS gets Django's 400, never a cached answer."""
    warm(apps, personal_prop, api_key)
    (status, _, _), handed_over = both(apps, url(personal_prop), key=api_key, Host="evil.example")
    assert (status, handed_over) == ("400 Bad Request", True)


def test_other_methods_and_paths_go_to_django(apps, api_key, personal_prop):
    """Only a GET of an entitlement URL is answered by the fast path; a POST, a trailing slash and other paths go to
    Django."""
    warm(apps, personal_prop, api_key)
    assert both(apps, url(personal_prop), key=api_key, method="POST")[1] is True
    assert both(apps, url(personal_prop) + "/", key=api_key)[1] is True
    (status, _, _), handed_over = both(apps, "/api/v1/openapi.json")
    assert (status, handed_over) == ("200 OK", True)


def test_a_cache_error_is_left_to_django(apps, api_key, personal_prop, monkeypatch):
    """Safety: when the cache fails (Redis down), the request still succeeds: the fast path hands it to Django."""
    warm(apps, personal_prop, api_key)

    def down(tag):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr("api.fastpath.entitlement_cached", down)
    assert wsgi(apps.fast, url(personal_prop), key=api_key)[0] == "200 OK"
    assert apps.django_calls == [url(personal_prop)]


def test_an_unknown_middleware_turns_the_fast_path_off(apps, api_key, personal_prop):
    """Safety: a middleware the fast path cannot imitate turns it off (fast_path_blockers names it), so every request
    goes to Django."""
    extra = "django.middleware.gzip.GZipMiddleware"
    assert extra not in MIDDLEWARE_EFFECT
    with override_settings(MIDDLEWARE=[extra, *MIDDLEWARE_EFFECT]):
        assert fast_path_blockers() == [f"{extra} is in MIDDLEWARE"]
        apps = Apps()
        warm(apps, personal_prop, api_key)
        assert apps.fast.enabled is False
        assert both(apps, url(personal_prop), key=api_key)[1] is True


def test_the_settings_in_use_allow_the_fast_path():
    """The project's own settings leave the fast path on: fast_path_blockers() finds nothing."""
    assert fast_path_blockers() == []


# -- the per-key throttle holds on the fast path too (issue 16, api/throttle.py) ---------------

THROTTLE_AT = NOW.replace(second=30)


def test_throttle_a_cached_answer_over_the_keys_rate_is_the_same_429_as_django_s(apps, api_key, personal_prop,
                                                                               settings):
    """Safety: the WSGI fast path throttles a key like Django does, with a byte-identical 429."""
    settings.API_KEY_RATE = "1/m"
    with time_machine.travel(THROTTLE_AT, tick=False):
        warm(apps, personal_prop, api_key)  # the key's one request of this minute, through Django

        (status, headers, body), handed_over = both(apps, url(personal_prop), key=api_key)

    assert (status, handed_over) == ("429 Too Many Requests", False)
    assert ("Retry-After", "30") in headers and ("Content-Length", str(len(body))) in headers
    assert b"Too many requests with this API key" in body


def test_throttle_production_headers_of_the_429_are_identical(db, api_key, personal_prop, settings):
    """Safety: with production security headers, the fast path's 429 matches Django's."""
    settings.API_KEY_RATE = "1/m"
    with override_settings(**PROD_SECURITY), time_machine.travel(THROTTLE_AT, tick=False):
        apps = Apps()
        https = {"X-Forwarded-Proto": "https"}
        warm(apps, personal_prop, api_key, **https)
        (status, headers, _), handed_over = both(apps, url(personal_prop), key=api_key, **https)
    assert (status, handed_over) == ("429 Too Many Requests", False)
    assert "Strict-Transport-Security" in dict(headers)


def test_throttle_each_request_is_counted_once_whichever_path_answers_it(apps, api_key, personal_prop, settings):
    """A cache miss goes to Django, which counts it; the fast path counts only what it answers."""
    settings.API_KEY_RATE = "3/m"
    with time_machine.travel(THROTTLE_AT, tick=False):
        statuses = [wsgi(apps.fast, url(personal_prop), key=api_key)[0] for _ in range(4)]
    assert statuses == ["200 OK", "200 OK", "200 OK", "429 Too Many Requests"]
    assert apps.django_calls == [url(personal_prop)]  # the first (a miss), counted once, by Django


def test_throttle_fails_open_on_the_fast_path(apps, api_key, personal_prop, settings, monkeypatch):
    """Reliability: a throttle that cannot reach its counter lets the fast path answer (never a 500)."""
    from api import throttle

    settings.API_KEY_RATE = "1/m"
    dead = throttle.RedisCounter("redis://127.0.0.1:1/0")
    monkeypatch.setattr(throttle, "counter", lambda: dead)
    warm(apps, personal_prop, api_key)
    answers = [wsgi(apps.fast, url(personal_prop), key=api_key)[0] for _ in range(10)]
    assert answers == ["200 OK"] * 10
    assert apps.django_calls == []  # still answered on the fast path
