"""Catalog as code: load plans from JSON, idempotently, all or nothing (CAT-1, CAT-2)."""

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.conf import settings
from django.db import transaction

from core.datafiles import json_file_read

from .models import Plan

PLAN_KEYS = {"code", "name", "rank", "currency", "prices", "limits", "overage_per_1000",
             "extra_property_monthly", "trial_days", "public"}
OPTIONAL_KEYS = {"overage_per_1000", "extra_property_monthly", "trial_days", "public", "limits"}
LIMIT_KEYS = {"properties", "sessions", "integrations"}
CYCLES = {"monthly", "yearly"}
MAX_COUNT = 2_147_483_647  # PositiveIntegerField on PostgreSQL
NAME_MAX = Plan._meta.get_field("name").max_length
MAX_FILE_BYTES = 5 * 1024 * 1024  # a catalog of a few plans is a few KB


class CatalogError(ValueError):
    """A bad catalog file. The message names the plan and the field."""


@dataclass(frozen=True)
class CatalogResult:
    created: list[str]
    updated: list[str]
    unchanged: list[str]


def _amount(value, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, float) or isinstance(value, bool):
        raise CatalogError(f"{where}: write amounts as strings like \"14.00\", not numbers ({value!r}).")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise CatalogError(f"{where}: {value!r} is not an amount.") from None
    if not amount.is_finite() or amount < 0:
        raise CatalogError(f"{where}: {value!r} must be zero or more.")
    if amount.as_tuple().exponent < -2:
        raise CatalogError(f"{where}: {value!r} has more than 2 decimal places.")
    # Before quantize: "1e400" is a finite Decimal that no price column (and no quantize) can hold.
    if amount > settings.BILLING_MAX_UNIT_PRICE:
        raise CatalogError(f"{where}: {value!r} is more than the largest price allowed, "
                           f"{settings.BILLING_MAX_UNIT_PRICE:,.2f}.")
    return amount.quantize(Decimal("0.01"))


def _count(value, where: str, *, allow_none=True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CatalogError(f"{where}: {value!r} must be a whole number, 0 or more"
                           f"{' (or null for unlimited)' if allow_none else ''}.")
    if value > MAX_COUNT:  # the column's limit (PositiveIntegerField): a bigger one would fail at the insert
        raise CatalogError(f"{where}: {value} is more than {MAX_COUNT:,}"
                           f"{'; use null for unlimited' if allow_none else ''}.")
    return value


def parse_plan(raw, index: int) -> dict:
    label = f"plans[{index}]"
    if not isinstance(raw, dict):
        raise CatalogError(f"{label}: each plan must be an object.")
    code = raw.get("code")
    if isinstance(code, str):
        label = f"plan {code!r}"
    unknown = set(raw) - PLAN_KEYS
    if unknown:
        raise CatalogError(f"{label}: unknown field(s) {', '.join(sorted(unknown))}.")
    missing = PLAN_KEYS - OPTIONAL_KEYS - set(raw)
    if missing:
        raise CatalogError(f"{label}: missing field(s) {', '.join(sorted(missing))}.")
    if not isinstance(code, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,49}", code):
        raise CatalogError(f"{label}: code must be lower-case letters, digits, - or _ ({code!r}).")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise CatalogError(f"{label}: name must be a non-empty string.")
    hidden = next((i for i, char in enumerate(name) if unicodedata.category(char) in ("Cc", "Cf")), None)
    if hidden is not None:  # a NUL, a line break, a right-to-left override: nothing a customer should be shown
        raise CatalogError(f"{label}: name has an invisible or control character (U+{ord(name[hidden]):04X} at "
                           f"position {hidden + 1}); write the name as plain text.")
    if len(name.strip()) > NAME_MAX:
        raise CatalogError(f"{label}: name is {len(name.strip())} characters; at most {NAME_MAX}.")
    currency = raw["currency"]
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise CatalogError(f"{label}: currency must be a 3-letter code like USD ({currency!r}).")
    prices = raw["prices"]
    if not isinstance(prices, dict) or set(prices) - CYCLES:
        raise CatalogError(f"{label}: prices must be an object with monthly and/or yearly.")
    monthly = _amount(prices.get("monthly"), f"{label}: prices.monthly")
    yearly = _amount(prices.get("yearly"), f"{label}: prices.yearly")
    if monthly is None and yearly is None:
        raise CatalogError(f"{label}: prices needs a monthly or a yearly price.")
    limits = raw.get("limits") or {}
    if not isinstance(limits, dict) or set(limits) - LIMIT_KEYS:
        raise CatalogError(f"{label}: limits may only have {', '.join(sorted(LIMIT_KEYS))}.")
    public = raw.get("public", True)
    if not isinstance(public, bool):
        raise CatalogError(f"{label}: public must be true or false.")
    return {
        "code": code,
        "name": name.strip(),
        "rank": _count(raw["rank"], f"{label}: rank", allow_none=False),
        "currency": currency,
        "monthly_price": monthly,
        "yearly_price": yearly,
        "limit_properties": _count(limits.get("properties"), f"{label}: limits.properties"),
        "limit_sessions": _count(limits.get("sessions"), f"{label}: limits.sessions"),
        "limit_integrations": _count(limits.get("integrations"), f"{label}: limits.integrations"),
        "overage_per_1000": _amount(raw.get("overage_per_1000"), f"{label}: overage_per_1000"),
        "extra_property_monthly": _amount(raw.get("extra_property_monthly"), f"{label}: extra_property_monthly"),
        "trial_days": _count(raw.get("trial_days", 0), f"{label}: trial_days", allow_none=False),
        "public": public,
    }


def catalog_parse(data) -> list[dict]:
    if not isinstance(data, dict) or set(data) != {"plans"} or not isinstance(data["plans"], list):
        raise CatalogError('The catalog must be an object with one key, "plans", holding a list.')
    plans = [parse_plan(raw, i) for i, raw in enumerate(data["plans"])]
    seen = set()
    for plan in plans:
        if plan["code"] in seen:
            raise CatalogError(f"plan {plan['code']!r}: code appears twice in the file.")
        seen.add(plan["code"])
    return plans


def catalog_load(data) -> CatalogResult:
    """Insert or update each plan by code, in one transaction: a bad file writes nothing."""
    plans = catalog_parse(data)
    created, updated, unchanged = [], [], []
    with transaction.atomic():
        existing = {p.code: p for p in Plan.objects.select_for_update().filter(code__in=[p["code"] for p in plans])}
        for values in plans:
            plan = existing.get(values["code"])
            if plan is None:
                Plan.objects.create(**values)
                created.append(values["code"])
                continue
            if plan.account_id is not None:
                raise CatalogError(f"plan {values['code']!r}: that code belongs to a custom plan.")
            changed = [k for k, v in values.items() if getattr(plan, k) != v]
            if changed:
                for key in changed:
                    setattr(plan, key, values[key])
                plan.save()
                updated.append(values["code"])
            else:
                unchanged.append(values["code"])
    return CatalogResult(created, updated, unchanged)


def catalog_load_file(path: str | Path) -> CatalogResult:
    """Read, check and load a catalog file. Every problem with the file is a CatalogError whose
    message says what to fix; nothing is written unless the whole file is good."""
    data = json_file_read(path, what="a catalog", max_bytes=MAX_FILE_BYTES, error=CatalogError)
    return catalog_load(data)


DEMO_CATALOG = Path(__file__).resolve().parent / "catalog" / "demo.json"
