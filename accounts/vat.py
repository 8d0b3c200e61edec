"""VAT IDs (TAX-3, TAX-4): checked offline with python-stdnum (format and check digit per country),
optionally confirmed live with the EU's VIES service.

`vat_id_normalise` is what the billing details page calls: it refuses an ID with the reason a
customer can act on, and returns the compact form that is stored ("fr 40 303 265 045" ->
"FR40303265045"). `vat_id_valid` is what the tax rules call on stored IDs: accounts saved before
the check existed may hold anything ("not a vat id !!"), and such an ID never earns reverse charge.

No ORM here; `vies_check` is the only function that leaves the machine, and only when
`VAT_VIES_CHECK` is on (off by default: the offline check is the policy's test, TAX-3).
"""

from dataclasses import dataclass

import stdnum
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import InvalidChecksum, InvalidLength, ValidationError

from .countries import country_name as country_name_of

# ISO 3166-1 codes of the EU member states. stdnum's list uses VAT prefixes: Greece is "EL" in a
# VAT ID but "GR" as a country, and "XI" (Northern Ireland, goods only) is no member state.
EU_MEMBER_STATES = frozenset(code.upper() for code in eu_vat.MEMBER_STATES if code != "xi")
VAT_PREFIX = {"GR": "EL"}  # country code -> the prefix its VAT IDs carry


class VatIdError(ValueError):
    """A VAT ID that cannot be used; the message says why, for the customer."""


def _code(country) -> str:
    """A country code as text: django-countries hands a `Country`, settings a str."""
    return str(country or "").upper()


def is_eu(country: str) -> bool:
    return _code(country) in EU_MEMBER_STATES


def _compact(vat_id: str) -> str:
    return "".join(ch for ch in (vat_id or "").upper() if ch.isalnum())


def vat_id_normalise(country: str, vat_id: str, *, country_name: str = "") -> str:
    """The VAT ID in compact form, or VatIdError with the reason (TAX-4). "" stays "".

    EU countries: the ID must carry the country's prefix (added when the customer left it out)
    and pass stdnum's format and check-digit test for that country. Elsewhere: checked by stdnum
    when it knows the country's tax number, else kept as typed (letters and digits only).

    >>> vat_id_normalise("FR", "fr 40 303 265 045"), vat_id_normalise("FR", "40303265045")
    ('FR40303265045', 'FR40303265045')
    >>> vat_id_normalise("GR", "094259216")
    'EL094259216'
    >>> vat_id_normalise("AT", "ATU13585628")
    Traceback (most recent call last):
    ...
    accounts.vat.VatIdError: The check digit of ATU13585628 is wrong: please check the VAT ID for a typo.
    """
    compact = _compact(vat_id)
    if not compact:
        return ""
    country = _code(country)
    where = country_name or country
    if not country:
        raise VatIdError("Choose the country of your billing address first: a VAT ID is checked against it.")
    if len(compact) > 30:
        raise VatIdError("A VAT ID has at most 30 letters and digits.")
    if country in EU_MEMBER_STATES:
        prefix = VAT_PREFIX.get(country, country)
        if not compact[:2].isalpha():
            compact = prefix + compact
        if compact[:2] != prefix:
            if compact[:2].lower() in eu_vat.MEMBER_STATES | {"el"}:
                raise VatIdError(f"A VAT ID from {where} starts with {prefix}; {compact} is from another country. "
                                 "Choose the country the VAT ID was issued in.")
            raise VatIdError(f"{compact} is not written like a VAT ID from {where}, which starts with {prefix}.")
        return _checked(eu_vat, compact, where)
    issued_in = {prefix: code for code, prefix in VAT_PREFIX.items()}.get(compact[:2], compact[:2])
    if issued_in in EU_MEMBER_STATES and eu_vat.is_valid(compact):  # an EU VAT ID on a non-EU address
        raise VatIdError(f"{compact} is a VAT ID from {country_name_of(issued_in)}, not from {where}. "
                         "Choose the country the VAT ID was issued in.")
    module = stdnum.get_cc_module(country.lower(), "vat")
    if module is not None:
        _checked(module, compact, where)
    return compact  # as typed (letters and digits): stdnum's compact form may drop a national prefix


def _checked(module, compact: str, where: str) -> str:
    try:
        return module.compact(module.validate(compact))
    except InvalidChecksum:
        raise VatIdError(f"The check digit of {compact} is wrong: please check the VAT ID for a typo.") from None
    except InvalidLength:
        raise VatIdError(f"{compact} has the wrong number of characters for a VAT ID from {where}.") from None
    except ValidationError:
        raise VatIdError(f"{compact} is not written like a VAT ID from {where}.") from None


def vat_id_valid(country: str, vat_id: str) -> str:
    """The compact VAT ID if it passes `vat_id_normalise` for `country`, else "" (TAX-3: an ID that
    fails the check is as good as none).

    >>> vat_id_valid("FR", "FR40303265045"), vat_id_valid("AT", "ATU13585628"), vat_id_valid("DE", "not a vat id !!")
    ('FR40303265045', '', '')
    """
    try:
        return vat_id_normalise(country, vat_id)
    except VatIdError:
        return ""


# --- the optional live check (VIES) -------------------------------------------------------------------


class ViesUnavailable(Exception):
    """VIES did not answer (it is often down for a member state): the offline check stands."""


@dataclass(frozen=True)
class ViesAnswer:
    valid: bool
    consultation: str  # VIES's request identifier: the proof that the ID was checked, kept with the account


def vies_check(vat_id: str, *, requester: str, url: str, timeout: float, post=None) -> ViesAnswer:
    """Ask VIES (the EU's REST service) whether `vat_id` is registered. With the seller's own VAT
    ID as `requester`, VIES returns a consultation number. `post` is `requests.post` unless given."""
    if post is None:
        import requests

        post = requests.post
    payload = {"countryCode": vat_id[:2], "vatNumber": vat_id[2:]}
    if requester and len(requester) > 2:
        payload |= {"requesterMemberStateCode": requester[:2], "requesterNumber": requester[2:]}
    try:
        response = post(url, json=payload, timeout=timeout)
        response.raise_for_status()
        body = response.json()
    except Exception as exc:  # any network, HTTP or JSON failure: VIES did not answer
        raise ViesUnavailable(str(exc)) from exc
    if not isinstance(body, dict) or "valid" not in body or body.get("userError") not in (None, "VALID", "INVALID"):
        raise ViesUnavailable(f"unexpected answer: {str(body)[:200]}")  # e.g. userError MS_UNAVAILABLE
    return ViesAnswer(bool(body["valid"]), str(body.get("requestIdentifier") or ""))
