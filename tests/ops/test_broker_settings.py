"""Issue 28, item 1: with REDIS_URL set, django-q2's pusher crashed every ~12 s because the broker's
socket timeout (REDIS_TIMEOUT, 1 s) was not longer than its blocking pop's wait (1 s)."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS = "redis://127.0.0.1:6379/5"


def settings_with(**env) -> dict:
    """The settings a process started with `env` reads (a fresh interpreter: base.py reads the
    environment once, at import)."""
    code = ("import json; from django.conf import settings as s; "
            "print(json.dumps({'broker': s.Q_CLUSTER.get('redis', ''), "
            "'cache': s.CACHES['default'].get('LOCATION', ''), 'wait': s.Q_BROKER_WAIT_SECONDS}))")
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", **env}
    done = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def socket_timeout(url: str) -> float:
    return float(dict(parse_qsl(urlsplit(url).query))["socket_timeout"])


def test_ops3_the_broker_socket_outwaits_the_blocking_pop_and_the_cache_keeps_its_short_timeout():
    """Issue 28 item 1: the broker's socket timeout exceeds django-q2's blocking pop (1 s) by
    REDIS_TIMEOUT, whatever REDIS_TIMEOUT is; the cache still fails within REDIS_TIMEOUT."""
    for timeout in ("1", "0.5", "3"):
        found = settings_with(REDIS_URL="redis://127.0.0.1:6379/0", REDIS_TIMEOUT=timeout)
        assert socket_timeout(found["broker"]) == found["wait"] + float(timeout)
        assert socket_timeout(found["broker"]) > found["wait"]
        assert socket_timeout(found["cache"]) == float(timeout)


def redis_up():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except Exception:
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def test_ops3_an_idle_queue_is_polled_without_a_socket_timeout():
    """Issue 28 item 1: django-q2's own dequeue (BLPOP 1 s) on an empty queue, through the broker
    URL the settings build with the default REDIS_TIMEOUT, returns nothing instead of raising
    redis' TimeoutError (which made the pusher exit)."""
    redis_up()
    import redis
    from django_q.brokers.redis_broker import Redis as RedisBroker

    url = settings_with(REDIS_URL=REDIS)["broker"]
    broker = RedisBroker(list_key=f"idle-{uuid.uuid4().hex[:8]}")
    broker.connection = redis.from_url(url)
    for _ in range(3):
        assert broker.dequeue() is None


@pytest.mark.slow
def test_ops3_the_pusher_stays_up_on_an_idle_redis_queue(tmp_path):
    """Issue 28 item 1: a qcluster on Redis with an idle queue runs 20 s without a single "Failed
    to pull task from broker" (before the fix: one every ~12 s, then a pusher restart)."""
    redis_up()
    import time

    name = f"prorata-idle-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "REDIS_URL": REDIS,
           "Q_CLUSTER_NAME": name, "Q_WORKERS": "1", "LOG_LEVEL": "INFO",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "django_q", "--no-input"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
    assert migrate.returncode == 0, migrate.stderr
    log = tmp_path / "qcluster.log"
    with log.open("w") as out:
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(20)
        assert cluster.poll() is None, log.read_text()
    finally:
        cluster.terminate()
        try:
            cluster.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, 9)
            cluster.wait(10)
    text = log.read_text()
    assert "Failed to pull task from broker" not in text, text
    assert "running." in text, text  # the cluster did start
