"""The Stripe gateway (PAY-1, PAY-2), through stripe-python and dj-stripe.

Money crosses this boundary as integer minor units (cents); everywhere else it is Decimal (D-3).

How a charge is found again by its idempotency key (PAY-2)
-----------------------------------------------------------
Every PaymentIntent we create carries the caller's key twice: as Stripe's `Idempotency-Key`
header (a repeat of the same create within Stripe's 24 h window replays the first answer, even
for two racing workers) and in the PaymentIntent's metadata (`prorata_idempotency_key`), which
never expires. `find_charge(key)` lists the customer's charges, with their PaymentIntents
expanded, and picks the one whose metadata holds the key. The list endpoint is read-after-write
consistent, unlike Stripe's search API (which can lag by a minute), so a charge made a moment
ago is found. `charge()` looks first and creates only when the key was never used: the same key
never charges twice, even after Stripe has forgotten the key or on an emulator (localstripe)
that ignores the header.

The customer's id comes from the caller (`charge`) or, for `find_charge`, from our Payment row
with that key (its account's customer), since Stripe cannot list PaymentIntents by metadata.

Stripe's speed limit
--------------------
Every request to Stripe (charges, lookups, dj-stripe's syncs, stripe-python's own retries) goes
through one HTTP client (`LimitedClient`) that first takes a token of STRIPE_MAX_REQUESTS_PER_SECOND
from a bucket shared by every worker (core/ratelimit.py), one bucket per secret key. A 429 all the
same (a dashboard user, another system on the account) means "try later": the very same request,
with the same idempotency key, is sent again after a backoff (Stripe's Retry-After when it gives
one), at most RATE_LIMITED_TRIES times; then the caller gets GatewayUnavailable, an unknown outcome
settled by PAY-2's lookup, never a decline. `charge_many` charges a batch STRIPE_CONCURRENCY at a
time, one request per charge (see its docstring for why no lookup comes first).
"""

import hashlib
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import stripe
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

from core.pause import Pause
from core.ratelimit import RateLimit

from .base import (
    CardDeclined,
    CardDetails,
    ChargeRequest,
    ChargeResult,
    GatewayError,
    GatewayUnavailable,
    RefundResult,
)

logger = logging.getLogger(__name__)

METADATA_KEY = "prorata_idempotency_key"
DEFAULT_API_BASE = "https://api.stripe.com"

# Stripe's zero-decimal currencies: the amount is sent in whole units, not hundredths.
ZERO_DECIMAL = {
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
}


def to_minor(amount: Decimal, currency: str) -> int:
    """Decimal amount -> Stripe's integer minor units. Refuses to round: that would move money.

    Decimal("14.50"), "USD" -> 1450;  Decimal("1500"), "JPY" -> 1500
    """
    exponent = 0 if currency.upper() in ZERO_DECIMAL else 2
    minor = Decimal(amount).scaleb(exponent)
    if minor != minor.to_integral_value():
        raise GatewayError(f"{amount} {currency} has more decimals than {currency} allows.")
    return int(minor)


def from_minor(minor: int, currency: str) -> Decimal:
    """1450, "usd" -> Decimal("14.50")"""
    exponent = 0 if currency.upper() in ZERO_DECIMAL else 2
    return Decimal(int(minor)).scaleb(-exponent).quantize(Decimal(1).scaleb(-exponent))


# A 429 is sent again after 0.5, 1, 2 s (with jitter), or after Stripe's Retry-After up to 5 s: a
# request waits at most ~3.5 s more (a web request too) before its outcome is "unknown, try later".
# Once one request has used up its tries, the process sends each request once (a 429 is "unknown"
# at once) until Stripe answers something else or RATE_LIMITED_PAUSE_SECONDS pass: a run's lookups
# of its unknown payments then cost a round trip each, not 3.5 s each.
RATE_LIMITED_TRIES = 4
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 5.0
RATE_LIMITED_PAUSE_SECONDS = 5.0

_buckets: dict[str, RateLimit] = {}
_buckets_lock = threading.Lock()
_rate_limited = Pause(RATE_LIMITED_PAUSE_SECONDS)


