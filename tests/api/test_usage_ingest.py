"""USE-1, USE-4, USE-5, USE-6 through the service and the HTTP endpoint."""

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from accounts.models import AuditEvent, UsageDay, UsageEvent, UsageMonth
from core import events as domain_events
from tests.factories import subscription_replace
from usage.events import MAX_EVENT_AGE, BatchTooLarge, Reason
from usage.ingest import usage_ingest

from .conftest import NOW, event, events, on_plan

URL = "/api/v1/usage/events"
NOV = date(2026, 11, 1)


def month_row(prop, month=NOV):
    return UsageMonth.objects.get(account=prop.account, month=month)


def post(client, auth, batch, **extra):
    return client.post(URL, {"events": batch}, content_type="application/json", headers=auth, **extra)


# --- USE-1: idempotent ingest ------------------------------------------------------------------


def test_use1_replayed_batch_counts_once(client, auth, personal_prop):
    batch = events(personal_prop, 5)
    with time_machine.travel(NOW, tick=False):
        first = post(client, auth, batch)
        second = post(client, auth, batch)
    assert first.status_code == 200 and second.status_code == 200
    assert first.json() | {"rejections": []} == {
        "accepted": 5, "counted": 5, "over_quota": 0, "duplicate": 0, "rejected": 0, "rejections": []
    }
    assert second.json()["accepted"] == 0 and second.json()["duplicate"] == 5
    assert month_row(personal_prop).sessions == 5
    assert UsageDay.objects.get(property=personal_prop, day=date(2026, 11, 20)).sessions == 5
    assert UsageEvent.objects.count() == 5


def test_use1_id_repeated_inside_one_batch_counts_once(personal_prop):
    one = event(personal_prop, event_id="same")
    result = usage_ingest([one, dict(one), event(personal_prop)], now=NOW)
    assert (result.accepted, result.duplicate) == (2, 1)
    assert month_row(personal_prop).sessions == 2


def test_use1_partial_rejection_keeps_the_good_events(client, auth, personal_prop):
    good = events(personal_prop, 3)
    bad = [
        "not an object",
        event(personal_prop, id=""),
        {"id": "no-tag", "type": "session", "timestamp": "2026-11-20T10:00:00Z"},
        event("PR-doesnotexist"),
        event(personal_prop, type="pageview"),
        event(personal_prop, timestamp="yesterday"),
        event(personal_prop, timestamp="2026-11-20T10:00:00"),  # no offset: ambiguous
        event(personal_prop, timestamp=12345),
        event(personal_prop, at=NOW - MAX_EVENT_AGE - timedelta(seconds=1)),
        event(personal_prop, at=NOW + timedelta(hours=1)),
    ]
    with time_machine.travel(NOW, tick=False):
        response = post(client, auth, [good[0], *bad, *good[1:]])
    body = response.json()
    assert response.status_code == 200
    assert (body["accepted"], body["rejected"], body["duplicate"]) == (3, 10, 0)
    assert [(r["index"], r["reason"]) for r in body["rejections"]] == [
        (1, Reason.INVALID_EVENT), (2, Reason.INVALID_ID), (3, Reason.INVALID_TRACKING_TAG),
        (4, Reason.UNKNOWN_TRACKING_TAG), (5, Reason.INVALID_TYPE), (6, Reason.INVALID_TIMESTAMP),
        (7, Reason.INVALID_TIMESTAMP), (8, Reason.INVALID_TIMESTAMP), (9, Reason.TOO_OLD), (10, Reason.IN_FUTURE),
    ]
    assert body["rejections"][3]["id"] == bad[3]["id"]
    assert all(r["detail"] for r in body["rejections"])
    assert month_row(personal_prop).sessions == 3


def test_use1_event_ids_are_pruned_only_once_a_replay_would_be_refused_for_its_age(personal_prop):
    from usage.ingest import usage_events_prune
    from usage.tasks import scheduled_usage_events_prune

    old, recent = event(personal_prop, NOW - timedelta(days=30)), event(personal_prop, NOW - timedelta(days=2))
    assert usage_ingest([old, recent], now=NOW).accepted == 2
    later = NOW + timedelta(days=5)  # `old` is 35 days old: a replay is still refused as a duplicate
    assert usage_events_prune(now=later) == 0
    assert usage_ingest([old], now=later).duplicate == 1
    much_later = NOW + timedelta(days=6, minutes=1)  # 36 days and a minute: a replay is refused for its age
    assert usage_events_prune(now=much_later, batch=1) == 1
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == [recent["id"]]
    replay = usage_ingest([old], now=much_later)
    assert (replay.accepted, replay.duplicate, replay.rejected) == (0, 0, 1)  # never counted twice
    assert month_row(personal_prop, date(2026, 10, 1)).sessions == 1
    assert scheduled_usage_events_prune() == "0 usage event IDs past the replay window deleted"


