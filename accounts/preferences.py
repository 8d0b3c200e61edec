"""Writes for what the customer sets on the billing page: billing details (INV-4) and the e-mail
switches for non-billing kinds (NOT-2). Each change is audited (ACC-3).

Billing details are copied onto an invoice when it is issued (invoices.services.invoice_issue),
so a change shows on later invoices only: issued invoices never change (INV-2).
"""

from django.db import transaction
from django.utils import timezone

from .models import Account
from .services import AccountError, audit

BILLING_DETAIL_FIELDS = ("company", "address", "country", "vat_id")
# NOT-2: the non-billing e-mail kinds a customer may switch off. Billing e-mail has no switch (NOT-1).
EMAIL_PREFERENCE_FIELDS = ("email_usage_alerts", "email_product_news")


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
    if values["country"] and (len(values["country"]) != 2 or not values["country"].isalpha()):
        raise AccountError("Enter the country as a two-letter code, like US or DE.")
    account = _locked(account)
    before = {name: getattr(account, name) for name in BILLING_DETAIL_FIELDS}
    if before == values:
        return account
    for name, value in values.items():
        setattr(account, name, value)
    account.save(update_fields=list(BILLING_DETAIL_FIELDS))
    audit(account=account, actor=actor, action="billing_details.updated", obj=account, before=before,
          after=values, now=now or timezone.now())
    return account


@transaction.atomic
def email_preferences_update(account, *, usage_alerts: bool, product_news: bool, actor=None,
                             now=None, source: str = "billing page") -> Account:
    """NOT-2: switch the non-billing e-mail kinds on or off. Billing e-mail always goes out (NOT-1)."""
    values = {"email_usage_alerts": bool(usage_alerts), "email_product_news": bool(product_news)}
    account = _locked(account)
    before = {name: getattr(account, name) for name in EMAIL_PREFERENCE_FIELDS}
    if before == values:
        return account
    for name, value in values.items():
        setattr(account, name, value)
    account.save(update_fields=list(EMAIL_PREFERENCE_FIELDS))
    audit(account=account, actor=actor, action="email_preferences.updated", obj=account, before=before,
          after=values, reason=source, now=now or timezone.now())
    return account


def email_unsubscribe_all(account, *, actor=None, now=None) -> Account:
    """NOT-2: "unsubscribe from all" turns off every non-billing kind; billing e-mail stays."""
    return email_preferences_update(account, usage_alerts=False, product_news=False, actor=actor, now=now,
                                    source="unsubscribe from all")
