"""Writes for what the customer sets on the billing page: billing details (INV-4), the billing
time zone (D-5) and the e-mail switches for non-billing kinds (NOT-2). Each change is audited (ACC-3).

Billing details are copied onto an invoice when it is issued (invoices.services.invoice_issue),
so a change shows on later invoices only: issued invoices never change (INV-2).
"""

from django.db import transaction
from django.utils import timezone

from core import zones

from .audit import audit
from .countries import COUNTRIES
from .models import Account
from .services import AccountError


def _locked(account) -> Account:
    return Account.objects.select_for_update().get(pk=account.pk)


@transaction.atomic
def billing_details_update(account, *, company: str, address: str, country: str, vat_id: str,
                           actor=None, now=None) -> Account:
    """INV-4: the owner's company, address, country (ISO 3166-1 alpha-2) and VAT ID."""
    values = {
        "company": (company or "").strip(),
        "address": (address or "").strip(),
        "country": (country or "").strip().upper(),
        "vat_id": "".join((vat_id or "").split()).upper(),  # "DE 123 456 789" -> "DE123456789"
    }
    if values["country"] and values["country"] not in COUNTRIES:
        raise AccountError(f"{values['country']!r} is not a country code (ISO 3166-1 alpha-2, like US or DE).")
    return _update_audited(account, values, action="billing_details.updated", actor=actor, now=now)


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


def _update_audited(account, values: dict, *, action: str, actor, now, reason: str = "") -> Account:
    """Set `values` on the locked account and audit the change; nothing when nothing changes."""
    account = _locked(account)
    before = {name: getattr(account, name) for name in values}
    if before == values:
        return account
    for name, value in values.items():
        setattr(account, name, value)
    account.save(update_fields=list(values))
    audit(account=account, actor=actor, action=action, obj=account, before=before, after=values, reason=reason,
          now=now or timezone.now())
    return account


def email_unsubscribe_all(account, *, actor=None, now=None) -> Account:
    """NOT-2: "unsubscribe from all" turns off every non-billing kind; billing e-mail stays."""
    return email_preferences_update(account, usage_alerts=False, product_news=False, actor=actor, now=now,
                                    source="unsubscribe from all")
