"""The billing run at Stripe's speed limit (issue 27), against localstripe behind a proxy that adds
latency and answers 429 like Stripe (tests/stripe/latency_proxy.py): `charge_many` overlaps its
charges up to STRIPE_CONCURRENCY, every request takes a token of one rate limit shared by all
workers (core/ratelimit.py), a 429 is sent again with the same idempotency key and never becomes
a decline or a second charge (PAY-2), and a lost answer stays unknown until settled by its key."""

import threading
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import stripe

from core import ratelimit
from core.pause import Pause
from invoices.gateways import ChargeRequest
from invoices.gateways import stripe as stripe_gateway
from invoices.models import InvoiceStatus, Payment, PaymentStatus
from subscriptions.models import Status
from tests.stripe.conftest import SECRET_KEY
from tests.stripe.latency_proxy import LatencyProxy

pytestmark = pytest.mark.django_db

REDIS_URL = "redis://127.0.0.1:6379/0?socket_connect_timeout=0.5&socket_timeout=1"


@pytest.fixture
def proxy(localstripe, settings, monkeypatch):
    """The proxy in front of the emulator, no latency and no limit until a test sets them; each test
    starts with empty buckets (a bucket remembers the slots it handed out)."""
    monkeypatch.setattr(stripe_gateway, "_buckets", {})
    monkeypatch.setattr(stripe_gateway, "BACKOFF_SECONDS", 0.02)
    monkeypatch.setattr(stripe_gateway, "_rate_limited", Pause(stripe_gateway.RATE_LIMITED_PAUSE_SECONDS))
    settings.STRIPE_MAX_REQUESTS_PER_SECOND = 1000
    settings.REDIS_URL = ""
    running = LatencyProxy(localstripe.url, latency=0.0, rate=1000)
    settings.STRIPE_API_BASE = running.start()
    yield running
    running.stop()


def _card(gateway, token: str = "pm_card_visa") -> tuple[str, str]:
    customer = stripe.Customer.create(api_key=SECRET_KEY)
    return customer.id, gateway.attach(customer.id, token).gateway_id


def _request(card: tuple[str, str], key: str, amount: str = "14.00") -> ChargeRequest:
    return ChargeRequest(customer_id=card[0], payment_method_id=card[1], amount=Decimal(amount), currency="USD",
                         idempotency_key=key, description="Invoice 1")


def _charges_of(customer_id: str) -> list:
    return stripe.Charge.list(customer=customer_id, api_key=SECRET_KEY).data


def test_pay2_charge_many_overlaps_its_charges_up_to_the_concurrency(gateway, proxy, settings):
    """Eight charges at 0.3 s each, four at a time, take about 2 × 0.3 s (one at a time: 2.4 s);
    each result is its own request's PaymentIntent, in the requests' order."""
    cards = [_card(gateway) for _ in range(4)]
    requests = [_request(cards[n % 4], f"prorata-test-overlap-{n}", f"{10 + n}.00") for n in range(8)]
    proxy.latency, settings.STRIPE_CONCURRENCY = 0.3, 4
    proxy.reset()

    started = time.monotonic()
    results = gateway.charge_many(requests)
    elapsed = time.monotonic() - started

    assert proxy.max_in_flight == 4
    assert 0.6 <= elapsed < 1.5, elapsed
    assert all(result.succeeded for result in results)
    proxy.latency = 0.0
    for request, result in zip(requests, results, strict=True):
        intent = stripe.PaymentIntent.retrieve(result.reference, api_key=SECRET_KEY)
        assert intent.metadata[stripe_gateway.METADATA_KEY] == request.idempotency_key
        assert intent.amount == int(request.amount * 100)


def test_dun1_charge_many_returns_the_same_results_as_charge(gateway, proxy):
    """A decline in a batch is a decline with the bank's code, between two successes, as `charge` says it."""
    good, failing = _card(gateway), _card(gateway, "pm_card_chargeCustomerFail")
    results = gateway.charge_many([_request(good, "prorata-test-mix-1"), _request(failing, "prorata-test-mix-2"),
                                   _request(good, "prorata-test-mix-3")])

    assert [r.succeeded for r in results] == [True, False, True]
    assert results[1].decline_code == "card_declined" and results[1].reference.startswith("pi_")
    assert results[1] == gateway.charge(customer_id=failing[0], payment_method_id=failing[1],
                                        amount=Decimal("14.00"), currency="USD",
                                        idempotency_key="prorata-test-mix-2")


