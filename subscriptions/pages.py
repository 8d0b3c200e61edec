"""What every billing page shares: rendering in the account's billing time zone (D-2), the current
subscription or a 404, money and local dates as the pages print them, and the refusal page."""

from decimal import Decimal

from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from core.money import format_money

from . import billing, selectors, terms


def page_render(request, template: str, context: dict, status: int = 200):
    """Render with dates in the account's billing time zone (D-2)."""
    context.setdefault("account", request.account)
    context.setdefault("membership", request.membership)
    context.setdefault("can", selectors.role_flags(request.membership))
    with timezone.override(request.account.zone):
        return render(request, template, context, status=status)


def page_subscription(request):
    sub = selectors.subscription_current(request.account)
    if sub is None:
        raise Http404("This account has no subscription.")
    return sub


def money_text(amount, currency="USD") -> str:
    return format_money(Decimal(amount), currency)


def page_refused(request, exc: Exception, *, status: int = 409):
    """DWN-3: what to remove, with a link to the property list; PAY-6: a link to add a card."""
    add_card = isinstance(exc, billing.PaymentMethodRequired)
    return page_render(request, "billing/refused.html", {"message": str(exc), "add_card": add_card}, status=status)


def local_text(request, moment) -> str:
    return f"{terms.local_date(request.account, moment):%Y-%m-%d}"
