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
def day(value, zone=None):
    """`value` (a datetime) as a calendar date of `zone` (the account's billing time zone when the
    e-mail's event happened, NOT-4; an account: its zone now): "May 1, 2026"."""
    if zone is None or hasattr(zone, "timezone"):
        zone = account_zone(zone)
    return human_date(local_day(value, zone))