def test_pay2_concurrent_charges_stay_under_the_rate_limit(gateway, proxy, settings):
    """Thirty charges, eight in flight, against a Stripe that allows 10 a second (a burst of 10):
    the shared token bucket (10/s, a burst of 5) paces them, so Stripe never answers 429 and they
    take >= 2.5 s."""
    cards = [_card(gateway) for _ in range(3)]
    settings.STRIPE_MAX_REQUESTS_PER_SECOND, settings.STRIPE_CONCURRENCY = 10, 8
    proxy.rate = proxy.burst = 10
    proxy.reset()

    started = time.monotonic()
    results = gateway.charge_many([_request(cards[n % 3], f"prorata-test-rate-{n}") for n in range(30)])
    elapsed = time.monotonic() - started

    assert all(result.succeeded for result in results)
    assert proxy.rejected == 0
    assert elapsed >= 2.45, elapsed  # (30 - 5) / 10 s


def test_pay2_a_429_is_sent_again_with_the_same_key_and_charges_once(gateway, proxy):
    """Stripe's 429 is "try later": the same request (its idempotency key) is sent again after
    Stripe's Retry-After, and the card is charged once."""
    card = _card(gateway)
    proxy.reset()
    proxy.reject_next, proxy.retry_after = 2, "0.2"

    started = time.monotonic()
    [result] = gateway.charge_many([_request(card, "prorata-test-429")])

    assert result.succeeded
    assert time.monotonic() - started >= 0.4  # twice Retry-After
    assert proxy.charges_rejected == {"prorata-test-429": 2}
    assert proxy.charges_forwarded == {"prorata-test-429": 1}
    assert len(_charges_of(card[0])) == 1


def test_pay2_a_429_past_its_retries_is_unknown_never_a_decline(gateway, proxy):
    """When Stripe keeps answering 429, the charge's outcome is unknown (None), after a bounded
    number of tries with the same key; nothing reached the bank. The next request is then sent once
    (no 3.5 s of backoff each while Stripe says "slow down"), and all is normal once it answers."""
    card = _card(gateway)
    proxy.reset()
    proxy.reject_all = True

    assert gateway.charge_many([_request(card, "prorata-test-429-always")]) == [None]
    assert gateway.charge_many([_request(card, "prorata-test-429-next")]) == [None]

    assert proxy.charges_rejected == {"prorata-test-429-always": stripe_gateway.RATE_LIMITED_TRIES,
                                      "prorata-test-429-next": 1}
    assert not proxy.charges_forwarded
    proxy.reject_all = False
    assert _charges_of(card[0]) == []
    proxy.reject_next = 1
    [result] = gateway.charge_many([_request(card, "prorata-test-429-after")])
    assert result.succeeded and proxy.charges_rejected["prorata-test-429-after"] == 1


def test_pay2_a_lost_answer_stays_unknown_and_is_settled_by_its_key(gateway, proxy):
    """The charge reached Stripe but its answer was lost: unknown (None), never a decline; the
    lookup by key then finds the one charge (PAY-2)."""
    card = _card(gateway)
    proxy.lose_answers = 1

    assert gateway.charge_many([_request(card, "prorata-test-lost")]) == [None]

    assert proxy.charges_forwarded == {"prorata-test-lost": 1}
    found = gateway.find_charge("prorata-test-lost", customer_id=card[0])
    assert found.succeeded and found.reference.startswith("pi_")
    assert len(_charges_of(card[0])) == 1


def test_ren1_the_billing_run_charges_through_charge_many_and_a_429_leaves_the_payment_unknown(
        localstripe, proxy, catalog, settings, django_capture_on_commit_callbacks):
    """The set-wise billing run through Stripe: three renewals charged once each; with Stripe
    answering 429 throughout, the renewal's payment stays unknown (PAY-2): no decline, no dunning,
    no charge, and the invoice open for the settle step."""
    from subscriptions import billing
    from subscriptions.scheduler import run
    from tests.factories import AccountFactory

    subscribed = datetime(2026, 4, 1, tzinfo=UTC)
    accounts = [AccountFactory() for _ in range(4)]
    for account in accounts:
        billing.set_payment_method(account, "pm_card_visa", now=subscribed)
        billing.subscribe(account, "personal", now=subscribed)
    proxy.reset()

    with django_capture_on_commit_callbacks(execute=True):
        report = run(datetime(2026, 4, 30, tzinfo=UTC), fan_out=False)
    assert report.counts["renewals"] == 4 and not report.failures
    assert proxy.requests == 4  # one request per renewal: no lookup first
    renewals = Payment.objects.filter(invoice__kind="renewal")
    assert sorted(renewals.values_list("status", flat=True)) == [PaymentStatus.SUCCEEDED] * 4
    for account in accounts:
        account.refresh_from_db()
        assert len(_charges_of(account.gateway_customer_id)) == 2  # the first period and the renewal

    late = AccountFactory()
    billing.set_payment_method(late, "pm_card_visa", now=datetime(2026, 4, 5, tzinfo=UTC))
    billing.subscribe(late, "personal", now=datetime(2026, 4, 5, tzinfo=UTC))
    proxy.reject_all = True
    with django_capture_on_commit_callbacks(execute=True):
        report = run(datetime(2026, 5, 4, tzinfo=UTC), fan_out=False)
    proxy.reject_all = False

    payment = Payment.objects.get(account=late, invoice__kind="renewal")
    assert payment.status == PaymentStatus.UNKNOWN and not payment.decline_code
    assert payment.invoice.status == InvoiceStatus.OPEN
    assert late.subscription.status == Status.ACTIVE  # no dunning for an unknown outcome
    late.refresh_from_db()
    assert len(_charges_of(late.gateway_customer_id)) == 1  # the first period only