def rate_limit_for(authorization: str) -> RateLimit:
    """The shared bucket of one Stripe account (its secret key, hashed: never stored in Redis)."""
    name = "stripe:" + hashlib.sha256(authorization.encode()).hexdigest()[:16]
    with _buckets_lock:  # charge_many's threads: one bucket object per key in the process
        if name not in _buckets:
            _buckets[name] = RateLimit(name)
        return _buckets[name]


class LimitedClient(stripe.RequestsClient):
    """stripe-python's requests client, with a token of the shared rate limit taken before each
    request and a 429 sent again after a backoff (the module's docstring). Thread-safe as its
    parent: one requests session per thread."""

    def request(self, method, url, headers, post_data=None):
        bucket = rate_limit_for((headers or {}).get("Authorization", ""))
        tries = 1 if _rate_limited.active() else RATE_LIMITED_TRIES
        for attempt in range(1, tries + 1):
            bucket.acquire(settings.STRIPE_MAX_REQUESTS_PER_SECOND)
            content, status, rheaders = super().request(method, url, headers, post_data)
            if status != 429:
                _rate_limited.end()
                return content, status, rheaders
            if attempt == tries:
                _rate_limited.start()
                return content, status, rheaders
            delay = backoff_seconds(attempt, rheaders.get("Retry-After"))
            logger.info("Stripe answered 429 to %s %s; sending it again in %.2f s", method, url, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")


def backoff_seconds(attempt: int, retry_after: str | None) -> float:
    """Stripe's Retry-After (seconds) when it gives one, else 0.5, 1, 2 … s with jitter; at most 5 s.

    (1, None) -> 0.25..0.5;  (3, None) -> 1..2;  (1, "2") -> 2.0;  (1, "60") -> 5.0
    """
    try:
        given = float(retry_after) if retry_after else None
    except ValueError:
        given = None
    if given is None:
        return random.uniform(0.5, 1.0) * BACKOFF_SECONDS * 2 ** (attempt - 1)
    return min(max(given, 0.0), MAX_BACKOFF_SECONDS)


def configure_stripe() -> None:
    """Point stripe-python (and so dj-stripe) at STRIPE_API_BASE, or at Stripe itself, through the
    rate-limited client."""
    stripe.api_base = settings.STRIPE_API_BASE or DEFAULT_API_BASE
    stripe.max_network_retries = settings.STRIPE_MAX_NETWORK_RETRIES
    if not isinstance(stripe.default_http_client, LimitedClient):
        stripe.default_http_client = LimitedClient(verify_ssl_certs=stripe.verify_ssl_certs, proxy=stripe.proxy)


@receiver(setting_changed)
def _reconfigure(*, setting, **kwargs):
    if setting in {"STRIPE_API_BASE", "STRIPE_MAX_NETWORK_RETRIES"}:
        configure_stripe()


def _data(obj) -> dict:
    """A plain dict of a Stripe object (stripe-python 15 objects are not dicts)."""
    if obj is None or isinstance(obj, str):
        return {}
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


class StripeGateway:
    name = "stripe"

    # -- plumbing --------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return settings.STRIPE_SECRET_KEY

    def _call(self, fn, *args, **kwargs):
        """Run one API call; translate what is not the card's fault into the gateway's errors.
        CardError passes through: its meaning depends on the operation."""
        try:
            return fn(*args, api_key=self.api_key, **kwargs)
        except stripe.CardError:
            raise
        except stripe.StripeError as exc:
            raise _translate(exc) from exc

    def _call_strict(self, fn, *args, **kwargs):
        """`_call` for requests that involve no card: a CardError there is a plain refusal."""
        try:
            return self._call(fn, *args, **kwargs)
        except stripe.CardError as exc:
            raise GatewayError(str(exc)) from exc

    # -- customers and cards ---------------------------------------------------------------

    def ensure_customer(self, account) -> str:
        """The account's Stripe customer: dj-stripe's Customer with the account as subscriber,
        created once (dj-stripe sends an idempotency key and keeps the local row)."""
        if account.gateway_customer_id:
            return account.gateway_customer_id
        from djstripe.models import Customer

        configure_stripe()
        customer, _created = self._call_strict(Customer.get_or_create, subscriber=account)
        return customer.id

    def attach(self, customer_id: str, token: str) -> CardDetails:
        """Attach a payment method (a `pm_…` from a confirmed SetupIntent, or a test token such
        as `pm_card_visa`) and make it the customer's default for invoices and off-session
        charges. A card refused by the bank raises CardDeclined with Stripe's decline code."""
        configure_stripe()
        try:
            pm = self._call(stripe.PaymentMethod.attach, token, customer=customer_id)
        except stripe.CardError as exc:
            raise CardDeclined(
                exc.user_message or "Your card was declined.", code=_decline_code(exc) or "card_declined"
            ) from exc
        except GatewayError as exc:
            cause = exc.__cause__
            if isinstance(cause, stripe.InvalidRequestError) and (
                cause.http_status == 404 or cause.code == "resource_missing"
            ):
                raise CardDeclined(
                    "This card could not be found at Stripe. Please enter it again.", code="invalid_token"
                ) from exc
            raise
        self._call(stripe.Customer.modify, customer_id, invoice_settings={"default_payment_method": pm.id})
        card = _data(pm).get("card") or {}
        if not card:
            raise GatewayError(f"Payment method {pm.id} is not a card.")
        return CardDetails(
            gateway_id=pm.id,
            brand=card.get("brand") or "card",
            last4=card.get("last4") or "",
            exp_month=int(card.get("exp_month") or 0),
            exp_year=int(card.get("exp_year") or 0),
            fingerprint=card.get("fingerprint") or "",
        )

    def detach(self, payment_method_id: str) -> None:
        """Remove a card at Stripe (the engine decides when; removing a card is no cancellation)."""
        configure_stripe()
        self._call_strict(stripe.PaymentMethod.detach, payment_method_id)

    def create_setup_intent(self, customer_id: str) -> dict:
        """A SetupIntent for collecting a card in the browser with Stripe Elements: the number
        goes from the browser to Stripe, never through our server (PAY-1)."""
        configure_stripe()
        intent = self._call_strict(
            stripe.SetupIntent.create, customer=customer_id, payment_method_types=["card"], usage="off_session"
        )
        return _data(intent)

    def retrieve_setup_intent(self, setup_intent_id: str) -> dict:
        configure_stripe()
        return _data(self._call_strict(stripe.SetupIntent.retrieve, setup_intent_id))

    # -- charges ---------------------------------------------------------------------------

    def charge(self, *, customer_id, payment_method_id, amount, currency, idempotency_key, description=""):
        """An off-session PaymentIntent confirmed at once. `description` is kept in metadata (the
        emulator rejects the `description` parameter; the receipt comes from us, not Stripe)."""
        configure_stripe()
        minor = to_minor(amount, currency)
        existing = self._find_intent(idempotency_key, customer_id=customer_id)
        if existing is not None:
            if existing.get("amount") != minor or (existing.get("currency") or "").lower() != currency.lower():
                raise GatewayError("Idempotency key reused with a different amount.")
            return self.result_of(existing)
        return self._create(customer_id, payment_method_id, minor, currency, idempotency_key, description)

    def charge_many(self, requests: list[ChargeRequest]) -> list[ChargeResult | None]:
        """`charge` for a batch, STRIPE_CONCURRENCY charges in flight at once (threads: the work is
        waiting for Stripe; stripe-python's client keeps one session per thread), each with its own
        idempotency key; the results in the requests' order, None where the outcome is unknown
        (no answer, a 429 past its retries, a charge still processing: PAY-2 settles it).

        One request per charge, no lookup first: the batch is the billing run's first send of
        attempts it recorded a moment ago (`invoices_issue_many`), never sent before; a rerun after
        a crash does not send them again (their periods are invoiced, REN-3), it settles them by
        key (PAY-2). So Stripe's Idempotency-Key (kept 24 h) is what makes a repeat safe, and the
        look-first of `charge`, which guards keys older than that, would only halve the rate."""
        configure_stripe()  # once, before the threads (they only read stripe-python's settings)
        if not requests:
            return []
        workers = max(1, min(settings.STRIPE_CONCURRENCY, len(requests)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stripe-charge") as pool:
            return list(pool.map(self._first_send, requests))

    def _first_send(self, request: ChargeRequest) -> ChargeResult | None:
        try:
            return self._create(request.customer_id, request.payment_method_id,
                                to_minor(request.amount, request.currency), request.currency,
                                request.idempotency_key, request.description)
        except GatewayUnavailable:
            return None
        except GatewayError:  # refused, not declined (e.g. an unknown card): unknown, settled by key
            logger.exception("Stripe refused the charge %s", request.idempotency_key)
            return None

    def _create(self, customer_id, payment_method_id, minor: int, currency: str, idempotency_key: str,
                description: str) -> ChargeResult:
        """One PaymentIntent, created and confirmed off-session; a CardError is a decline."""
        metadata = {METADATA_KEY: idempotency_key}
        if description:
            metadata["description"] = description[:500]
        try:
            intent = self._call(
                stripe.PaymentIntent.create,
                amount=minor,
                currency=currency.lower(),
                customer=customer_id,
                payment_method=payment_method_id,
                confirm=True,
                off_session=True,
                metadata=metadata,
                idempotency_key=idempotency_key,
            )
        except stripe.CardError as exc:
            return self._declined(exc)
        return self.result_of(_data(intent))

    def find_charge(self, idempotency_key: str, *, customer_id: str | None = None) -> ChargeResult | None:
        configure_stripe()
        intent = self._find_intent(idempotency_key, customer_id=customer_id)
        return self.result_of(intent) if intent is not None else None

    def retrieve_intent(self, reference: str) -> dict:
        """The PaymentIntent with its latest charge expanded (reconciliation, webhooks)."""
        configure_stripe()
        return _data(self._call_strict(stripe.PaymentIntent.retrieve, reference, expand=["latest_charge"]))

    def retrieve_charge(self, charge_id: str) -> dict:
        configure_stripe()
        return _data(self._call_strict(stripe.Charge.retrieve, charge_id))

    def retrieve_customer(self, customer_id: str) -> dict:
        configure_stripe()
        return _data(self._call_strict(stripe.Customer.retrieve, customer_id))

    def _find_intent(self, idempotency_key: str, *, customer_id: str | None) -> dict | None:
        """The PaymentIntent created with this key, as a dict, or None."""
        since = timezone.now() - timedelta(days=45)
        if customer_id is None:
            customer_id, attempted_at = _customer_for_key(idempotency_key)
            if customer_id is None:
                return None  # no attempt with this key was ever recorded, so none was sent
            # The engine's clock can be simulated (D-4): never look later than the real clock.
            since = min(attempted_at, timezone.now()) - timedelta(days=2)
        found = []
        charges = self._call_strict(
            stripe.Charge.list,
            customer=customer_id,
            created={"gt": int(since.timestamp())},
            expand=["data.payment_intent"],
            limit=100,
        )
        for charge in self._pages(charges):
            intent = _data(charge).get("payment_intent")
            if isinstance(intent, dict) and (intent.get("metadata") or {}).get(METADATA_KEY) == idempotency_key:
                intent["latest_charge"] = _data(charge)
                found.append(intent)
        if not found:
            return None
        # One key makes one PaymentIntent; should an emulator have made two, a success wins.
        found.sort(key=lambda pi: (pi.get("status") != "succeeded", pi.get("created") or 0))
        return found[0]

    @staticmethod
    def _pages(listing):
        """Every item of a list, fetching the next pages as needed."""
        try:
            yield from listing.auto_paging_iter()
        except stripe.StripeError as exc:
            raise _translate(exc) from exc

    def _declined(self, exc: stripe.CardError) -> ChargeResult:
        error = _data(exc.error)
        intent = error.get("payment_intent") or {}
        reference = intent.get("id") if isinstance(intent, dict) else intent
        if not reference and error.get("charge"):
            # The emulator leaves payment_intent out of the error; its charge names the intent.
            charge = self._call_strict(stripe.Charge.retrieve, error["charge"])
            reference = _data(charge).get("payment_intent") or charge.id
        return ChargeResult(
            succeeded=False,
            reference=reference or "",
            decline_code=_decline_code(exc) or "card_declined",
            decline_message=exc.user_message or error.get("message") or "Your card was declined.",
        )

    @staticmethod
    def result_of(intent: dict) -> ChargeResult:
        """A PaymentIntent (with latest_charge expanded, when known) as the contract's result."""
        if intent.get("status") == "succeeded":
            return ChargeResult(succeeded=True, reference=intent["id"])
        error = intent.get("last_payment_error") or {}
        charge = intent.get("latest_charge") if isinstance(intent.get("latest_charge"), dict) else {}
        if intent.get("status") in {"processing", "requires_capture"}:
            # Not failed, not paid: the outcome is still unknown (settled by a later webhook).
            raise GatewayUnavailable(f"Payment {intent['id']} is still {intent['status']}.")
        return ChargeResult(
            succeeded=False,
            reference=intent["id"],
            decline_code=error.get("decline_code") or error.get("code") or charge.get("failure_code") or "declined",
            decline_message=error.get("message") or charge.get("failure_message") or "The payment failed.",
        )

    # -- refunds ---------------------------------------------------------------------------

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> RefundResult:
        """Refund (part of) the PaymentIntent `reference`; the same key never refunds twice
        (looked up in the refunds' metadata first, then Stripe's idempotent replay)."""
        configure_stripe()
        for existing in self.list_refunds(reference):
            if (existing.get("metadata") or {}).get(METADATA_KEY) == idempotency_key:
                return RefundResult(existing["id"], from_minor(existing["amount"], existing["currency"]))
        intent = self.retrieve_intent(reference)
        if intent.get("status") != "succeeded":
            raise GatewayError("Only a succeeded charge can be refunded.")
        refund = _data(
            self._call_strict(
                stripe.Refund.create,
                payment_intent=reference,
                amount=to_minor(amount, intent["currency"]),
                metadata={METADATA_KEY: idempotency_key},
                idempotency_key=idempotency_key,
            )
        )
        if refund.get("status") in {"failed", "canceled"}:
            raise GatewayError(f"Stripe could not refund: {refund.get('failure_reason') or refund['status']}.")
        return RefundResult(refund["id"], from_minor(refund["amount"], refund["currency"]))

    def list_refunds(self, reference: str) -> list[dict]:
        """Every refund of the PaymentIntent `reference`, ours and those made at Stripe."""
        configure_stripe()
        listing = self._call_strict(stripe.Refund.list, payment_intent=reference, limit=100)
        return [_data(r) for r in self._pages(listing)]

    def list_disputes(self, charge_id: str) -> list[dict]:
        """The disputes opened on a charge (reconciliation, when a dispute webhook was missed)."""
        configure_stripe()
        listing = self._call_strict(stripe.Dispute.list, charge=charge_id, limit=100)
        return [_data(d) for d in self._pages(listing)]

    def list_card_ids(self, customer_id: str) -> set[str]:
        """The ids of the cards attached to the customer now."""
        configure_stripe()
        listing = self._call_strict(stripe.PaymentMethod.list, customer=customer_id, type="card", limit=100)
        return {pm.id for pm in self._pages(listing)}


def _translate(exc: stripe.StripeError) -> GatewayError:
    """Stripe's error -> the gateway contract's. GatewayUnavailable means "the outcome is
    unknown": settle with find_charge before any retry (PAY-2)."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        # No answer (timeout, connection lost), or "try later": the request may have been applied.
        return GatewayUnavailable(f"Stripe did not answer: {exc.user_message or exc}")
    if isinstance(exc, stripe.IdempotencyError):
        # Another request with this key is still in flight (409): its outcome is not known yet.
        return GatewayUnavailable(f"Stripe is still processing a request with this key: {exc}")
    if isinstance(exc, stripe.APIError) and (exc.http_status or 500) >= 500:
        return GatewayUnavailable(f"Stripe failed to answer ({exc.http_status}): {exc}")
    return GatewayError(f"Stripe refused the request: {exc.user_message or exc}")


def _decline_code(exc: stripe.CardError) -> str:
    error = _data(exc.error)
    return error.get("decline_code") or exc.code or error.get("code") or ""


def _customer_for_key(idempotency_key: str):
    """(customer id, attempted_at) of our Payment with this key, or (None, None)."""
    from invoices.models import Payment

    payment = Payment.objects.select_related("account").filter(idempotency_key=idempotency_key).first()
    if payment is None:
        return None, None
    customer_id = payment.account.gateway_customer_id
    if not customer_id:
        from djstripe.models import Customer

        customer = Customer.objects.filter(subscriber=payment.account).order_by("-created").first()
        customer_id = customer.id if customer else None
    return customer_id, payment.attempted_at
