"""Exactly once under concurrency, with real connections and processes on PostgreSQL (REN-3, PAY-2)."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection, connections

from invoices.models import Invoice, Payment, SandboxCharge
from subscriptions import billing
from subscriptions.models import Subscription
from tests.bulk import DUE_AT, make_due_subscriptions

from .conftest import at

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def subprocess_env(**extra) -> dict:
    db = connection.settings_dict
    url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "config.settings.local",
           "BILLING_SETTLE_GRACE_SECONDS": "120", "LOG_LEVEL": "WARNING"}
    env.pop("REDIS_URL", None)
    env.update(extra)
    return env


def assert_each_renewed_once(ids):
    renewals = Invoice.objects.filter(kind="renewal")
    assert renewals.count() == len(ids)
    assert set(renewals.values_list("subscription_id", flat=True)) == set(ids)
    assert renewals.filter(status="paid").count() == len(ids)
    keys = Payment.objects.filter(invoice__kind="renewal").values("idempotency_key")
    assert Payment.objects.filter(invoice__kind="renewal").count() == len(ids)
    assert SandboxCharge.objects.filter(idempotency_key__in=keys).count() == len(ids)
    numbers = sorted(int(n.split("-")[1]) for n in renewals.values_list("number", flat=True))
    assert numbers == list(range(1, len(ids) + 1))  # INV-1: gapless under concurrency


def wait_for_outbox_drained(timeout: float) -> int:
    """Wait until the cluster has delivered the events outbox; returns the receipts logged."""
    from core.models import PendingEvent
    from notifications.models import EmailLog

    deadline = time.monotonic() + timeout
    while PendingEvent.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not PendingEvent.objects.exists(), f"{PendingEvent.objects.count()} events still in the outbox"
    return EmailLog.objects.filter(kind="payment.succeeded", related_type="invoice").count()


def stop_cluster(cluster: subprocess.Popen) -> None:
    """Stop the cluster and every process it started (its workers are in its session), then end
    any connection they left, so that the test database can be flushed for the next test."""
    cluster.terminate()
    try:
        cluster.wait(30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(cluster.pid, signal.SIGKILL)  # workers a slow graceful stop left behind
    cluster.wait(10)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def test_upg2_two_racing_change_plan_calls_make_one_change_and_one_charge(catalog):
    from tests.factories import AccountFactory

    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-01"))
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    barrier = threading.Barrier(2)
    outcomes = []

    def attempt():
        try:
            barrier.wait()
            quote = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
            outcomes.append(("ok", quote.amount_due))
        except billing.BillingError as exc:
            outcomes.append(("refused", str(exc)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(o[0] for o in outcomes) == ["ok", "refused"], outcomes
    assert [o[1] for o in outcomes if o[0] == "ok"] == [Decimal("7.50")]
    assert Invoice.objects.filter(kind="upgrade", status="paid").count() == 1
    assert SandboxCharge.objects.filter(amount=Decimal("7.50")).count() == 1
    assert Subscription.objects.get(pk=sub.pk).plan.code == "advanced"


@pytest.mark.slow
def test_ren3_two_billing_run_processes_at_once_renew_each_subscription_exactly_once(catalog):
    ids = make_due_subscriptions(1000)
    cmd = [sys.executable, "manage.py", "billing_run", "--now", DUE_AT.isoformat()]
    env = subprocess_env(BILLING_RUN_BATCH="25")  # small transactions, so that both processes get a share
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    counts = [int(line.split()[-1]) for out in outputs for line in out.splitlines()
              if line.strip().startswith("renewals")]
    assert sum(counts) == 1000 and all(counts), outputs  # both processes did part of the work
    assert_each_renewed_once(ids)


@pytest.mark.slow
def test_ren3_a_django_q2_cluster_on_redis_with_two_workers_renews_each_subscription_exactly_once(catalog, tmp_path):
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2).ping()
    except Exception:
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    ids = make_due_subscriptions(1000)
    name = f"prorata-test-{uuid.uuid4().hex[:8]}"
    env = subprocess_env(REDIS_URL="redis://127.0.0.1:6379/3", Q_WORKERS="2", Q_CLUSTER_NAME=name,
                         BILLING_RUN_CHUNK_SIZE="100")
    cluster_log = tmp_path / "qcluster.log"  # a file, not a pipe: a full pipe would block its logging
    with cluster_log.open("w") as out:
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(3)
        assert cluster.poll() is None, cluster_log.read_text()
        run = subprocess.run([sys.executable, "manage.py", "billing_run", "--now", DUE_AT.isoformat(), "--fan-out"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        receipts_logged = wait_for_outbox_drained(timeout=240)
    finally:
        stop_cluster(cluster)
    assert receipts_logged == 1000  # each renewal's receipt rendered exactly once by the two workers' drains
    assert_each_renewed_once(ids)
    from django_q.models import Task

    chunks = Task.objects.filter(func="subscriptions.scheduler.run_chunk", group__startswith="billing-renewals")
    assert chunks.count() == 10 and all(t.success for t in chunks)  # 1,000 in chunks of 100, run by the workers