# -- the shared bucket (core/ratelimit.py) -------------------------------------------------------


def _redis_or_skip():
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at 127.0.0.1:6379: {exc}")


def _take_in_two_workers(make_bucket, rate: float, burst: int, each: int) -> list[float]:
    """Two threads, each with its own bucket object, take `each` tokens; the times they got them."""
    times, lock = [], threading.Lock()

    def worker(bucket):
        for _ in range(each):
            bucket.acquire(rate, burst)
            with lock:
                times.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(make_bucket(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(times)


def _most_in_one_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def test_two_workers_sharing_a_redis_bucket_stay_under_the_rate(settings):
    """Issue 27: two workers (separate bucket objects, one Redis key) together never take more
    than the burst plus the rate a second: 60 tokens at 40/s with a burst of 4 take >= 1.4 s."""
    _redis_or_skip()
    ratelimit.ratelimit_resume()
    prefix = f"h-gateway-test:{uuid.uuid4().hex}:"
    started = time.monotonic()
    times = _take_in_two_workers(lambda: ratelimit.RateLimit("stripe", redis_url=REDIS_URL, prefix=prefix),
                                 rate=40, burst=4, each=30)
    ratelimit.RateLimit("stripe", redis_url=REDIS_URL, prefix=prefix).forget()

    assert len(times) == 60
    assert times[-1] - started >= (60 - 4) / 40 - 0.05
    assert _most_in_one_second(times) <= 40 + 4


def test_a_redis_that_is_down_falls_back_to_the_process_share_at_once(settings):
    """Redis unreachable: the first call pays its connect timeout, then the process's own bucket
    answers at once (at the rate divided by the task workers) for PAUSE_SECONDS; never a blocked request."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    ratelimit.ratelimit_resume()
    bucket = ratelimit.RateLimit("down", redis_url="redis://127.0.0.1:1/0?socket_connect_timeout=0.2")
    try:
        started = time.monotonic()
        waits = [bucket.reserve(100, 10) for _ in range(10)]
        assert time.monotonic() - started < 1.0
        assert waits[:5] == [0.0] * 5 and waits[5] > 0  # the process's share: 50/s with a burst of 5
    finally:
        ratelimit.ratelimit_resume()


def test_pay2_answers_lost_in_a_batch_are_settled_by_key_and_never_charged_twice(
        localstripe, proxy, catalog, django_capture_on_commit_callbacks):
    """REN-3 with PAY-2: two answers of a billing run's batch are lost after Stripe charged (as when
    a worker dies between the charge and the record); the run asks Stripe about those keys and
    records them paid; a second run changes nothing. Each card is charged once for the renewal."""
    from subscriptions import billing
    from subscriptions.scheduler import run
    from tests.factories import AccountFactory

    subscribed = datetime(2026, 4, 1, tzinfo=UTC)
    accounts = [AccountFactory() for _ in range(3)]
    for account in accounts:
        billing.set_payment_method(account, "pm_card_visa", now=subscribed)
        billing.subscribe(account, "personal", now=subscribed)
    proxy.reset()
    proxy.lose_answers = 2

    for now in (datetime(2026, 4, 30, tzinfo=UTC), datetime(2026, 4, 30, 0, 5, tzinfo=UTC)):
        with django_capture_on_commit_callbacks(execute=True):
            report = run(now, fan_out=False)
        assert not report.failures

    renewals = Payment.objects.filter(invoice__kind="renewal")
    assert sorted(renewals.values_list("status", flat=True)) == [PaymentStatus.SUCCEEDED] * 3
    assert all(payment.invoice.status == InvoiceStatus.PAID for payment in renewals)
    assert sorted(proxy.charges_forwarded.values()) == [1, 1, 1]
    for account in accounts:
        account.refresh_from_db()
        assert len(_charges_of(account.gateway_customer_id)) == 2  # the first period and the renewal
