"""USE-1 and USE-4 under concurrent batches, with real connections on PostgreSQL."""

import threading

import pytest
from django.db import connection

from accounts.models import UsageDay, UsageEvent, UsageMonth
from usage.ingest import usage_ingest

from .conftest import NOW, event, on_plan

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]


def run_together(batches):
    """Ingest each batch in its own thread and connection, all released at the same moment."""
    barrier = threading.Barrier(len(batches))
    results, errors = [None] * len(batches), []

    def worker(i, batch):
        try:
            barrier.wait()
            results[i] = usage_ingest(batch, now=NOW)
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, b)) for i, b in enumerate(batches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    return results


def test_use1_concurrent_batches_with_overlapping_ids_count_each_id_once(catalog):
    prop = on_plan(catalog["advanced"])
    for round_ in range(5):
        shared = [event(prop, event_id=f"r{round_}-shared-{i}") for i in range(300)]
        batches = [
            shared + [event(prop, event_id=f"r{round_}-a-{i}") for i in range(100)],
            list(reversed(shared)) + [event(prop, event_id=f"r{round_}-b-{i}") for i in range(100)],
            shared[::2] + shared[1::2],
        ]
        results = run_together(batches)
        assert sum(r.accepted for r in results) == 500
        assert sum(r.duplicate for r in results) == 2 * 300
    assert UsageEvent.objects.count() == 2500
    assert UsageMonth.objects.get(account=prop.account).sessions == 2500
    assert sum(UsageDay.objects.filter(property=prop).values_list("sessions", flat=True)) == 2500


def test_use4_concurrent_batches_never_count_past_the_hard_cap(catalog):
    prop = on_plan(catalog["free"])
    assert usage_ingest([event(prop) for _ in range(990)], now=NOW).counted == 990
    results = run_together([[event(prop) for _ in range(20)] for _ in range(4)])
    assert sum(r.counted for r in results) == 10
    assert sum(r.over_quota for r in results) == 70
    row = UsageMonth.objects.get(account=prop.account)
    assert row.sessions == 1000 and row.alert_100_at is not None


def test_use1_concurrent_batches_across_several_accounts_do_not_deadlock(catalog):
    props = [on_plan(catalog["personal"]) for _ in range(6)]
    batches = [[event(p) for p in (props if i % 2 else props[::-1]) for _ in range(50)] for i in range(4)]
    results = run_together(batches)
    assert sum(r.counted for r in results) == 4 * 6 * 50
    assert sorted(UsageMonth.objects.values_list("sessions", flat=True)) == [200] * 6
