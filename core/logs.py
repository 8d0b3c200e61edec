"""Structured logs (OPS-3): every line carries the request or the task it was written for.

A request gets an id from `RequestIdMiddleware` (the incoming `X-Request-ID` when a proxy in front
set a sane one, answered back, else a new one); a django-q2 task gets its
task id and function name from django-q2's `pre_execute` signal (`task_started`). Both live in
context variables, so a log line written anywhere below (the engine, the gateway, a listener)
carries them through `ContextFilter`, and an account where a page or a task named one.

`LOGGING` in the settings picks the format: JSON lines (python-json-logger) with LOG_FORMAT=json,
the production default; a plain line in development. Nothing here logs a request's body, its
headers or a card: what is logged is what the code passes to the logger.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
task_id: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="")
task_name: contextvars.ContextVar[str] = contextvars.ContextVar("task_name", default="")
account_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("account_id", default=None)

# An incoming id is kept only when it looks like one (no spaces, quotes or line breaks to forge
# log lines with, at most 128 characters); anything else is replaced by a new id.
SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
HEADER = "X-Request-ID"

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s%(task_id)s] %(message)s"
JSON_FIELDS = ["asctime", "levelname", "name", "message", "request_id", "task_id", "task_name", "account_id"]


class ContextFilter(logging.Filter):
    """Adds request_id, task_id, task_name and account_id to every record (empty when none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.task_id = task_id.get()
        record.task_name = task_name.get()
        record.account_id = account_id.get()
        return True


def logging_config(fmt: str, level: str) -> dict:
    """The LOGGING setting: `fmt` "json" (one JSON object per line) or "plain"."""
    from pythonjsonlogger.core import RESERVED_ATTRS

    # Django's request logger passes the request object too: its repr carries the query string,
    # which may hold a signed link; the message names the path, which is enough.
    formatter = ({"()": "pythonjsonlogger.json.JsonFormatter", "fmt": JSON_FIELDS,
                  "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                  "reserved_attrs": [*RESERVED_ATTRS, "request"]}
                 if fmt == "json" else {"format": PLAIN_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "core.logs.ContextFilter"},
                    "database_outage": {"()": "core.outage.DatabaseOutageFilter"}},
        "formatters": {"default": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "default", "filters": ["context"]}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"},
                    # one line per database outage burst, not a traceback per request (core/outage.py)
                    "django.request": {"filters": ["database_outage"]}},
    }


def account_seen(pk: int | None) -> None:
    """The account the current request or task acts for, for its later log lines."""
    account_id.set(pk)


def request_id_echoed(incoming: str) -> str | None:
    """The incoming X-Request-ID when it is sane: answered back, so that the proxy's log line and
    ours carry one id (also on the API's fast path, api/fastpath.py)."""
    return incoming if SANE_ID.match(incoming) else None


class RequestIdMiddleware:
    """First in the chain: the request's id for its log lines, the incoming one or a new one; an
    incoming one is answered back in `X-Request-ID` (a new one is in the log lines only, so an
    answer without the header is the same for every request and may be cached as such)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        echoed = request_id_echoed(request.headers.get(HEADER, ""))
        rid = echoed or uuid.uuid4().hex
        request.request_id = rid
        tokens = (request_id.set(rid), account_id.set(None))
        try:
            response = self.get_response(request)
        finally:
            request_id.reset(tokens[0])
            account_id.reset(tokens[1])
        if echoed:
            response[HEADER] = echoed
        return response


# What a task run inline (django-q2's sync) found, put back when it ends; per thread and context.
_outer: contextvars.ContextVar[tuple] = contextvars.ContextVar("outer", default=())


def task_started(sender, func=None, task=None, **kwargs) -> None:
    """django-q2's pre_execute: the task's id and function for the log lines it writes."""
    task = task or {}
    _outer.set((*_outer.get(), (task_id.get(), task_name.get(), account_id.get())))
    task_id.set(str(task.get("id", "")))
    task_name.set(str(task.get("func", "") if isinstance(task.get("func"), str) else getattr(func, "__name__", "")))
    account_id.set(None)


def task_finished(sender, func=None, task=None, **kwargs) -> None:
    """django-q2's post_execute_in_worker: the next lines belong to what ran before the task (in a
    worker: nothing; inline: the request that ran it)."""
    stack = _outer.get()
    outer_task, outer_name, outer_account = stack[-1] if stack else ("", "", None)
    _outer.set(stack[:-1])
    task_id.set(outer_task)
    task_name.set(outer_name)
    account_id.set(outer_account)


def task_logging_connect() -> None:
    from django_q.signals import post_execute_in_worker, pre_execute

    pre_execute.connect(task_started, dispatch_uid="core.logs.task_started")
    post_execute_in_worker.connect(task_finished, dispatch_uid="core.logs.task_finished")
