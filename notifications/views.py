"""One-click unsubscribe (NOT-2). The link carries a signature over (account, category), so it
works without logging in and only for its own account and category. Billing e-mail has no link."""

from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounts.models import Account

from .models import Category
from .services import preference_set, unsubscribe_token_valid


def _checked(request, account_id: int, category: str, token: str):
    if not unsubscribe_token_valid(account_id, category, token):
        return None, render(request, "notifications/unsubscribe_invalid.html", status=403)
    return get_object_or_404(Account, pk=account_id), None


@csrf_exempt  # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" without a CSRF token
def unsubscribe(request, account_id: int, category: str, token: str):
    if request.method not in ("GET", "POST"):
        return HttpResponseNotAllowed(["GET", "POST"])
    account, refused = _checked(request, account_id, category, token)
    if refused:
        return refused
    account = preference_set(account=account, category=category, enabled=False, source="one-click unsubscribe link")
    return render(request, "notifications/unsubscribe_done.html", {
        "account": account, "category_label": Category(category).label, "subscribed": False,
        "account_id": account_id, "category": category, "token": token,
    })


@require_POST
def resubscribe(request, account_id: int, category: str, token: str):
    account, refused = _checked(request, account_id, category, token)
    if refused:
        return refused
    account = preference_set(account=account, category=category, enabled=True, source="resubscribe from the link")
    return render(request, "notifications/unsubscribe_done.html", {
        "account": account, "category_label": Category(category).label, "subscribed": True,
        "account_id": account_id, "category": category, "token": token,
    })
