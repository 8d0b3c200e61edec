"""GET /api/v1/entitlements/{tracking_tag} answered in front of Django when the caches can (issue 8).

The tracking servers ask about every property every few seconds. Through Django a cached answer
cost ~1.5 ms of CPU (request object, eight middleware, URL resolution, django-ninja's auth and path
validation) to return a dict already in memory, which capped 2 cores near 1,300 requests/s.
`EntitlementFastPath` wraps Django's WSGI application (config/wsgi.py) and answers the request
itself when the key and the answer are both in the caches (this process's 2 s layer, then the
shared cache), with the ninja view's own functions (`api_key_cached`, `entitlement_cached`,
`entitlement_render`, `ENTITLEMENT_HEADERS`) and the headers Django's middleware would add: the
same response byte for byte (tests/api/test_fastpath.py compares the two).

The per-key throttle (api/throttle.py) holds here too: a cached answer over the key's rate is
this path's 429, the same as django-ninja's.

Everything else goes to Django unchanged: other paths and methods, a missing, unknown or revoked
key, a malformed or unknown tag, a cache miss (Django computes the answer and fills the cache for
the next request), a Host outside ALLOWED_HOSTS, plain HTTP under SECURE_SSL_REDIRECT, a cache
error. So the fast path never reads the database and never writes an error response: Django stays
the one place that does both, and a revoked key stops working as soon as the caches forget it (at
most LOCAL_AUTH_SECONDS = 2 s in other processes with Redis, as through Django; docs/api.md).
"""

import logging
import re

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.module_loading import import_string

from core.logs import HEADER as REQUEST_ID_HEADER
from core.logs import request_id_echoed
from usage.entitlements import entitlement_cached
from usage.events import TRACKING_TAG_RE

from .api import ENTITLEMENT_HEADERS, THROTTLED_HEADERS, entitlement_render
from .services import api_key_cached
from .throttle import api_key_throttle_wait, throttled_body

logger = logging.getLogger(__name__)

# What each middleware does to an authenticated GET of this path that sends no cookie, and so what
# the fast path must do in its place. With any middleware not listed here the fast path stays off.
MIDDLEWARE_EFFECT = {
    # SSL redirect (left to Django); HSTS, nosniff, Referrer-Policy, COOP headers (replayed).
    "django.middleware.security.SecurityMiddleware": "headers",
    "whitenoise.middleware.WhiteNoiseMiddleware": None,  # serves STATIC_URL only
    "django.contrib.sessions.middleware.SessionMiddleware": None,  # session never read: no cookie, no Vary
    # Host check (the same get_host()); Content-Length (replayed); APPEND_SLASH acts on 404s only.
    "django.middleware.common.CommonMiddleware": "headers",
    "django.middleware.csrf.CsrfViewMiddleware": None,  # a GET, and no CSRF cookie is read or set
    "django.contrib.auth.middleware.AuthenticationMiddleware": None,  # request.user is lazy and never read
    "django.contrib.messages.middleware.MessageMiddleware": None,  # no message is stored
    "django.middleware.clickjacking.XFrameOptionsMiddleware": "headers",
    "axes.middleware.AxesMiddleware": None,  # acts only on a login that axes refused (ACC-4)
    "core.logs.RequestIdMiddleware": "request_id",  # OPS-3: a sane incoming X-Request-ID is answered back
    # OPS-1: request counters; answers served here are not counted (the API has its own per-key counts).
    "django_prometheus.middleware.PrometheusBeforeMiddleware": None,
    "django_prometheus.middleware.PrometheusAfterMiddleware": None,
    "csp.middleware.CSPMiddleware": None,  # this path is in CONTENT_SECURITY_POLICY's EXCLUDE_URL_PREFIXES
    "core.security.PrivateNoStoreMiddleware": None,  # the answer sets its own Cache-Control; no user
}
_TAG_RE = re.compile(TRACKING_TAG_RE.pattern.strip("^$"))  # used with fullmatch: `$` would allow a final \n


