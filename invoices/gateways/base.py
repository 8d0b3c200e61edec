"""The gateway contract. Shaped after Stripe's PaymentIntents: a charge is an off-session
payment confirmed at once and identified by the caller's idempotency key, so that an unknown
outcome (a timeout, a crash) can be settled by asking the gateway about that key (PAY-2)."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


class GatewayError(Exception):
    """The gateway refused the request for a reason that is not the card's."""


class GatewayUnavailable(GatewayError):
    """No answer (timeout, connection lost): the outcome is unknown and must be settled with
    `find_charge(idempotency_key)` before any retry."""


class CardDeclined(GatewayError):
    """A card was refused when attached. `code` is Stripe's decline code."""

    def __init__(self, message: str, code: str = "card_declined"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CardDetails:
    gateway_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str


@dataclass(frozen=True)
class ChargeResult:
    succeeded: bool
    reference: str  # the gateway's id for the attempt (a PaymentIntent id on Stripe)
    decline_code: str = ""
    decline_message: str = ""


@dataclass(frozen=True)
class ChargeRequest:
    """One charge of a batch (`charge_many`): the arguments of `charge`."""

    customer_id: str
    payment_method_id: str
    amount: Decimal
    currency: str
    idempotency_key: str
    description: str = ""


@dataclass(frozen=True)
class RefundResult:
    reference: str
    amount: Decimal


class Gateway(Protocol):
    name: str

    def ensure_customer(self, account) -> str:
        """Return the gateway's customer id for the account, creating it when missing."""

    def attach(self, customer_id: str, token: str) -> CardDetails:
        """Attach a payment method from a token (e.g. `pm_card_visa`); raise CardDeclined."""

    def detach(self, payment_method_id: str) -> None:
        """Remove a card from its customer at the gateway (PAY-5); it cannot be charged afterwards."""

    def charge(
        self,
        *,
        customer_id: str,
        payment_method_id: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        description: str = "",
    ) -> ChargeResult:
        """Charge off-session, confirmed at once. The same key never charges twice: a repeat
        returns the first attempt's result. Raises GatewayUnavailable when the outcome is unknown."""

    # Optional: `charge_many(requests: list[ChargeRequest]) -> list[ChargeResult | None]`, the
    # results in the order of the requests, None where the outcome is unknown. The billing run
    # uses it when a gateway has it (the sandbox, Stripe); otherwise it calls `charge` once per
    # payment. Its requests are first sends of attempts recorded moments ago: a gateway may rely on
    # its own idempotency window for them (Stripe: 24 h) instead of looking each key up first.

    def find_charge(self, idempotency_key: str) -> ChargeResult | None:
        """The outcome of the attempt made with this key, or None if the gateway never saw it.
        Raises GatewayUnavailable if it cannot tell now."""

    def refund(self, *, reference: str, amount: Decimal, idempotency_key: str) -> RefundResult:
        """Refund (part of) a succeeded charge. The same key never refunds twice."""