def test_use1_age_window_edges(personal_prop):
    oldest = event(personal_prop, at=NOW - MAX_EVENT_AGE)
    skewed = event(personal_prop, at=NOW + timedelta(minutes=4))  # clock skew tolerated
    result = usage_ingest([oldest, skewed], now=NOW)
    assert (result.accepted, result.rejected) == (2, 0)


def test_use1_rejected_event_can_be_sent_again_once_fixed(personal_prop):
    broken = event(personal_prop, event_id="fix-me", type="pageview")
    assert usage_ingest([broken], now=NOW).rejected == 1
    fixed = usage_ingest([event(personal_prop, event_id="fix-me")], now=NOW)
    assert fixed.accepted == 1  # a rejection stores nothing, so nothing is lost


def test_use1_batch_over_1000_is_refused_whole(client, auth, personal_prop):
    with pytest.raises(BatchTooLarge):
        usage_ingest(events(personal_prop, 1001), now=NOW)
    with time_machine.travel(NOW, tick=False):
        response = post(client, auth, events(personal_prop, 1001))
    assert response.status_code == 413
    assert "1,000" in response.json()["detail"]
    assert UsageEvent.objects.count() == 0


def test_use1_exactly_1000_events_are_accepted(client, auth, catalog):
    prop = on_plan(catalog["advanced"])
    with time_machine.travel(NOW, tick=False):
        response = post(client, auth, events(prop, 1000))
    assert response.status_code == 200 and response.json()["counted"] == 1000


def test_use1_oversized_body_gets_413(client, auth, personal_prop):
    huge = [event(personal_prop, padding="x" * 3000) for _ in range(800)]
    response = post(client, auth, huge)
    assert response.status_code == 413
    assert UsageEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [("{not json", 400), ('{"events": {}}', 422), ("[]", 422), ('{"evts": []}', 422)],
)
def test_use1_malformed_body_is_refused_with_a_reason(client, auth, body, status):
    response = client.post(URL, body, content_type="application/json", headers=auth)
    assert response.status_code == status
    assert "events" in response.json()["detail"]


def test_use1_events_for_a_stopped_property_are_rejected_but_replays_stay_duplicates(personal_prop):
    accepted = event(personal_prop)
    assert usage_ingest([accepted], now=NOW).accepted == 1
    personal_prop.status = "paused"
    personal_prop.save()
    result = usage_ingest([accepted, event(personal_prop)], now=NOW)
    assert (result.duplicate, result.rejected) == (1, 1)
    assert result.rejections[0].reason == Reason.PROPERTY_PAUSED
    assert month_row(personal_prop).sessions == 1


def test_sus1_events_of_a_suspended_account_are_not_counted(personal_prop):
    account = personal_prop.account
    account.status, account.suspension_reason = "suspended", "non_payment"
    account.save()
    result = usage_ingest(events(personal_prop, 2), now=NOW)
    assert result.rejected == 2 and {r.reason for r in result.rejections} == {Reason.ACCOUNT_SUSPENDED}
    assert not UsageMonth.objects.filter(account=account).exists()


# --- month boundaries (UTC) ------------------------------------------------------------------------


def test_use1_month_is_the_utc_calendar_month(personal_prop):
    now = datetime(2026, 12, 2, 12, tzinfo=UTC)
    batch = [
        event(personal_prop, timestamp="2026-11-30T23:59:59Z"),
        event(personal_prop, timestamp="2026-12-01T00:30:00+01:00"),  # 2026-11-30T23:30Z: November
        event(personal_prop, timestamp="2026-12-01T00:00:00Z"),
        event(personal_prop, timestamp="2026-11-30T20:00:00-05:00"),  # 2026-12-01T01:00Z: December
    ]
    usage_ingest(batch, now=now)
    assert month_row(personal_prop, date(2026, 11, 1)).sessions == 2
    assert month_row(personal_prop, date(2026, 12, 1)).sessions == 2
    days = dict(UsageDay.objects.filter(property=personal_prop).values_list("day", "sessions"))
    assert days == {date(2026, 11, 30): 2, date(2026, 12, 1): 2}


