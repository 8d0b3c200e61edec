"""Filters for e-mail templates: money through format_money (D-3), dates in the account's zone (D-2)."""

from decimal import Decimal

from django import template

from core.money import format_money
from notifications.kinds import account_zone, human_date, local_day

register = template.Library()


@register.filter
def money(amount, currency="USD"):
    if amount in (None, ""):
        return ""
    return format_money(Decimal(str(amount)), currency or "USD")


@register.filter
def day(value, account=None):
    """`value` (a datetime) as the account's calendar date: "May 1, 2026"."""
    zone = account_zone(account)
    return human_date(local_day(value, zone))
