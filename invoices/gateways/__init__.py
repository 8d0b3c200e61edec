"""Payment gateways behind one interface. The engine owns the billing logic; a gateway only
moves money. `get_gateway()` returns the configured one (PAYMENT_GATEWAY)."""

from django.conf import settings
from django.utils.module_loading import import_string

from .base import (
    CardDeclined,
    CardDetails,
    ChargeRequest,
    ChargeResult,
    Gateway,
    GatewayError,
    GatewayUnavailable,
    RefundResult,
)

GATEWAYS = {
    "sandbox": "invoices.gateways.sandbox.SandboxGateway",
    "stripe": "invoices.gateways.stripe.StripeGateway",
}

_cache: dict[str, Gateway] = {}


def get_gateway(name: str | None = None) -> Gateway:
    name = name or settings.PAYMENT_GATEWAY
    if name not in GATEWAYS:
        raise GatewayError(f"Unknown PAYMENT_GATEWAY {name!r}; use one of {', '.join(GATEWAYS)}.")
    if name not in _cache:
        _cache[name] = import_string(GATEWAYS[name])()
    return _cache[name]


__all__ = [
    "CardDeclined",
    "CardDetails",
    "ChargeRequest",
    "ChargeResult",
    "Gateway",
    "GatewayError",
    "GatewayUnavailable",
    "RefundResult",
    "get_gateway",
]
