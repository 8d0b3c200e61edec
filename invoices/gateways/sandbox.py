"""The built-in sandbox gateway: the default, works with no keys and no network.

It keeps its state in the database (SandboxCard, SandboxCharge, SandboxRefund), so idempotency
holds across processes, and it understands Stripe's test payment-method tokens (PAY-1).
`faults()` switches on failure modes for tests: a timeout after the charge went through, an
unreachable gateway, or a crash after N charges.
"""

import contextlib
import hashlib
import secrets
import threading
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from core import sql
from invoices.models import SandboxCard, SandboxCharge, SandboxRefund

from .base import (
    CardDeclined,
    CardDetails,
    ChargeRequest,
    ChargeResult,
    GatewayError,
    GatewayUnavailable,
    RefundResult,
)


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    attach_decline: str = ""  # decline code when attached
    charge_decline: str = ""  # decline code on every charge


# Stripe's test tokens (PAY-1), with Stripe's behaviour for each.
TEST_CARDS = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", attach_decline="card_declined"),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard("visa", "9995", charge_decline="insufficient_funds"),
    "pm_card_chargeCustomerFail": TestCard("visa", "0341", charge_decline="card_declined"),
}

DECLINE_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
}


class SimulatedCrash(BaseException):
    """The crash fault: the process "dies" right after the gateway charged. A BaseException, like
    a killed worker, so nothing in the run catches it."""


_faults = threading.local()


@contextlib.contextmanager
def faults(*, timeout_after_charge: int = 0, unavailable: bool = False, crash_after_charges: int | None = None):
    """Inject gateway faults for the duration of the block (this thread only).

    timeout_after_charge: the next N charges go through at the "bank" but the caller gets a
        timeout (GatewayUnavailable), as when a response is lost (PAY-2).
    unavailable: every call raises GatewayUnavailable and nothing is recorded.
    crash_after_charges: after N successful charges, the next charge is made and then
        SimulatedCrash is raised (a worker dying between charging and recording, REN-3).
    """
    previous = getattr(_faults, "state", None)
    _faults.state = {
        "timeout_after_charge": timeout_after_charge,
        "unavailable": unavailable,
        "crash_after_charges": crash_after_charges,
    }
    try:
        yield _faults.state
    finally:
        _faults.state = previous


def _state() -> dict:
    return getattr(_faults, "state", None) or {}


def fingerprint_for(token: str) -> str:
    # One card, one fingerprint: the same test token always maps to the same "card", as on Stripe.
    return "fp_" + hashlib.sha256(token.encode()).hexdigest()[:16]


