"""OPS-3: structured logs with a request id (honouring a sane incoming X-Request-ID) or a django-q2
task id, JSON lines with LOG_FORMAT=json (production's default) and plain lines in development."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from core import logs

ROOT = Path(__file__).resolve().parents[2]
LOG_SOME = """
import django; django.setup()
import logging
from django_q.signals import post_execute_in_worker, pre_execute
from core import logs
logs.request_id.set("req-42"); logs.account_seen(7)
logging.getLogger("prorata.test").warning("paid %s", "INV-1")
logs.request_id.set(""); logs.account_seen(None)
pre_execute.send(sender="django_q", func=None, task={"id": "t-9", "func": "subscriptions.tasks.scheduled_run"})
logging.getLogger("prorata.test").warning("in a task")
post_execute_in_worker.send(sender="django_q", func=None, task={"id": "t-9"})
logging.getLogger("prorata.test").warning("after the task")
from django.test import RequestFactory
logging.getLogger("django.request").warning("Not Found: %s", "/x", extra={"request": RequestFactory().get(
    "/x?token=secret"), "status_code": 404})
"""


def log_lines(settings_module: str, **env) -> list[str]:
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module, "SECRET_KEY": "x" * 60,
            "ALLOWED_HOSTS": "billing.example.com", **env}
    full.pop("LOG_FORMAT", None)
    full.update(env)
    done = subprocess.run([sys.executable, "-c", LOG_SOME], cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if "prorata.test" in line or "django.request" in line]


def test_ops3_production_logs_json_lines_with_the_request_and_the_task_id():
    """OPS-3: production writes JSON lines carrying the request id, the task id and name, and the account."""
    *lines, request_line = [json.loads(line) for line in log_lines("config.settings.production")]
    assert request_line["status_code"] == 404 and "secret" not in json.dumps(request_line)  # no query strings
    assert [(d["message"], d["request_id"], d["task_id"], d["account_id"]) for d in lines] == [
        ("paid INV-1", "req-42", "", 7), ("in a task", "", "t-9", None), ("after the task", "", "", None)]
    assert lines[1]["task_name"] == "subscriptions.tasks.scheduled_run"
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "prorata.test" and "time" in lines[0]


def test_ops3_development_logs_plain_lines_and_log_format_json_switches():
    """OPS-3: development writes plain lines with the ids; LOG_FORMAT=json switches to JSON."""
    plain = log_lines("config.settings.local")
    assert "[req-42]" in plain[0] and "paid INV-1" in plain[0] and "[t-9]" in plain[1]
    assert json.loads(log_lines("config.settings.local", LOG_FORMAT="json")[0])["request_id"] == "req-42"


def test_ops3_a_sane_incoming_request_id_is_answered_back_and_a_forged_one_is_not(client):
    """OPS-3: a proxy's X-Request-ID is answered back; one that could forge log lines is not used."""
    assert client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.1")["X-Request-ID"] == "lb-7f3a.1"
    assert not client.get("/healthz", HTTP_X_REQUEST_ID='x" level=ERROR\nfake line').has_header("X-Request-ID")


def test_ops3_a_request_without_an_id_gets_a_new_one_in_its_log_lines(db, client, caplog, monkeypatch):
    """OPS-3: a request without a (sane) id gets a new one for its log lines, another per request."""
    def refuse(*args, **kwargs):
        raise OperationalError("down")

    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.WARNING, logger="core.health"), monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        client.get("/readyz")
        client.get("/readyz", HTTP_X_REQUEST_ID="bad id")
    ids = [r.request_id for r in caplog.records if r.name == "core.health"]
    assert len(ids) == 2 and ids[0] != ids[1] and all(len(i) == 32 and i.isalnum() for i in ids)


def test_ops3_log_lines_written_during_a_request_carry_its_id(db, client, caplog, monkeypatch):
    """OPS-3: a line logged deep in a request carries its id, which is reset after the request."""
    def refuse(*args, **kwargs):
        raise OperationalError("down")

    caplog.handler.addFilter(logs.ContextFilter())
    with caplog.at_level(logging.WARNING, logger="core.health"), monkeypatch.context() as patch:
        patch.setattr(connection, "cursor", refuse)
        client.get("/readyz", HTTP_X_REQUEST_ID="probe-1")
    record = next(r for r in caplog.records if r.name == "core.health")
    assert record.request_id == "probe-1"
    assert logs.request_id.get() == ""  # reset after the request


@pytest.mark.parametrize("module", ["config.settings.local", "config.settings.production"])
def test_ops3_the_cluster_keeps_at_most_one_waiting_task_per_worker(module):
    """OPS-3: a SIGTERM lets each worker finish its task and then the tasks the cluster already took
    from the broker; django-q2's default takes workers² of them, so a stop waited for up to 4
    more tasks with 2 workers. Q_QUEUE_LIMIT (default: the number of workers) bounds that."""
    code = "import django; django.setup(); from django.conf import settings as s; " \
           "print(s.Q_CLUSTER['queue_limit'], s.Q_CLUSTER['workers'])"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": module, "SECRET_KEY": "x" * 60, "Q_WORKERS": "3"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3", "3"]


def test_ops3_a_task_run_inline_gives_the_request_its_ids_back():
    """OPS-3: with tasks run inline (django-q2's sync), the lines after the task belong to the
    request again, its account included."""
    from django_q.signals import post_execute_in_worker, pre_execute

    request_token, account_token = logs.request_id.set("req-1"), logs.account_id.set(3)
    try:
        pre_execute.send(sender="django_q", func=None, task={"id": "t-1", "func": "core.events.deliver"})
        assert (logs.task_id.get(), logs.account_id.get()) == ("t-1", None)
        post_execute_in_worker.send(sender="django_q", func=None, task={"id": "t-1"})
        assert (logs.request_id.get(), logs.task_id.get(), logs.account_id.get()) == ("req-1", "", 3)
    finally:
        logs.request_id.reset(request_token)
        logs.account_id.reset(account_token)
