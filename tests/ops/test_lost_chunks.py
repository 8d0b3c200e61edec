"""Issue 28, item 2: a fanned-out billing run whose queued chunks are lost (Redis restarted without
saving) used to wait the whole BILLING_RUN_WAIT_MS and renew nothing."""

import time

import pytest

from invoices.models import Invoice
from subscriptions import scheduler
from tests.bulk import DUE_AT, make_due_subscriptions

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_chunks(settings):
    settings.BILLING_RUN_CHUNK_SIZE = 2
    settings.BILLING_RUN_CHUNK_START_MS = 300
    settings.BILLING_RUN_WAIT_MS = 6_000
    from django.core.cache import cache

    cache.clear()


def test_ren3_lost_chunks_are_run_by_the_run_after_the_start_grace_not_after_the_whole_wait(small_chunks, monkeypatch):
    """Issue 28 item 2: every chunk is 'queued' to a broker that loses it; the run takes each back
    after BILLING_RUN_CHUNK_START_MS and renews every subscription itself, well before the wait ends."""
    ids = make_due_subscriptions(5)
    lost = []
    monkeypatch.setattr(scheduler, "task_enqueue", lambda func, *args, group: lost.append(args) or True)
    started = time.monotonic()
    report = scheduler.run(DUE_AT, fan_out=True)
    elapsed = time.monotonic() - started
    assert len(lost) == 3  # 5 due in chunks of 2: all handed to the (losing) broker
    assert report.counts["renewals"] == 5 and report.failures == []
    assert Invoice.objects.filter(kind="renewal", subscription_id__in=ids).count() == 5
    assert elapsed < 4, elapsed  # the start grace (0.3 s), not the whole wait (6 s)


def test_ren3_a_chunk_a_worker_started_is_not_taken_back_and_each_is_renewed_once(small_chunks, monkeypatch):
    """Issue 28 item 2: the first chunk reaches a worker (tasks run inline here, the worker's claim
    first); the two lost ones are taken back. Each subscription is renewed exactly once and the
    worker's report is merged."""
    ids = make_due_subscriptions(5)
    real_enqueue = scheduler.task_enqueue
    handed = []

    def first_only(func, *args, group):
        handed.append(args)
        return real_enqueue(func, *args, group=group) if len(handed) == 1 else True

    monkeypatch.setattr(scheduler, "task_enqueue", first_only)
    report = scheduler.run(DUE_AT, fan_out=True)
    assert report.counts["renewals"] == 5 and report.failures == []
    renewals = Invoice.objects.filter(kind="renewal", subscription_id__in=ids)
    assert renewals.count() == 5 and renewals.values("subscription_id").distinct().count() == 5


def test_ren3_a_chunk_taken_back_is_skipped_by_the_worker_that_gets_it_late(small_chunks):
    """Issue 28 item 2: when the lost task turns up on a worker after all, the worker's claim fails
    and it renews nothing (no double work, though the row claims would make it harmless)."""
    ids = make_due_subscriptions(2)
    assert scheduler.chunk_claim("late-token", "run")
    report = scheduler.run_chunk("renewals", ids, DUE_AT.isoformat(), "late-token")
    assert report.skipped == scheduler.CHUNK_TAKEN_BACK and report.counts["renewals"] == 0
    assert not Invoice.objects.filter(kind="renewal").exists()
