"""While the database is down (issue 28: every request was a bare 500 and a session traceback was
logged per request, 2,308 in 6 s): answer 503 with a short page and `Retry-After`, and log one line
per failure burst instead of a traceback per request.

`server_error` is the project's handler500: Django calls it inside its exception handler, so the
exception is at hand. A database that cannot be reached (a connection refused, lost or timed out,
SQLite locked past its busy timeout) is answered 503 by a page rendered without the database
(no context processor runs); anything else is Django's own 500 page.

`DatabaseOutageFilter` sits on the `django.request` logger: the first database failure of a burst
is logged as one line without its traceback, the next ones within BURST_SECONDS are counted and not
logged (a burst ends after BURST_SECONDS without one), and the first line of the next burst says how
many the previous one left out. Other errors are
logged as before, with their tracebacks. `/readyz` says the same to the load balancer.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

from django.db import InterfaceError, OperationalError
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.views import defaults

BURST_SECONDS = 60.0
RETRY_AFTER_SECONDS = 30
DATABASE_ERRORS = (OperationalError, InterfaceError)


def database_unavailable(exc: BaseException | None) -> bool:
    while exc is not None:
        if isinstance(exc, DATABASE_ERRORS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def server_error(request, template_name=defaults.ERROR_500_TEMPLATE_NAME):
    if database_unavailable(sys.exc_info()[1]):
        response = HttpResponse(render_to_string("503.html", {"retry_after": RETRY_AFTER_SECONDS}), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return defaults.server_error(request, template_name)


class DatabaseOutageFilter(logging.Filter):
    def __init__(self, name: str = ""):
        super().__init__(name)
        self.lock = threading.Lock()
        self.burst_until = 0.0
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        now = time.monotonic()
        with self.lock:
            if not database_unavailable(exc):
                return True
            if now < self.burst_until:
                self.suppressed += 1
                self.burst_until = now + BURST_SECONDS
                return False
            before, self.suppressed = self.suppressed, 0
            self.burst_until = now + BURST_SECONDS
        record.msg = "Database unavailable (%s: %s), answering 503%s; next failures within %d s are not logged"
        record.args = (type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "-",
                       f" ({before} failures not logged in the previous burst)" if before else "", BURST_SECONDS)
        record.exc_info = None
        record.exc_text = None
        return True
