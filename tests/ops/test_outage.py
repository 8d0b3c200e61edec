"""Issue 28 (finding 7): while the database is down every request was a bare 500 with a session
traceback logged per request; now a 503 with a short page and one log line per failure burst."""

import logging

import pytest
from django.db import OperationalError, connection
from django.test import Client

from core.outage import DatabaseOutageFilter
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def outage_filter():
    found = next(f for f in logging.getLogger("django.request").filters if isinstance(f, DatabaseOutageFilter))
    found.burst_until, found.suppressed = 0.0, 0
    yield found
    found.burst_until, found.suppressed = 0.0, 0


def test_ops1_with_the_database_down_pages_answer_503_and_the_log_has_one_line_per_burst(
        catalog, caplog, monkeypatch, outage_filter):
    """Issue 28 finding 7: 60 requests with the database down: 60 x 503 with the short page, one log line."""
    user = UserFactory()
    AccountFactory(owner=user)
    client = Client(raise_request_exception=False)
    client.force_login(user)

    def refuse(*args, **kwargs):
        raise OperationalError('connection to server at "10.0.0.5", port 5432 failed: Connection refused')

    with caplog.at_level(logging.ERROR, logger="django.request"), monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        answers = [client.get(path) for path in ("/billing/", "/account/properties/", "/billing/invoices/") * 20]
    assert {a.status_code for a in answers} == {503}
    assert all(a["Retry-After"] == "30" and b"Prorata is briefly unavailable" in a.content for a in answers)
    lines = [r for r in caplog.records if r.name == "django.request"]
    assert len(lines) == 1 and lines[0].exc_info is None, [r.getMessage() for r in lines]
    assert "Database unavailable (OperationalError" in lines[0].getMessage()
    assert outage_filter.suppressed == 59


def test_ops1_other_errors_keep_their_traceback_and_the_next_burst_says_what_was_left_out(outage_filter):
    """Issue 28 finding 7: the filter leaves other errors' tracebacks alone and counts what a burst left out."""
    def record(exc):
        try:
            raise exc
        except Exception:
            import sys

            return logging.LogRecord("django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s",
                                     ("/x",), sys.exc_info())

    other = record(ValueError("a bug"))
    assert outage_filter.filter(other) and other.exc_info is not None
    first, second = record(OperationalError("down")), record(OperationalError("down"))
    assert outage_filter.filter(first) and not outage_filter.filter(second)
    outage_filter.burst_until = 0.0  # the burst is over
    third = record(OperationalError("down again"))
    assert outage_filter.filter(third) and "1 failures not logged" in third.getMessage()
