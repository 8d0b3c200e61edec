"""OPS-3: a django-q2 cluster stops cleanly on SIGTERM within Q_TIMEOUT, finishing the tasks its
workers hold and leaving the others in the broker (docs/operations.md, "Stopping workers")."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
Q_TIMEOUT = 20


def manage(env, *args, timeout=300) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow
def test_ops3_sigterm_stops_a_busy_cluster_within_its_timeout_and_loses_no_task(tmp_path):
    """OPS-3: SIGTERM during a task: the cluster exits within Q_TIMEOUT; each task saved or still queued."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", "Q_WORKERS": "2",
           "Q_TIMEOUT": str(Q_TIMEOUT), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "LOG_LEVEL": "INFO"}
    env.pop("REDIS_URL", None)
    manage(env, "migrate", "django_q", "--no-input")
    manage(env, "shell", "-c", "from django_q.tasks import async_task\nfor i in range(8): async_task('time.sleep', 2)")
    log = tmp_path / "qcluster.log"
    with log.open("w") as out:
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "processing" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "processing" in log.read_text(), log.read_text()
        asked = time.monotonic()
        cluster.send_signal(signal.SIGTERM)
        cluster.wait(Q_TIMEOUT)
        took = time.monotonic() - asked
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(10)
    text = log.read_text()
    assert "has stopped" in text, text
    counts = manage(env, "shell", "-c", "from django_q.models import OrmQ, Task\n"
                    "print(Task.objects.filter(success=True).count(), Task.objects.filter(success=False).count(), "
                    "OrmQ.objects.count())").split()
    done, failed, waiting = (int(n) for n in counts[-3:])
    assert failed == 0 and done >= 2 and done + waiting == 8, (done, failed, waiting, text)
    assert took < Q_TIMEOUT, took