def test_use4_late_event_counts_against_its_own_month_quota(free_prop):
    """A hard cap reached in November does not stop December, and vice versa."""
    nov30 = datetime(2026, 11, 30, tzinfo=UTC)
    assert usage_ingest(events(free_prop, 1000, at=nov30), now=nov30).counted == 1000
    dec = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
    result = usage_ingest([event(free_prop, at=dec), event(free_prop, at=datetime(2026, 11, 29, tzinfo=UTC))],
                          now=dec + timedelta(hours=1))
    assert (result.counted, result.over_quota) == (1, 1)
    assert month_row(free_prop, date(2026, 12, 1)).sessions == 1


# --- USE-4: hard cap ----------------------------------------------------------------------------


def test_use4_hard_cap_exactly_at_the_quota_counts_everything(free_prop):
    result = usage_ingest(events(free_prop, 1000), now=NOW)
    assert (result.counted, result.over_quota) == (1000, 0)
    assert month_row(free_prop).sessions == 1000


def test_use4_hard_cap_one_over_is_stored_but_not_counted(free_prop):
    usage_ingest(events(free_prop, 999), now=NOW)
    result = usage_ingest(events(free_prop, 2), now=NOW)
    assert (result.accepted, result.counted, result.over_quota) == (2, 1, 1)
    assert month_row(free_prop).sessions == 1000
    assert sum(UsageDay.objects.filter(property=free_prop).values_list("sessions", flat=True)) == 1000
    assert UsageEvent.objects.count() == 1001  # the uncounted one is still a known id (USE-1)


def test_use4_hard_cap_counts_the_earliest_sessions_first(free_prop):
    usage_ingest(events(free_prop, 999), now=NOW)
    late = event(free_prop, at=NOW - timedelta(hours=1))
    early = event(free_prop, at=NOW - timedelta(days=1))
    usage_ingest([late, early], now=NOW)
    days = dict(UsageDay.objects.filter(property=free_prop).values_list("day", "sessions"))
    assert days == {date(2026, 11, 19): 1, date(2026, 11, 20): 999}


def test_use4_plans_with_overage_keep_counting_past_the_quota(personal_prop):
    usage_ingest(events(personal_prop, 1000), now=NOW)
    UsageMonth.objects.filter(account=personal_prop.account).update(sessions=10_000)
    result = usage_ingest(events(personal_prop, 5), now=NOW)
    assert (result.counted, result.over_quota) == (5, 0)
    assert month_row(personal_prop).sessions == 10_005


def test_use3_month_quota_is_the_highest_plan_of_the_month(catalog, free_prop):
    usage_ingest(events(free_prop, 10), now=NOW)
    assert month_row(free_prop).sessions_included == 1000
    from subscriptions.models import Status

    subscription_replace(free_prop.account, catalog["personal"], status=Status.ACTIVE)
    usage_ingest(events(free_prop, 1), now=NOW)
    assert month_row(free_prop).sessions_included == 10_000
    subscription_replace(free_prop.account, catalog["free"], status=Status.ACTIVE)
    usage_ingest(events(free_prop, 1), now=NOW)
    assert month_row(free_prop).sessions_included == 10_000  # a downgrade does not lower this month's quota


@pytest.mark.django_db(transaction=True)
def test_use3_a_plan_started_raises_the_months_quota_from_the_event_after_the_commit(catalog, free_prop):
    """The listener runs after the billing action's commit, outside any transaction: it must open
    its own (it locks the month's row)."""
    from subscriptions import billing

    usage_ingest(events(free_prop, 10), now=NOW)
    assert month_row(free_prop).sessions_included == 1000
    billing.set_payment_method(free_prop.account, "pm_card_visa", now=NOW)
    billing.subscribe(free_prop.account, "personal", now=NOW)  # commits; subscription.started follows
    assert month_row(free_prop).sessions_included == 10_000


# --- USE-5: first event --------------------------------------------------------------------------


