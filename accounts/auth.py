"""Logging in safely (ACC-4): brute-force protection with django-axes, and the customers' own
password reset and change through Django's auth views with our templates.

django-axes (settings AXES_* in config/settings/base.py) counts failed logins in the database,
per lower-cased username and per client address, on every path that calls `authenticate()` with
the request: `/login/` and `/admin/login/`. Past `AXES_FAILURE_LIMIT` failures within the cool-off
it refuses even the right password and answers `login_locked_out` (429) until the cool-off has
passed since the last failure. The way back without waiting: a password reset, whose completion
forgets that username's failures (`PasswordResetConfirm`).
"""

from __future__ import annotations

import ipaddress
import logging
import time
from datetime import timedelta
from urllib.parse import urlsplit

from axes.utils import reset as axes_reset
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordResetForm
from django.core.cache import cache
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse, reverse_lazy

from core.broker import task_enqueue

from .selectors import membership_for
from .services import audit

log = logging.getLogger(__name__)


def login_username(request, credentials: dict | None) -> str | None:
    """The name failures are counted under: sign-up stores the lower-cased e-mail as the username,
    so "Owner@Example.com " and "owner@example.com" are one user to the lockout too."""
    username = (credentials or {}).get("username")
    if username is None and request is not None:
        username = request.POST.get("username")
    return username.strip().lower() if isinstance(username, str) else username


def client_ip(request) -> str | None:
    """The client's address for per-address lockouts. Behind TRUSTED_PROXIES reverse proxies it is
    the address the outermost of them saw (X-Forwarded-For, counted from the right, which the
    client cannot forge past our own proxies); with none, REMOTE_ADDR."""
    proxies = settings.TRUSTED_PROXIES
    remote = request.META.get("REMOTE_ADDR")
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if not forwarded:
        return remote
    candidate = forwarded[-min(proxies, len(forwarded))]
    try:  # axes stores it in an inet column: garbage would fail the login with a 500 on PostgreSQL
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def cool_off_minutes() -> int:
    cool_off = settings.AXES_COOLOFF_TIME or timedelta(0)
    return max(1, round(cool_off.total_seconds() / 60))


def login_locked_out(request, original_response=None, credentials=None):
    """Axes' answer once a username or an address is over the limit (AXES_LOCKOUT_CALLABLE)."""
    response = render(request, "registration/locked_out.html", {
        "cool_off_minutes": cool_off_minutes(),
        "admin": request.path.startswith(reverse("admin:index")),
    }, status=429)
    response["Retry-After"] = str(cool_off_minutes() * 60)
    return response


class PasswordReset(auth_views.PasswordResetView):
    """Ask for a reset link by e-mail. The answer never says whether the address has an account,
    in its words nor in its time: the request only queues `password_reset_send` for any address
    (issue 28: sending inside the request made known addresses measurably slower), and a worker
    looks the address up and sends. With the broker down the request sends itself, as before.
    The link is built on SITE_URL (as every e-mail's links are), not on the request's Host.

    Not through the e-mail log (NOT-3): the body is a one-time login link, and a copy readable by
    staff would let them log in as the customer (docs/policy-decisions.md)."""

    success_url = reverse_lazy("password_reset_done")

    def form_valid(self, form):
        email = form.cleaned_data["email"]
        if not task_enqueue("accounts.auth.password_reset_send", email, group="password-reset"):
            password_reset_send(email)
        return HttpResponseRedirect(self.get_success_url())


def password_reset_send(email: str) -> int:
    """The reset e-mail to every active user of `email` with a usable password (Django's form
    decides who); the number of e-mails sent. A django-q2 task."""
    form = PasswordResetForm({"email": email})
    if not form.is_valid():
        return 0
    site = urlsplit(settings.SITE_URL)
    users = list(form.get_users(form.cleaned_data["email"]))
    form.save(domain_override=site.netloc, use_https=site.scheme == "https",
              subject_template_name="registration/password_reset_subject.txt",
              email_template_name="registration/password_reset_email.txt",
              html_email_template_name="registration/password_reset_email.html",
              extra_email_context={
                  "subject": "Reset your Prorata password",  # the HTML e-mail's title (notifications/email_base.html)
                  "site_url": settings.SITE_URL.rstrip("/"),
                  "valid_hours": max(1, settings.PASSWORD_RESET_TIMEOUT // 3600),
                  "cool_off_minutes": cool_off_minutes(),
              })
    return len(users)


RATE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def signup_rate() -> tuple[int, int] | None:
    """SIGNUP_RATE as (attempts, seconds): "10/h" -> (10, 3600); "off" or empty -> None."""
    text = (settings.SIGNUP_RATE or "").strip().lower()
    if text in ("", "off", "none"):
        return None
    count, _, unit = text.partition("/")
    return int(count), RATE_UNITS[unit]


def signup_attempt_allowed(request) -> bool:
    """Counts a sign-up attempt of the client's address in a fixed window of the shared cache;
    False past SIGNUP_RATE (issue 28: every valid attempt e-mails the address it names, a
    confirmation link or "you already have an account" (accounts/signup.py), which must not go out at
    the speed of the network). Fails open when the cache is down: sign-up matters more than the
    throttle."""
    rate = signup_rate()
    if rate is None:
        return True
    attempts, seconds = rate
    key = f"signup:{client_ip(request)}:{int(time.time() // seconds)}"
    try:
        cache.add(key, 0, seconds)
        return cache.incr(key) <= attempts
    except Exception as exc:
        log.warning("Sign-up throttle skipped: the cache is unreachable (%s)", type(exc).__name__)
        return True


def signup_wait_minutes() -> int:
    rate = signup_rate()
    return max(1, round(rate[1] / 60)) if rate else 1


class PasswordResetConfirm(auth_views.PasswordResetConfirmView):
    """Setting a new password from the e-mailed link also lifts a lockout of that username (the
    way back of ACC-4), and is audited (ACC-3)."""

    success_url = reverse_lazy("password_reset_complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.user
        axes_reset(username=user.get_username().lower())
        membership = membership_for(user)
        audit(account=membership.account if membership else None, actor=user, action="user.password_reset",
              obj=user, reason="new password set from the e-mailed reset link")
        return response


class PasswordChange(auth_views.PasswordChangeView):
    """A logged-in user changes their password (current one required); audited (ACC-3). Django
    keeps this session logged in and ends the others (update_session_auth_hash)."""

    template_name = "registration/password_change_form.html"
    success_url = reverse_lazy("billing:overview")

    def form_valid(self, form):
        response = super().form_valid(form)
        membership = membership_for(self.request.user)
        audit(account=membership.account if membership else None, actor=self.request.user,
              action="user.password_changed", obj=self.request.user, reason="changed by the user")
        messages.success(self.request, "Your password is changed. Other devices logged in as you were logged out.")
        return response