def fast_path_blockers() -> list[str]:
    """Why the fast path cannot answer like Django under these settings (empty when it can)."""
    blockers = [f"{path} is in MIDDLEWARE" for path in settings.MIDDLEWARE if path not in MIDDLEWARE_EFFECT]
    csp_excluded = (getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}).get("EXCLUDE_URL_PREFIXES") or ()
    if "csp.middleware.CSPMiddleware" in settings.MIDDLEWARE and not any(
            reverse("api:v1:entitlement", kwargs={"tracking_tag": "-"}).startswith(p) for p in csp_excluded):
        blockers.append("the entitlement path is not in CONTENT_SECURITY_POLICY's EXCLUDE_URL_PREFIXES")
    if settings.DISALLOWED_USER_AGENTS:
        blockers.append("DISALLOWED_USER_AGENTS is set (CommonMiddleware answers 403)")
    if settings.PREPEND_WWW:
        blockers.append("PREPEND_WWW is set (CommonMiddleware redirects)")
    return blockers


class _Scheme(HttpRequest):
    """A request whose scheme is given: enough for the middleware's process_response()."""

    def __init__(self, secure: bool):
        super().__init__()
        self._secure = secure

    def _get_scheme(self):
        return "https" if self._secure else "http"


def _response_headers(secure: bool, headers: dict, status: int = 200) -> list[tuple[str, str]]:
    """The headers of an answer after Django's middleware: replayed once at start-up through the
    middleware's own process_response(), in Django's order (innermost first)."""
    response = HttpResponse(b"", headers=headers, status=status)
    request = _Scheme(secure)
    for path in reversed(settings.MIDDLEWARE):
        if MIDDLEWARE_EFFECT[path] == "headers":
            response = import_string(path)(_not_called).process_response(request, response)
    return list(response.items())


def _not_called(request):
    raise AssertionError("only process_response() is used")


class EntitlementFastPath:
    """WSGI middleware: cached entitlement answers here, every other request to `django_app`."""

    def __init__(self, django_app):
        self.django_app = django_app
        blockers = fast_path_blockers()
        if blockers:
            logger.warning("Entitlement fast path off, every request goes through Django: %s", "; ".join(blockers))
        self.enabled = not blockers
        self.prefix = reverse("api:v1:entitlement", kwargs={"tracking_tag": "-"})[:-1]
        self.ssl_redirect = settings.SECURE_SSL_REDIRECT
        self.echo_request_id = "core.logs.RequestIdMiddleware" in settings.MIDDLEWARE
        self.headers = {secure: _response_headers(secure, ENTITLEMENT_HEADERS) for secure in (False, True)
                        } if self.enabled else {}
        # The 429 of the per-key throttle: django-ninja sets Retry-After after the handler's headers.
        self.throttled_headers = {
            secure: _response_headers(secure, {**THROTTLED_HEADERS, "Retry-After": "1"}, status=429)
            for secure in (False, True)
        } if self.enabled else {}

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if self.enabled and path.startswith(self.prefix) and environ.get("REQUEST_METHOD") == "GET":
            answered = self.answer(environ, path[len(self.prefix):])
            if answered is not None:
                status, headers, body = answered
                echoed = self.echo_request_id and request_id_echoed(environ.get("HTTP_X_REQUEST_ID", ""))
                start_response(status, headers + [(REQUEST_ID_HEADER, echoed)] if echoed else headers)
                return [body]
        return self.django_app(environ, start_response)

    def answer(self, environ, tag: str) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Status, headers and body of the 200 answer (or of the key's 429), or None to let Django
        answer. The request is counted against the key's rate only when it is answered here, so
        a request handed to Django is counted once, there."""
        authorization = environ.get("HTTP_AUTHORIZATION", "")
        if not _TAG_RE.fullmatch(tag) or authorization[:7].lower() != "bearer ":
            return None
        request = WSGIRequest(environ)  # Django's own Host and scheme rules, without the handler
        try:
            request.get_host()
        except DisallowedHost:
            return None
        secure = request.is_secure()
        if self.ssl_redirect and not secure:
            return None
        try:
            key_id = api_key_cached(authorization[7:])
            if key_id is None:
                return None
            answer = entitlement_cached(tag)
        except Exception:  # the shared cache is down: Django answers (and logs) as it would without us
            return None
        if answer is None:
            return None
        wait = api_key_throttle_wait(key_id)  # never raises: fails open like Django's path
        if wait is not None:
            body = throttled_body(wait)
            values = {"Content-Length": str(len(body)), "Retry-After": str(wait)}
            return "429 Too Many Requests", [(name, values.get(name, value))
                                             for name, value in self.throttled_headers[secure]], body
        body = entitlement_render(answer)
        length = str(len(body))
        return "200 OK", [(name, length if name == "Content-Length" else value)
                          for name, value in self.headers[secure]], body
