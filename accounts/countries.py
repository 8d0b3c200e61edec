"""Countries for billing details and invoices (INV-4, TAX-1): ISO 3166-1 codes and their ISO names,
from django-countries (kept up to date with ISO 3166; the names are the ones invoices print).

An account stores the alpha-2 code; codes saved before django-countries came in are kept as they
are (they were ISO codes already) and print by name like any other."""

import unicodedata

from django_countries import countries


def is_country(code: str) -> bool:
    return bool(code) and countries.alpha2((code or "").upper()) == (code or "").upper()


def country_name(code: str) -> str:
    """"Germany" for "DE"; the code itself if ISO 3166 has no such country (data from before the check)."""
    code = (code or "").upper()
    return countries.name(code) or code


def _sort_key(name: str) -> str:
    return unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().casefold()  # Åland by A


def country_choices() -> list[tuple[str, str]]:
    """(code, "Name (CODE)") sorted by name, for a select."""
    return sorted(((c.code, f"{c.name} ({c.code})") for c in countries), key=lambda item: _sort_key(item[1]))
