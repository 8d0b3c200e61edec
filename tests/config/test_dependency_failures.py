"""Redis down or hung, piece by piece (issue 16; the whole path is in tests/web/test_redis_down.py):
the settings give every Redis call a timeout, a process that saw the shared cache or the broker
fail leaves it alone for a few seconds instead of waiting on it in every request, and work the
broker could not take is done another way."""

import socket
import time

import pytest
from django_q.conf import Conf

from config.settings.base import redis_with_timeouts
from core import broker
from core.cache import PAUSE_SECONDS, LayeredCache


def test_redis_urls_get_timeouts_unless_they_set_their_own():
    """redis-py waits for ever by default: a hung Redis would hold every request."""
    assert redis_with_timeouts("redis://127.0.0.1:6379/0", 0.5, 1.0) == (
        "redis://127.0.0.1:6379/0?socket_connect_timeout=0.5&socket_timeout=1.0")
    assert redis_with_timeouts("rediss://:pw@cache:6380/2?socket_timeout=3", 0.5, 1.0) == (
        "rediss://:pw@cache:6380/2?socket_timeout=3&socket_connect_timeout=0.5")


def test_a_hung_redis_costs_one_timeout_then_the_cache_is_left_alone(settings):
    """Reliability: a Redis that accepts connections and never answers costs the first read its
    timeout; the next reads within PAUSE_SECONDS are misses at once (answered from the database)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = redis_with_timeouts(f"redis://127.0.0.1:{listener.getsockname()[1]}/0", 0.2, 0.3)
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
        layered = LayeredCache("t:", local_seconds=0, local_max=10)
        started = time.monotonic()
        assert layered.get("a") is None
        first = time.monotonic() - started
        started = time.monotonic()
        for key in "bcdefghijk":
            assert layered.get(key) is None
            layered.set(key, 1, 60)
            layered.forget(key)
        rest = time.monotonic() - started
    assert first >= 0.3 and rest < 0.1, (first, rest)


def test_the_shared_cache_is_asked_again_after_the_pause(monkeypatch):
    """Reliability: the pause ends: Redis back, the cache is used again."""
    from core import cache as layered_module

    class Redis:
        up = False
        calls = 0

        def get(self, key):
            self.calls += 1
            if not self.up:
                raise ConnectionError("Redis is down")
            return "back"

    redis = Redis()
    monkeypatch.setattr(layered_module, "cache", redis)
    clock = [time.monotonic()]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    layered = LayeredCache("t:", local_seconds=1, local_max=10)
    assert layered.get("a") is None and layered.get("a") is None
    assert redis.calls == 1
    redis.up = True
    clock[0] += PAUSE_SECONDS - 0.1
    assert layered.get("a") is None and redis.calls == 1
    clock[0] += 0.2
    assert layered.get("a") == "back" and redis.calls == 2


@pytest.fixture
def broker_down(monkeypatch):
    """django-q2 on a Redis broker at a port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", redis_with_timeouts(f"redis://127.0.0.1:{port}/0", 0.2, 0.3))


def test_a_broker_that_cannot_be_reached_is_a_false_not_an_error_and_is_left_alone(broker_down, monkeypatch):
    """Reliability: queueing never fails a committed action; after one failure the broker is not
    asked again for PAUSE_SECONDS."""
    from django_q import tasks

    assert broker.task_enqueue("core.events.deliver", [1], group="events") is False
    asked = []
    monkeypatch.setattr(tasks, "async_task", lambda *a, **k: asked.append(a))
    assert broker.task_enqueue("core.events.deliver", [1], group="events") is False
    assert asked == []


def test_a_task_that_fails_inline_is_still_the_callers_error(monkeypatch):
    """Tests and sync mode run tasks inline: their own failure is not mistaken for a broker down."""
    from django_q import tasks

    def fails(*args, **kwargs):
        raise ValueError("the task's own bug")

    monkeypatch.setattr(tasks, "async_task", fails)
    with pytest.raises(ValueError):
        broker.task_enqueue("core.events.deliver", [1], group="events")


class DueIds:
    """What a selector answers, reduced to the ids the run reads."""

    def __init__(self, ids):
        self.ids = ids

    def order_by(self, *fields):
        return self

    def values_list(self, *fields, flat=False):
        return self.ids


def test_a_billing_run_whose_broker_is_down_runs_the_chunks_itself(broker_down, settings, monkeypatch, db):
    """Reliability: a billing run that fans out to a cluster whose broker went down since it looked
    runs every chunk in its own process instead of reporting chunks lost on workers."""
    from datetime import UTC, datetime

    from subscriptions import overage, scheduler

    ran = []
    monkeypatch.setattr(scheduler, "anything_due", lambda now: True)
    monkeypatch.setattr(scheduler, "SELECTORS", (("renewals", lambda now: DueIds([1, 2, 3, 4, 5])),))
    monkeypatch.setattr(scheduler, "run_chunk",
                        lambda step, ids, now: ran.append(list(ids)) or scheduler.RunReport(now))
    monkeypatch.setattr(overage, "overage_run", lambda now, report: None)
    settings.BILLING_RUN_CHUNK_SIZE = 2
    report = scheduler.run(datetime(2026, 6, 1, tzinfo=UTC), fan_out=True)
    assert ran == [[1, 2], [3, 4], [5]] and report.failures == []