def test_use5_first_event_is_recorded_for_the_property_and_the_account(personal_prop):
    first = NOW - timedelta(days=2)
    usage_ingest([event(personal_prop, at=NOW - timedelta(days=1)), event(personal_prop, at=first)], now=NOW)
    personal_prop.refresh_from_db()
    personal_prop.account.refresh_from_db()
    assert personal_prop.first_event_at == first
    assert personal_prop.account.usage_started_at == first
    assert AuditEvent.objects.filter(action="account.usage_started", account=personal_prop.account).count() == 1

    usage_ingest([event(personal_prop, at=NOW)], now=NOW)  # later events change nothing
    personal_prop.refresh_from_db()
    assert personal_prop.first_event_at == first
    assert AuditEvent.objects.filter(action="account.usage_started").count() == 1


def test_use5_the_record_is_written_once_even_by_a_late_earlier_event(personal_prop):
    usage_ingest([event(personal_prop, at=NOW)], now=NOW)
    usage_ingest([event(personal_prop, at=NOW - timedelta(days=3))], now=NOW)
    personal_prop.refresh_from_db()
    personal_prop.account.refresh_from_db()
    assert personal_prop.first_event_at == NOW and personal_prop.account.usage_started_at == NOW
    assert AuditEvent.objects.filter(action="property.first_event", object_id=str(personal_prop.pk)).count() == 1


def test_use5_rejected_events_do_not_start_usage(personal_prop):
    usage_ingest([event(personal_prop, type="pageview")], now=NOW)
    personal_prop.account.refresh_from_db()
    assert personal_prop.account.usage_started_at is None


# --- USE-6: alerts --------------------------------------------------------------------------------


@pytest.fixture
def alerts():
    received = []
    domain_events.subscribe("usage.alert", received.append)
    yield received
    domain_events.unsubscribe("usage.alert", received.append)


def test_use6_alerts_at_80_and_100_percent_once_per_month(free_prop, alerts, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        usage_ingest(events(free_prop, 799), now=NOW)
    assert alerts == []
    with django_capture_on_commit_callbacks(execute=True):
        usage_ingest(events(free_prop, 1), now=NOW)
    assert [(e.data["threshold"], e.data["sessions"], e.data["month"]) for e in alerts] == [(80, 800, "2026-11")]
    assert month_row(free_prop).alert_80_at == NOW and month_row(free_prop).alert_100_at is None
    with django_capture_on_commit_callbacks(execute=True):
        usage_ingest(events(free_prop, 300), now=NOW)
        usage_ingest(events(free_prop, 5), now=NOW)
    assert [e.data["threshold"] for e in alerts] == [80, 100]
    assert alerts[1].data == {"threshold": 100, "month": "2026-11", "sessions": 1000, "sessions_included": 1000}
    assert alerts[1].account_id == free_prop.account_id


def test_use6_one_batch_crossing_both_thresholds_raises_both(personal_prop, alerts,
                                                               django_capture_on_commit_callbacks):
    UsageMonth.objects.create(account=personal_prop.account, month=NOV, sessions=7_500, sessions_included=10_000)
    with django_capture_on_commit_callbacks(execute=True):
        usage_ingest(events(personal_prop, 1000), now=NOW)
        usage_ingest(events(personal_prop, 1000), now=NOW)
        usage_ingest(events(personal_prop, 1000), now=NOW)
    assert [e.data["threshold"] for e in alerts] == [80, 100]


def test_use6_alerts_start_again_next_month(free_prop, alerts, django_capture_on_commit_callbacks):
    dec = datetime(2026, 12, 3, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        usage_ingest(events(free_prop, 800), now=NOW)
        usage_ingest(events(free_prop, 800, at=dec), now=dec)
    assert [(e.data["threshold"], e.data["month"]) for e in alerts] == [(80, "2026-11"), (80, "2026-12")]


def test_use6_rolled_back_ingest_announces_nothing(free_prop, alerts, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        with transaction.atomic():
            usage_ingest(events(free_prop, 900), now=NOW)
            raise RuntimeError("crash after counting")
    assert alerts == []
    assert not UsageMonth.objects.filter(account=free_prop.account).exists()


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000,
                                  b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}",
                                  b'{"events": [{"id": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}]}"])
def test_use1_deeply_nested_json_is_a_400_and_records_nothing(client, auth, personal_prop, body):
    """Issue 16: the parser's RecursionError was a 500."""
    response = client.post("/api/v1/usage/events", data=body, content_type="application/json", headers=auth)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("The body is nested too deeply")
    assert response.json()["detail"].endswith("Nothing was recorded.")
    assert UsageEvent.objects.count() == 0
