"""SUS-1 and USE-4 from the tracking product's side: GET /api/v1/entitlements/{tracking_tag}."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from accounts.models import Account, Property, UsageMonth
from accounts.months import month_start
from accounts.services import pause_excess, property_delete
from core import events
from subscriptions.models import Status, Subscription
from tests.factories import subscription_replace
from usage.entitlements import entitlement_cache_clear_local, entitlement_cached, entitlement_get
from usage.ingest import usage_ingest

from .conftest import NOW, clear_caches, on_plan
from .conftest import events as make_events


def get(client, auth, tag):
    return client.get(f"/api/v1/entitlements/{tag}", headers=auth)


def test_sus1_active_property_answer_has_the_documented_shape(client, auth, personal_prop):
    with time_machine.travel(NOW, tick=False):
        usage_ingest(make_events(personal_prop, 3))
        response = get(client, auth, personal_prop.tracking_tag)
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, max-age=10"
    assert response.json() == {
        "tracking_tag": personal_prop.tracking_tag, "active": True, "plan": "personal",
        "limits": {"properties": 3, "sessions": 10_000, "integrations": None},
        "month": "2026-11", "sessions_used": 3, "sessions_included": 10_000, "hard_capped": False,
        "reason": None, "detail": "The property may track.",
    }


def test_sus1_unknown_tag_is_404_and_a_malformed_tag_422(client, auth, db):
    assert get(client, auth, "PR-nosuchtag").status_code == 404
    response = get(client, auth, "bad%20tag")
    assert response.status_code == 422 and "tracking_tag" in response.json()["detail"]


@pytest.mark.parametrize(
    ("reason_code", "detail"),
    [("non_payment", "non-payment"), ("policy_violation", "policy violation"), ("cancelled_trial", "cancelled trial")],
)
def test_sus1_suspended_account_must_stop_tracking(client, auth, personal_prop, reason_code, detail):
    Account.objects.filter(pk=personal_prop.account_id).update(
        status="suspended", suspension_reason=reason_code, suspended_at=timezone.now()
    )
    body = get(client, auth, personal_prop.tracking_tag).json()
    assert (body["active"], body["reason"]) == (False, "account_suspended")
    assert detail in body["detail"]


def test_sus1_paused_property_must_stop_tracking(client, auth, catalog):
    prop = on_plan(catalog["personal"])
    Property.objects.filter(pk=prop.pk).update(status="paused")
    body = get(client, auth, prop.tracking_tag).json()
    assert (body["active"], body["reason"]) == (False, "property_paused")


def test_sus1_deleted_property_must_stop_tracking(client, auth, personal_prop):
    Property.objects.filter(pk=personal_prop.pk).update(deleted_at=timezone.now())
    body = get(client, auth, personal_prop.tracking_tag).json()
    assert (body["active"], body["reason"]) == (False, "property_deleted")


def test_sus1_suspension_wins_over_a_paused_property(client, auth, personal_prop):
    Property.objects.filter(pk=personal_prop.pk).update(status="paused")
    Account.objects.filter(pk=personal_prop.account_id).update(status="suspended", suspension_reason="non_payment")
    assert get(client, auth, personal_prop.tracking_tag).json()["reason"] == "account_suspended"


def test_use4_hard_capped_plan_exactly_at_quota_reports_quota_exhausted(client, auth, free_prop):
    with time_machine.travel(NOW, tick=False):
        usage_ingest(make_events(free_prop, 999))
        below = get(client, auth, free_prop.tracking_tag).json()
        clear_caches()  # the invalidation itself is tested below
        usage_ingest(make_events(free_prop, 1))
        at_cap = get(client, auth, free_prop.tracking_tag).json()
    assert (below["active"], below["reason"], below["sessions_used"]) == (True, None, 999)
    assert (at_cap["active"], at_cap["reason"], at_cap["sessions_used"]) == (False, "quota_exhausted", 1000)
    assert at_cap["hard_capped"] is True and at_cap["sessions_included"] == 1000


def test_use4_plan_with_overage_stays_active_past_its_quota(client, auth, personal_prop):
    UsageMonth.objects.create(account=personal_prop.account, month=month_start(timezone.now()), sessions=25_000,
                              sessions_included=10_000)
    body = get(client, auth, personal_prop.tracking_tag).json()
    assert (body["active"], body["sessions_used"], body["sessions_included"]) == (True, 25_000, 10_000)


def test_use4_quota_exhausted_in_a_past_month_does_not_stop_this_month(client, auth, free_prop):
    last_month = (month_start(timezone.now()) - timedelta(days=1)).replace(day=1)
    UsageMonth.objects.create(account=free_prop.account, month=last_month, sessions=1000, sessions_included=1000)
    assert get(client, auth, free_prop.tracking_tag).json()["active"] is True


def test_advanced_extra_properties_raise_the_property_limit(client, auth, catalog):
    """ADD-1: extra properties bought on Advanced raise the property limit the entitlement API reports (10 + 2 = 12)."""
    prop = on_plan(catalog["advanced"])
    Subscription.objects.filter(account=prop.account).order_by("-id").update(extra_properties=2)
    assert get(client, auth, prop.tracking_tag).json()["limits"]["properties"] == 12


def test_no_current_subscription_stops_tracking(client, auth, catalog):
    """Entitlements fail closed: a property whose account has no current subscription (only a cancelled one) must stop
    tracking, reason no_subscription."""
    prop = on_plan(catalog["personal"])
    Subscription.objects.filter(account=prop.account).update(status=Status.CANCELED)
    body = get(client, auth, prop.tracking_tag).json()
    assert (body["active"], body["reason"], body["plan"]) == (False, "no_subscription", None)


# --- cache and invalidation --------------------------------------------------------------------------


def test_answers_are_cached(client, auth, personal_prop, django_assert_max_num_queries):
    """Speed: a repeated entitlement request is answered from the cache, with no database query."""
    get(client, auth, personal_prop.tracking_tag)
    with django_assert_max_num_queries(0):
        assert get(client, auth, personal_prop.tracking_tag).json()["active"] is True


@pytest.mark.parametrize("kind", ["account.suspended", "trial.canceled"])
def test_sus1_suspension_event_invalidates_the_cached_answer(client, auth, personal_prop, kind,
                                                             django_capture_on_commit_callbacks):
    assert get(client, auth, personal_prop.tracking_tag).json()["active"] is True
    # The engine writes with update() (no save signal): only the domain event can tell the cache.
    Account.objects.filter(pk=personal_prop.account_id).update(status="suspended", suspension_reason="non_payment")
    assert get(client, auth, personal_prop.tracking_tag).json()["active"] is True  # still cached
    with django_capture_on_commit_callbacks(execute=True):
        events.emit(kind, personal_prop.account_id, reason="non_payment", note="")
    assert get(client, auth, personal_prop.tracking_tag).json()["reason"] == "account_suspended"


def test_sus1_reactivation_event_invalidates_every_property_of_the_account(client, auth, catalog,
                                                                          django_capture_on_commit_callbacks):
    prop = on_plan(catalog["advanced"], status="suspended", suspension_reason="non_payment")
    other = Property.objects.create(account=prop.account, name="Shop", domain="shop.example.com")
    assert get(client, auth, prop.tracking_tag).json()["active"] is False
    assert get(client, auth, other.tracking_tag).json()["active"] is False
    Account.objects.filter(pk=prop.account_id).update(status="active", suspension_reason="")
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("account.reactivated", prop.account_id, previous_reason="non_payment", note="")
    assert get(client, auth, prop.tracking_tag).json()["active"] is True
    assert get(client, auth, other.tracking_tag).json()["active"] is True


def test_use3_upgrade_event_invalidates_and_raises_the_month_quota(client, auth, catalog, free_prop,
                                                                  django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        usage_ingest(make_events(free_prop, 1000))
        assert get(client, auth, free_prop.tracking_tag).json()["reason"] == "quota_exhausted"
        with django_capture_on_commit_callbacks(execute=True):
            subscription_replace(free_prop.account, catalog["personal"], status=Status.ACTIVE)
            events.emit("subscription.upgraded", free_prop.account_id, subscription_id=1, from_plan="free",
                        to_plan="personal", cycle="monthly", invoice_id=None, amount="14.00")
        body = get(client, auth, free_prop.tracking_tag).json()
        row = UsageMonth.objects.get(account=free_prop.account)
    assert (body["active"], body["plan"], body["sessions_included"]) == (True, "personal", 10_000)
    assert row.sessions_included == 10_000


def test_downgrade_event_invalidates_the_plan_and_limits(client, auth, catalog,
                                                        django_capture_on_commit_callbacks):
    """Cache: the downgrade.applied event drops the cached answer, so the API reports the new plan's limits at once, not
    after the cache expires."""
    prop = on_plan(catalog["advanced"])
    assert get(client, auth, prop.tracking_tag).json()["plan"] == "advanced"
    Subscription.objects.filter(account=prop.account).update(plan=catalog["personal"])
    with django_capture_on_commit_callbacks(execute=True):
        events.emit("downgrade.applied", prop.account_id, subscription_id=1, from_plan="advanced",
                    to_plan="personal", paused_properties=[])
    assert get(client, auth, prop.tracking_tag).json()["limits"]["properties"] == 3


def test_sus1_pausing_a_property_invalidates_its_answer(client, auth, catalog, django_capture_on_commit_callbacks):
    prop = on_plan(catalog["free"])
    newer = Property.objects.create(account=prop.account, name="Newer", domain="newer.example.com")
    assert get(client, auth, newer.tracking_tag).json()["active"] is True
    with django_capture_on_commit_callbacks(execute=True):
        pause_excess(prop.account, 1)  # DWN-3: the newest excess property is paused
    assert get(client, auth, newer.tracking_tag).json()["reason"] == "property_paused"
    assert get(client, auth, prop.tracking_tag).json()["active"] is True


def test_sus1_deleting_a_property_invalidates_its_answer(client, auth, personal_prop,
                                                        django_capture_on_commit_callbacks):
    assert get(client, auth, personal_prop.tracking_tag).json()["active"] is True
    with django_capture_on_commit_callbacks(execute=True):
        property_delete(prop=personal_prop)
    assert get(client, auth, personal_prop.tracking_tag).json()["reason"] == "property_deleted"


def test_use4_reaching_the_hard_cap_invalidates_the_cached_answer(client, auth, free_prop,
                                                                 django_capture_on_commit_callbacks):
    with time_machine.travel(NOW, tick=False):
        usage_ingest(make_events(free_prop, 999))
        assert get(client, auth, free_prop.tracking_tag).json()["active"] is True
        with django_capture_on_commit_callbacks(execute=True):
            usage_ingest(make_events(free_prop, 5))
        body = get(client, auth, free_prop.tracking_tag).json()
    assert (body["active"], body["reason"]) == (False, "quota_exhausted")


def test_cached_answers_expire_after_the_ttl(client, auth, personal_prop):
    """Changes no event or save reports (a bulk update) show within ENTITLEMENT_CACHE_SECONDS."""
    with time_machine.travel(NOW, tick=False) as clock:
        assert get(client, auth, personal_prop.tracking_tag).json()["active"] is True
        Property.objects.filter(pk=personal_prop.pk).update(status="paused")
        clock.shift(timedelta(seconds=31))
        assert get(client, auth, personal_prop.tracking_tag).json()["reason"] == "property_paused"


def test_answers_cached_together_do_not_all_expire_together(personal_prop):
    """Each answer lives a random 25..30 s: after a deploy the recomputations are spread out."""
    props = [personal_prop, *(Property.objects.create(account=personal_prop.account, name=f"Site {i}",
                                                      domain=f"s{i}.example.com") for i in range(19))]
    with time_machine.travel(NOW, tick=False) as clock:
        for prop in props:
            assert entitlement_get(prop.tracking_tag)["active"] is True
        Property.objects.filter(account=personal_prop.account).update(status="paused")
        clock.shift(timedelta(seconds=24.5))
        entitlement_cache_clear_local()
        assert all(entitlement_get(p.tracking_tag)["active"] for p in props)  # none expired before 25 s
        clock.shift(timedelta(seconds=3))
        entitlement_cache_clear_local()
        refreshed = [not entitlement_get(p.tracking_tag)["active"] for p in props]
        clock.shift(timedelta(seconds=3))
        entitlement_cache_clear_local()
        assert not any(entitlement_get(p.tracking_tag)["active"] for p in props)  # all expired by 30 s
    assert any(refreshed) and not all(refreshed)


def test_a_stale_answer_is_recomputed_by_one_request_and_served_stale_to_the_others_meanwhile(personal_prop,
                                                                                            monkeypatch):
    """Stale-while-revalidate (issue 17): when answers cached together expire together, each is
    recomputed once, by the first request that asks; requests arriving meanwhile (in any process:
    the claim is in the shared cache) get the stale answer instead of running the queries too."""
    from usage import entitlements as usage

    tag = personal_prop.tracking_tag
    real = usage.entitlement_compute
    computed = []

    def recompute(tracking_tag, now=None):
        computed.append(tracking_tag)
        entitlement_cache_clear_local()  # as another process would see it
        assert entitlement_get(tracking_tag)["active"] is True  # stale: not recomputed a second time
        assert entitlement_cached(tracking_tag)["active"] is True  # the fast path serves it too
        return real(tracking_tag, now=now)

    monkeypatch.setattr(usage, "entitlement_refresh_soon", lambda tag: pytest.fail("refreshed twice"))

    with time_machine.travel(NOW, tick=False) as clock:
        assert entitlement_get(tag)["active"] is True
        Property.objects.filter(pk=personal_prop.pk).update(status="paused")
        clock.shift(timedelta(seconds=31))
        entitlement_cache_clear_local()
        monkeypatch.setattr(usage, "entitlement_compute", recompute)
        assert entitlement_get(tag)["reason"] == "property_paused"
        assert computed == [tag]
        entitlement_cache_clear_local()
        assert entitlement_cached(tag)["reason"] == "property_paused"  # fresh again, for everyone


def test_the_fast_path_serves_a_stale_answer_at_once_and_has_it_recomputed_once_off_the_request(
        personal_prop, monkeypatch):
    """Speed: after expiry the fast path answers the stale entitlement at once; one recompute runs off the request."""
    from usage import entitlements as usage

    tag = personal_prop.tracking_tag
    handed = []
    monkeypatch.setattr(usage, "entitlement_refresh_soon", handed.append)
    with time_machine.travel(NOW, tick=False) as clock:
        entitlement_get(tag)
        Property.objects.filter(pk=personal_prop.pk).update(status="paused")
        clock.shift(timedelta(seconds=31))
        for _ in range(3):
            entitlement_cache_clear_local()
            assert entitlement_cached(tag)["active"] is True  # stale, served without waiting
        assert handed == [tag]  # one recompute, whoever asked
        usage.entitlement_refresh(tag)  # what the refresher thread runs
        entitlement_cache_clear_local()
        assert entitlement_cached(tag)["reason"] == "property_paused"


def test_a_cache_failure_while_claiming_a_recompute_is_a_miss(personal_prop, monkeypatch):
    """Reliability: a cache error while claiming the recompute is a miss answered from the database."""
    from django.core.cache import cache

    tag = personal_prop.tracking_tag
    with time_machine.travel(NOW, tick=False) as clock:
        entitlement_get(tag)
        Property.objects.filter(pk=personal_prop.pk).update(status="paused")
        clock.shift(timedelta(seconds=31))
        entitlement_cache_clear_local()

        def down(*args, **kwargs):
            raise ConnectionError("Redis is down")

        monkeypatch.setattr(cache, "add", down)
        assert entitlement_get(tag)["reason"] == "property_paused"  # recomputed from the database
