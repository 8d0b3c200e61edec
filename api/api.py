"""The usage and entitlements API, /api/v1/ (django-ninja: typed, and it writes the OpenAPI schema)."""

import json
import math

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Path, Status
from ninja.errors import AuthenticationError, Throttled, ValidationError
from ninja.security import HttpBearer

from usage.entitlements import entitlement_get
from usage.events import TRACKING_TAG_RE, BatchTooLarge
from usage.ingest import usage_ingest

from .schemas import USAGE_BATCH_SCHEMA, EntitlementOut, ErrorOut, UsageBatchOut
from .services import api_key_authenticate
from .throttle import ApiKeyThrottle, throttled_body

# 1,000 events take about 150 KB; this leaves room for longer ids and extra fields and stays
# below Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB), which would answer 400 instead of 413.
MAX_BODY_BYTES = 2 * 1024 * 1024
ENTITLEMENT_MAX_AGE = 10  # seconds a client may reuse an entitlement answer
# The 200 entitlement answer, shared with the WSGI fast path (api/fastpath.py) that serves cached
# answers without Django. Rendered directly: this is the hot path, and the dict already has the
# documented shape.
ENTITLEMENT_HEADERS = {"Content-Type": "application/json", "Cache-Control": f"private, max-age={ENTITLEMENT_MAX_AGE}"}


def entitlement_render(answer: dict) -> bytes:
    return json.dumps(answer).encode()


class ApiKeyAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str):
        return api_key_authenticate(token)


api = NinjaAPI(
    title="Prorata usage and entitlements API",
    version="1.0.0",
    description="Server-to-server API for the tracking product. Send `Authorization: Bearer <key>`; "
                "staff create keys in the admin or with `manage.py create_api_key NAME`.",
    auth=ApiKeyAuth(),
    throttle=ApiKeyThrottle(),  # per key, after authentication; 429 with Retry-After (api/throttle.py)
    urls_namespace="api:v1",
    docs_url=None,  # /api/v1/docs is for staff only (api/urls.py); /api/v1/openapi.json stays public
)


def _error(status: int, detail: str) -> HttpResponse:
    return HttpResponse(json.dumps({"detail": detail}), status=status, content_type="application/json")


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    response = _error(401, "Send a valid, unrevoked API key as `Authorization: Bearer <key>`.")
    response["WWW-Authenticate"] = "Bearer"
    return response


# The 429 answer, shared with the WSGI fast path; django-ninja adds Retry-After (the wait, rounded up).
THROTTLED_HEADERS = {"Content-Type": "application/json"}


@api.exception_handler(Throttled)
def _throttled(request, exc):
    return HttpResponse(throttled_body(math.ceil(exc.wait or 1)), status=429, headers=THROTTLED_HEADERS)


@api.exception_handler(ValidationError)
def _invalid(request, exc):
    parts = [f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in exc.errors]
    return _error(422, "; ".join(parts) or "Invalid request.")


@api.post(
    "/usage/events",
    response={200: UsageBatchOut, 400: ErrorOut, 401: ErrorOut, 413: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    summary="Report billable sessions",
    operation_id="usage_events_report",
    description="A batch of up to 1,000 session events. Each event is checked on its own: bad ones are "
                "rejected with a reason, the rest are recorded. An id already seen is ignored, so a batch "
                "can be replayed safely after a timeout.",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": USAGE_BATCH_SCHEMA}}},
        # What each status means for this operation: a bad event is a 200 with a rejection, not a 422.
        "responses": {
            200: {"description": "The batch was processed: good events recorded, bad ones (a malformed "
                                   "timestamp, a missing id …) listed in `rejections` with their reason."},
            400: {"description": "The body is not JSON. Nothing was recorded."},
            413: {"description": "More than 1,000 events, or a body over 2 MiB. Nothing was recorded."},
            422: {"description": "The body is not an object with an `events` list. Nothing was recorded. "
                                   "(A malformed event is not a 422: see 200.)"},
            429: {"description": "The key's request rate is used up; see Retry-After. Nothing was recorded."},
        },
    },
)
def usage_events(request: HttpRequest):
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY_BYTES:
        return Status(413, {"detail": f"The body is larger than {MAX_BODY_BYTES:,} bytes. Send at most 1,000 events "
                                       "per batch: nothing from this one was recorded."})
    body = request.body
    if len(body) > MAX_BODY_BYTES:
        return Status(413, {"detail": f"The body is larger than {MAX_BODY_BYTES:,} bytes: nothing was recorded."})
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Status(400, {"detail": 'The body must be JSON: {"events": [...]}. Nothing was recorded.'})
    except RecursionError:  # [[[[…]]]] deeper than the parser goes (issue 16: was a 500)
        return Status(400, {"detail": 'The body is nested too deeply to be {"events": [...]}: each event is a flat '
                                      "object. Nothing was recorded."})
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        return Status(422, {"detail": 'The body must be an object with an "events" list. Nothing was recorded.'})
    try:
        result = usage_ingest(payload["events"])
    except BatchTooLarge as exc:
        return Status(413, {"detail": str(exc)})
    return Status(200, result)


@api.get(
    "/entitlements/{tracking_tag}",
    response={200: EntitlementOut, 401: ErrorOut, 404: ErrorOut, 422: ErrorOut, 429: ErrorOut},
    summary="May this property track?",
    operation_id="entitlement_get",
    description="`active` false with a `reason` means the property must stop tracking: the account is "
                "suspended, the property is paused or deleted, or a hard-capped plan's monthly quota is used up. "
                f"Answers may be cached for {ENTITLEMENT_MAX_AGE} seconds.",
)
def entitlement(request: HttpRequest, tracking_tag: str = Path(..., pattern=TRACKING_TAG_RE.pattern)):
    answer = entitlement_get(tracking_tag)
    if answer is None:
        return Status(404, {"detail": "No property has this tracking tag."})
    return HttpResponse(entitlement_render(answer), headers=ENTITLEMENT_HEADERS)