class SandboxGateway:
    name = "sandbox"

    def _check_reachable(self):
        if _state().get("unavailable"):
            raise GatewayUnavailable("The payment gateway did not answer (sandbox fault).")

    def ensure_customer(self, account) -> str:
        return account.gateway_customer_id or f"cus_sbx_{account.pk}"

    def attach(self, customer_id: str, token: str) -> CardDetails:
        """`token` is one of TEST_CARDS, optionally with a label (`pm_card_visa:alice`): another
        physical card of the same kind, with its own fingerprint (demos and the simulation)."""
        self._check_reachable()
        card = TEST_CARDS.get(token.split(":", 1)[0])
        if card is None:
            raise CardDeclined(
                f"Unknown test token {token!r}. Use one of: {', '.join(TEST_CARDS)}.", code="invalid_token"
            )
        if card.attach_decline:
            raise CardDeclined(DECLINE_MESSAGES[card.attach_decline], code=card.attach_decline)
        stored = SandboxCard.objects.create(
            gateway_id="pm_sbx_" + secrets.token_hex(8), customer=customer_id, token=token
        )
        year = timezone.now().year + 3
        return CardDetails(stored.gateway_id, card.brand, card.last4, 12, year, fingerprint_for(token))

    def detach(self, payment_method_id: str) -> None:
        """Remove a card from its customer, as Stripe's detach does: it is never charged again (a
        charge to it is declined). Detaching a card that is already detached changes nothing."""
        self._check_reachable()
        if not SandboxCard.objects.filter(gateway_id=payment_method_id).exists():
            raise GatewayError(f"No such payment method: {payment_method_id}.")
        SandboxCard.objects.filter(gateway_id=payment_method_id).update(customer="")

    def charge(self, *, customer_id, payment_method_id, amount, currency, idempotency_key, description=""):
        self._check_reachable()
        existing = SandboxCharge.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.amount != amount:
                raise GatewayError("Idempotency key reused with a different amount.")
            return self._result(existing)
        stored_card = SandboxCard.objects.filter(gateway_id=payment_method_id, customer=customer_id).first()
        decline = self._decline_for(stored_card)
        try:
            with transaction.atomic():
                record = SandboxCharge.objects.create(
                    reference="ch_sbx_" + secrets.token_hex(10),
                    idempotency_key=idempotency_key,
                    card=stored_card,
                    amount=amount,
                    currency=currency,
                    succeeded=not decline,
                    decline_code=decline,
                )
        except IntegrityError:  # a concurrent call with the same key won: return its result
            return self._result(SandboxCharge.objects.get(idempotency_key=idempotency_key))
        state = _state()
        if state.get("timeout_after_charge"):
            state["timeout_after_charge"] -= 1
            raise GatewayUnavailable("The payment gateway timed out (sandbox fault).")
        if state.get("crash_after_charges") is not None:
            if state["crash_after_charges"] <= 0:
                raise SimulatedCrash("Simulated crash after charging (sandbox fault).")
            state["crash_after_charges"] -= 1
        return self._result(record)

    def charge_many(self, requests: list[ChargeRequest]) -> list[ChargeResult | None]:
        """`charge` for many payments in three statements and no model instance per charge (the
        billing run). The same idempotency rules: a key seen before returns its first result."""
        if _state():  # injected faults are counted per charge: keep their exact behaviour
            return [self._charge_or_unknown(request) for request in requests]
        keys = [request.idempotency_key for request in requests]
        results = {}
        for key, amount, reference, succeeded, decline in SandboxCharge.objects.filter(
                idempotency_key__any=keys).values_list("idempotency_key", "amount", "reference", "succeeded",
                                                      "decline_code"):
            results[key] = (amount, ChargeResult(succeeded, reference, decline, DECLINE_MESSAGES.get(decline, "")))
        cards = {(gateway_id, customer): (pk, token) for gateway_id, customer, pk, token in SandboxCard.objects.filter(
            gateway_id__any={request.payment_method_id for request in requests}).values_list(
            "gateway_id", "customer", "pk", "token")}
        new = []
        for request in requests:
            existing = results.get(request.idempotency_key)
            if existing is not None:
                if existing[0] != request.amount:
                    raise GatewayError("Idempotency key reused with a different amount.")
                continue
            card_id, token = cards.get((request.payment_method_id, request.customer_id), (None, None))
            decline = self._decline_for_token(token)
            reference = "ch_sbx_" + secrets.token_hex(10)
            new.append((reference, request.idempotency_key, card_id, request.amount, request.currency, not decline,
                        decline))
            results[request.idempotency_key] = (request.amount, ChargeResult(
                not decline, reference, decline, DECLINE_MESSAGES.get(decline, "")))
        columns = {"reference": "text", "idempotency_key": "text", "card_id": "id", "amount": "decimal",
                   "currency": "text", "succeeded": "bool", "decline_code": "text"}
        try:
            with transaction.atomic():
                for chunk in sql.chunks(new, len(columns)):
                    source, params = sql.rows_from(columns, chunk)
                    sql.run(f"INSERT INTO {SandboxCharge._meta.db_table} ({', '.join(columns)}, refunded_amount, "
                            f"created_at) SELECT {', '.join(columns)}, 0, %s FROM {source}", [timezone.now(), *params])
        except IntegrityError:  # a concurrent caller used some of these keys: one at a time
            return [self._charge_or_unknown(request) for request in requests]
        return [results[key][1] for key in keys]

    def _charge_or_unknown(self, request: ChargeRequest) -> ChargeResult | None:
        try:
            return self.charge(customer_id=request.customer_id, payment_method_id=request.payment_method_id,
                               amount=request.amount, currency=request.currency,
                               idempotency_key=request.idempotency_key, description=request.description)
        except GatewayUnavailable:
            return None

    @classmethod
    def _decline_for(cls, stored_card) -> str:
        return cls._decline_for_token(stored_card.token if stored_card else None)

    @staticmethod
    def _decline_for_token(token: str | None) -> str:
        test_card = TEST_CARDS.get(token.split(":", 1)[0]) if token else None
        return "card_declined" if test_card is None else test_card.charge_decline

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        self._check_reachable()
        record = SandboxCharge.objects.filter(idempotency_key=idempotency_key).first()
        return self._result(record) if record else None

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> RefundResult:
        self._check_reachable()
        existing = SandboxRefund.objects.filter(idempotency_key=idempotency_key).first()
        if existing:
            return RefundResult(existing.reference, existing.amount)
        with transaction.atomic():
            charge = SandboxCharge.objects.select_for_update().get(reference=reference)
            if not charge.succeeded:
                raise GatewayError("Only a succeeded charge can be refunded.")
            if charge.refunded_amount + amount > charge.amount:
                raise GatewayError("The refund is larger than what is left of the charge.")
            charge.refunded_amount += amount
            charge.save(update_fields=["refunded_amount"])
            refund = SandboxRefund.objects.create(
                reference="re_sbx_" + secrets.token_hex(10),
                idempotency_key=idempotency_key,
                charge=charge,
                amount=amount,
            )
        return RefundResult(refund.reference, refund.amount)

    @staticmethod
    def _result(record) -> ChargeResult:
        return ChargeResult(
            succeeded=record.succeeded,
            reference=record.reference,
            decline_code=record.decline_code,
            decline_message=DECLINE_MESSAGES.get(record.decline_code, ""),
        )

