"""Schemathesis against /api/v1/openapi.json, in process through Django's WSGI app: no 5xx, and
every response matches the documented status codes, content types and schemas. Bounded to a few
dozen examples per operation so that it runs in seconds."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import on_plan

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def tracked(catalog, auth):
    """A real property, so that generated requests also reach the 200 paths."""
    return on_plan(catalog["free"])


@pytest.fixture(autouse=True)
def _keep_test_connection():
    """The raw WSGI app closes the database connection after each request, as in production;
    the test's transaction needs it open (Django's test client does the same)."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def test_openapi_schema_is_served_without_a_key(client):
    """The OpenAPI schema is served without a key and lists exactly the two endpoints: usage events and entitlements."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert set(paths) == {"/api/v1/usage/events", "/api/v1/entitlements/{tracking_tag}"}


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case, auth, tracked):
    """The API keeps its documented contract: generated requests never get a 5xx, and every answer matches the schema
    (status, content type, body)."""
    response = case.call_and_validate(headers=auth, checks=CHECKS)
    assert response.status_code < 500
    # Generated tags almost never exist: send the same case once more aimed at a real property,
    # so that the 200 answers (rendered by hand on the hot path) are checked against the schema too.
    if case.path_parameters and "tracking_tag" in case.path_parameters:
        case.path_parameters["tracking_tag"] = tracked.tracking_tag
    elif isinstance(case.body, dict) and isinstance(case.body.get("events"), list):
        now = timezone.now().isoformat()
        for item in case.body["events"]:
            if isinstance(item, dict):
                item.update(tracking_tag=tracked.tracking_tag, timestamp=now)
    else:
        return
    response = case.call_and_validate(headers=auth, checks=CHECKS)
    assert response.status_code < 500


# -- the schema says what the endpoint does (issue 16) ----------------------------------------


def request_schema_validator(client):
    import jsonschema_rs

    operation = client.get("/api/v1/openapi.json").json()["paths"]["/api/v1/usage/events"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    return operation, jsonschema_rs.Draft202012Validator(schema, validate_formats=True)


def good_event(tag, **changes):
    return {"id": "e-1", "tracking_tag": tag, "type": "session", "timestamp": timezone.now().isoformat(), **changes}


@pytest.mark.parametrize(("change", "reason"), [
    ({"timestamp": "yesterday"}, "invalid_timestamp"),
    ({"timestamp": "2026-13-45T99:00:00Z"}, "invalid_timestamp"),
    ({"timestamp": "2026-11-20T12:00:00"}, "invalid_timestamp"),  # naive
    ({"id": ""}, "invalid_id"),
    ({"id": "x" * 101}, "invalid_id"),
    ({"type": "pageview"}, "invalid_type"),
    ({"tracking_tag": "not a tag"}, "invalid_tracking_tag"),
    (None, "invalid_event"),
])
def test_use1_schema_allows_what_the_endpoint_answers_200_with_a_rejection(client, auth, tracked, change, reason):
    """A malformed timestamp (or any bad event) is a 200 with a per-event rejection, so the
    documented request schema must accept it: it said `format: date-time`, implying a 422."""
    operation, validator = request_schema_validator(client)
    item = "not an event" if change is None else good_event(tracked.tracking_tag, **change)
    body = {"events": [good_event(tracked.tracking_tag, id="ok-1"), item]}

    response = client.post("/api/v1/usage/events", data=body, content_type="application/json", headers=auth)

    assert response.status_code == 200
    assert [r["reason"] for r in response.json()["rejections"]] == [reason]
    assert validator.is_valid(body), "the schema refuses a body the endpoint accepts"
    assert "malformed timestamp" in operation["responses"]["200"]["description"]
    assert "A malformed event is not a 422" in operation["responses"]["422"]["description"]


@pytest.mark.parametrize(("body", "status"), [
    ([], 422), ({"events": {}}, 422), ({"evts": []}, 422), ({"events": ["x"] * 1001}, 413),
])
def test_use1_schema_refuses_what_the_endpoint_refuses_whole(client, auth, tracked, body, status):
    operation, validator = request_schema_validator(client)

    response = client.post("/api/v1/usage/events", data=body, content_type="application/json", headers=auth)

    assert response.status_code == status
    assert not validator.is_valid(body)
    assert str(status) in operation["responses"]


def test_use1_schema_still_documents_a_good_event(client, db):
    operation, _ = request_schema_validator(client)
    items = operation["requestBody"]["content"]["application/json"]["schema"]["properties"]["events"]["items"]
    event_schema = items["anyOf"][0]
    assert event_schema["required"] == ["id", "tracking_tag", "type", "timestamp"]
    assert event_schema["properties"]["timestamp"]["format"] == "date-time"
