"""Writes for what the customer sets on the billing page: billing details (INV-4, TAX-4, PAY-5), the
billing time zone (D-5) and the e-mail switches for non-billing kinds (NOT-2). Each change is audited
(ACC-3).

Billing details are copied onto an invoice when it is made (invoices.services.invoice_create),
so a change shows on later invoices only: issued invoices never change (INV-2).
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django_countries.fields import Country

from core import zones
from core.clock import clock

from . import vat
from .audit import audit
from .countries import country_name, is_country
from .locks import account_lock
from .models import Account
from .services import AccountError


class VatIdRefused(AccountError):
    """TAX-4: the VAT ID fails its check; the message is the reason. Nothing was saved."""


def _locked(account) -> Account:
    return account_lock(account.pk)


def billing_details_update(account, *, company: str, address: str, country: str, vat_id: str,
                           billing_email: str | None = None, actor=None, now=None, post=None) -> Account:
    """INV-4: the owner's company, address, country (ISO 3166-1 alpha-2) and VAT ID; PAY-5: the
    optional billing e-mail address (None leaves it as it is).

    TAX-4: the VAT ID is checked for its country's format and check digit (python-stdnum, offline)
    and stored compact ("fr 40 303 265 045" -> "FR40303265045"); one that fails is refused with the
    reason (`VatIdRefused`) and nothing is saved. With `VAT_VIES_CHECK` on, a changed EU VAT ID is
    also asked of VIES, before any transaction opens: "not registered" is refused too; no answer
    keeps the offline check (VIES is often down for a member state) and records no consultation."""
    now = clock(now)
    values = {
        "company": (company or "").strip(),
        "address": (address or "").strip(),
        "country": (country or "").strip().upper(),
    }
    if values["country"] and not is_country(values["country"]):
        raise AccountError(f"{values['country']!r} is not a country code (ISO 3166-1 alpha-2, like US or DE).")
    try:
        values["vat_id"] = vat.vat_id_normalise(values["country"], vat_id,
                                                country_name=country_name(values["country"]))
    except vat.VatIdError as exc:
        raise VatIdRefused(str(exc)) from None
    if billing_email is not None:
        values["billing_email"] = (billing_email or "").strip()
        if values["billing_email"]:
            try:
                validate_email(values["billing_email"])
            except ValidationError:
                raise AccountError(f"{values['billing_email']!r} is not an e-mail address.") from None
    checked = _vies(account, values["country"], values["vat_id"], now=now, post=post)
    with transaction.atomic():
        return _update_audited(account, values, action="billing_details.updated", actor=actor, now=now,
                               unaudited=checked)


def billing_details_notes(account) -> list[str]:
    """What the billing details page says after a save."""
    notes = ["Billing details saved. They appear on invoices issued from now on."]
    if account.vat_id and settings.VAT_VIES_CHECK and vat.is_eu(account.country):
        if account.vat_id_checked_at:
            notes.append(f"VIES confirmed your VAT ID (consultation {account.vat_id_consultation or 'recorded'}).")
        else:
            notes.append("VIES could not be reached to confirm your VAT ID just now; its format and check digit "
                         "are valid, which is what invoices need.")
    return notes


def _vies(account, country: str, vat_id: str, *, now, post) -> dict:
    """The optional live check (VAT_VIES_CHECK), outside any transaction: the columns to save with
    the details. An ID already confirmed is not asked again; a new ID clears the old confirmation."""
    if not vat_id or vat_id == account.vat_id and account.vat_id_checked_at:
        return {}
    cleared = {"vat_id_checked_at": None, "vat_id_consultation": ""}
    if not settings.VAT_VIES_CHECK or not vat.is_eu(country):
        return cleared
    try:
        answer = vat.vies_check(vat_id, requester=settings.SELLER_TAX_ID, url=settings.VAT_VIES_URL,
                                timeout=settings.VAT_VIES_TIMEOUT, post=post)
    except vat.ViesUnavailable:
        return cleared
    if not answer.valid:
        raise VatIdRefused(f"{vat_id} is well formed, but VIES, the EU's register of VAT IDs, says it is not "
                           "registered. Check the number with your tax office.")
    return {"vat_id_checked_at": now, "vat_id_consultation": answer.consultation[:60]}


@transaction.atomic
def billing_zone_update(account, zone_name: str, *, actor=None, now=None, reason: str = "") -> Account:
    """D-5: the account's billing time zone, an IANA name (`core.zones.choices`). The billing engine
    calls this (`subscriptions.billing.set_billing_zone`) under its locks, after keeping the zone of
    a next period that is already invoiced: a subscription takes the new zone from its next period."""
    zone_name = zones.current_name(zone_name)
    if not zones.is_zone(zone_name):
        raise AccountError(f"{zone_name!r} is not a time zone we know (an IANA name, like Europe/Berlin).")
    return _update_audited(account, {"timezone": zone_name}, action="billing_zone.updated", actor=actor, now=now,
                           reason=reason)


@transaction.atomic
def email_preferences_update(account, *, usage_alerts: bool, product_news: bool, actor=None,
                             now=None, source: str = "billing page") -> Account:
    """NOT-2: switch the non-billing e-mail kinds on or off. Billing e-mail always goes out (NOT-1)."""
    values = {"email_usage_alerts": bool(usage_alerts), "email_product_news": bool(product_news)}
    return _update_audited(account, values, action="email_preferences.updated", actor=actor, now=now,
                           reason=source)


def _update_audited(account, values: dict, *, action: str, actor, now, reason: str = "",
                    unaudited: dict | None = None) -> Account:
    """Set `values` (and `unaudited`, saved with them) on the locked account and audit the change;
    nothing when nothing changes."""
    account = _locked(account)
    before = {name: _plain(getattr(account, name)) for name in values}
    if before == values:
        return account
    for name, value in {**values, **(unaudited or {})}.items():
        setattr(account, name, value)
    account.save(update_fields=[*values, *(unaudited or {})])
    audit(account=account, actor=actor, action=action, obj=account, before=before, after=values, reason=reason,
          now=clock(now))
    return account


def _plain(value):
    """A value for the audit's JSON: django-countries' Country as its code."""
    return value.code if isinstance(value, Country) else value


def email_unsubscribe_all(account, *, actor=None, now=None) -> Account:
    """NOT-2: "unsubscribe from all" turns off every non-billing kind; billing e-mail stays."""
    return email_preferences_update(account, usage_alerts=False, product_news=False, actor=actor, now=now,
                                    source="unsubscribe from all")
