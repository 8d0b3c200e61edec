"""Entitlements (SUS-1, USE-4): may a property track now? The answer and its two-level cache
(core.cache), which the API and the WSGI fast path read and the domain events invalidate."""

import logging
import random
from datetime import datetime

from accounts.models import AccountStatus, Property, PropertyStatus, UsageMonth
from accounts.months import month_included, month_label, month_start
from core.cache import LayeredCache
from core.clock import clock
from subscriptions.models import Status

from .events import STOP_DETAIL, Reason
from .quota import hard_cap_room

log = logging.getLogger(__name__)

ENTITLEMENT_CACHE_SECONDS = 30  # bound on staleness where an invalidation cannot reach (see docs/api.md)
# Each answer is cached for a random 25..30 s, so answers cached in the same second (after a deploy
# or a cache flush, or a benchmark's warm-up) do not all expire and get recomputed together.
ENTITLEMENT_CACHE_MIN_SECONDS = 25


def entitlement_compute(tracking_tag: str, *, now: datetime | None = None) -> dict | None:
    """May this property track? None when no property has the tag (SUS-1, USE-4)."""
    now = clock(now)
    prop = Property.objects.select_related("account").filter(tracking_tag=tracking_tag).first()
    if prop is None:
        return None
    account = prop.account
    subscription = account.subscription
    plan = subscription.plan if subscription else None

    if subscription is not None and subscription.status == Status.CANCELED:
        plan = None
    month = month_start(now)
    row = UsageMonth.objects.filter(account=account, month=month).values_list("sessions", "sessions_included").first()
    plan_limit = plan.limit_sessions if plan else None
    sessions_used = row[0] if row else 0
    included = month_included(row[1], plan_limit) if row else plan_limit

    if account.status == AccountStatus.SUSPENDED or (subscription and subscription.status == Status.SUSPENDED):
        reason = Reason.ACCOUNT_SUSPENDED
        label = account.get_suspension_reason_display() if account.suspension_reason else ""
        detail = f"The account is suspended ({label.lower()})." if label else "The account is suspended."
    elif plan is None:
        reason, detail = Reason.NO_SUBSCRIPTION, STOP_DETAIL[Reason.NO_SUBSCRIPTION]
    elif prop.deleted_at is not None:
        reason, detail = Reason.PROPERTY_DELETED, STOP_DETAIL[Reason.PROPERTY_DELETED]
    elif prop.status == PropertyStatus.PAUSED:
        reason, detail = Reason.PROPERTY_PAUSED, STOP_DETAIL[Reason.PROPERTY_PAUSED]
    elif hard_cap_room(sessions_used, included, plan.hard_capped) == 0:
        reason, detail = Reason.QUOTA_EXHAUSTED, STOP_DETAIL[Reason.QUOTA_EXHAUSTED]
    else:
        reason, detail = None, "The property may track."

    limits = {"properties": None, "sessions": None, "integrations": None}
    if plan is not None:
        limits = plan.limits(subscription.extra_properties)
    return {
        "tracking_tag": tracking_tag,
        "active": reason is None,
        "plan": plan.code if plan else None,
        "limits": limits,
        "month": month_label(month),
        "sessions_used": sessions_used,
        "sessions_included": included,
        "hard_capped": plan.hard_capped if plan else True,
        "reason": reason,
        "detail": detail,
    }


# A small per-process layer in front of the shared cache saves a network round trip on the hot
# path. Invalidation clears it in this process; other processes see a change within its TTL.
LOCAL_CACHE_SECONDS = 2
# Stale-while-revalidate (core.cache): an answer past its lifetime is still served while the one
# request that claimed its recompute runs the queries, so answers that expire together (after a
# deploy, a cache flush, a benchmark's warm-up) cost one recompute each, not a burst of them.
_answers = LayeredCache("entitlement:v2:", local_seconds=LOCAL_CACHE_SECONDS, local_max=10_000,
                        stale_seconds=ENTITLEMENT_CACHE_SECONDS)


def entitlement_cached(tracking_tag: str) -> dict | None:
    """The cached answer, or None when neither cache holds one. Never reads the database: the
    WSGI fast path (api/fastpath.py) answers from here and leaves a miss to Django. A stale answer
    is served as it is; the first request to see it hands its recompute to this process's
    refresher thread, so no request waits for the queries."""
    return _answers.get(tracking_tag, background=entitlement_refresh_soon)


_refresher: list = []  # this process's one refresher thread, started on first use


def entitlement_refresh_soon(tracking_tag: str) -> None:
    """Recompute a stale answer off the request path (one thread per process, one at a time)."""
    if not _refresher:
        from concurrent.futures import ThreadPoolExecutor

        _refresher.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix="entitlement-refresh"))
    _refresher[0].submit(_refresh_in_thread, tracking_tag)


def _refresh_in_thread(tracking_tag: str) -> None:
    from django.db import close_old_connections

    close_old_connections()  # this thread's own connection, kept between refreshes
    try:
        entitlement_refresh(tracking_tag)
    except Exception:  # the stale answer stays until its claim lapses; the next request retries
        log.exception("Refreshing the entitlement of %s failed", tracking_tag)


def entitlement_refresh(tracking_tag: str, *, now: datetime | None = None) -> dict | None:
    """Compute the answer and cache it (or drop the entry: no property has the tag)."""
    answer = entitlement_compute(tracking_tag, now=now)
    if answer is None:
        _answers.forget(tracking_tag)
    else:
        _answers.set(tracking_tag, answer, random.randint(ENTITLEMENT_CACHE_MIN_SECONDS, ENTITLEMENT_CACHE_SECONDS))
    return answer


def entitlement_get(tracking_tag: str, *, now: datetime | None = None) -> dict | None:
    """The cached answer. Entries are fresh for at most ENTITLEMENT_CACHE_SECONDS in the shared
    cache (and LOCAL_CACHE_SECONDS in this process); past that, this request recomputes the answer
    if it is the first to ask, and gets the stale one while another request does. They are dropped
    on the domain events that change an answer (api.signals) and when a property or account is saved."""
    answer = _answers.get(tracking_tag, refresh=True)
    return entitlement_refresh(tracking_tag, now=now) if answer is None else answer


def entitlement_invalidate(account_id: int) -> None:
    """Drop the cached answers of every property of the account."""
    _answers.forget(*Property.objects.filter(account_id=account_id).values_list("tracking_tag", flat=True))


def entitlement_invalidate_tag(tracking_tag: str) -> None:
    _answers.forget(tracking_tag)


def entitlement_cache_clear_local() -> None:
    _answers.clear_local()
