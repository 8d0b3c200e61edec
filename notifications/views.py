"""One-click unsubscribe (NOT-2, RFC 8058). The link carries a signature over (account, category),
so it works without logging in and only for its own account and category. Billing e-mail has no link.

GET (a person opening the link, but also mail scanners and link prefetchers, which open every
link) only shows a confirmation page; the change happens on POST: the page's button, or the
mail client's own one-click POST with the body `List-Unsubscribe=One-Click` (RFC 8058), which
carries no CSRF token and no session."""

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


def _page(request, template: str, account: Account, category: str, token: str, **extra):
    return render(request, template, {
        "account": account, "category_label": Category(category).label, "account_id": account.pk,
        "category": category, "token": token, **extra,
    })


@csrf_exempt  # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" without a CSRF token
def unsubscribe(request, account_id: int, category: str, token: str):
    if request.method not in ("GET", "HEAD", "POST"):
        return HttpResponseNotAllowed(["GET", "HEAD", "POST"])
    account, refused = _checked(request, account_id, category, token)
    if refused:
        return refused
    if request.method != "POST":  # NOT-2: opening the link changes nothing
        return _page(request, "notifications/unsubscribe_confirm.html", account, category, token)
    account = preference_set(account=account, category=category, enabled=False, source="one-click unsubscribe link")
    return _page(request, "notifications/unsubscribe_done.html", account, category, token, subscribed=False)


@require_POST
def resubscribe(request, account_id: int, category: str, token: str):
    account, refused = _checked(request, account_id, category, token)
    if refused:
        return refused
    account = preference_set(account=account, category=category, enabled=True, source="resubscribe from the link")
    return _page(request, "notifications/unsubscribe_done.html", account, category, token, subscribed=True)
