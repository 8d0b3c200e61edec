"""Signing up by confirming the e-mail address first (issue 28: sign-up must not tell which addresses
have accounts).

A valid sign-up form always answers "Check your e-mail" and queues one e-mail, the same work for
any address: `signup_send` (a django-q2 task, in the request when the broker is down, as the
password reset does) looks the address up and sends either the link that finishes the sign-up
(unknown address) or a note that the address already has an account (known address).

The link carries what the customer typed, signed and time-limited (SIGNUP_LINK_HOURS, its own
salt): the e-mail, the account name, the time zone and a HASH of the chosen password (never the
password). Opening it shows a button; pressing it creates the account
(subscriptions.account_views.sign_up_confirm). Not through the e-mail log (NOT-3), like the reset:
the link creates an account and logs in.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core import signing
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse

from core.broker import task_enqueue

SIGNUP_SALT = "prorata.accounts.signup-confirm"
SIGNUP_LINK_HOURS = 24


class SignupLinkError(Exception):
    """The link cannot finish a sign-up; the message says why, for the customer."""


def signup_token(*, email: str, account_name: str, timezone: str, password: str) -> str:
    """The signed payload of the confirmation link; the password leaves only as its hash."""
    payload = {"e": email.strip().lower(), "n": account_name, "t": timezone or "",
               "p": make_password(password)}
    return signing.TimestampSigner(salt=SIGNUP_SALT).sign_object(payload)


def signup_payload(token: str) -> dict:
    """What the link carries: {"email", "account_name", "timezone", "password_hash"}; raises
    SignupLinkError when it is expired or was not signed by us."""
    signer = signing.TimestampSigner(salt=SIGNUP_SALT)
    try:
        payload = signer.unsign_object(token, max_age=SIGNUP_LINK_HOURS * 3600)
    except signing.SignatureExpired:
        raise SignupLinkError(f"This sign-up link has expired: it works for {SIGNUP_LINK_HOURS} hours. "
                              "Sign up again to get a new one.") from None
    except (signing.BadSignature, ValueError):
        raise SignupLinkError("This sign-up link is not valid: it may have been cut or changed on the way. "
                              "Copy the whole link from the e-mail, or sign up again.") from None
    return {"email": payload["e"], "account_name": payload["n"], "timezone": payload["t"],
            "password_hash": payload["p"]}


def signup_request(*, email: str, account_name: str, timezone: str, password: str) -> None:
    """The sign-up form's work, the same for any address: sign the link and queue the e-mail."""
    token = signup_token(email=email, account_name=account_name, timezone=timezone, password=password)
    email = email.strip().lower()
    if not task_enqueue("accounts.signup.signup_send", email, token, group="signup"):
        signup_send(email, token)


def address_user(email: str):
    """The user who logs in with this address (the username is the lower-cased e-mail), or None."""
    return get_user_model().objects.filter(username__iexact=email.strip()).first()


def signup_send(email: str, token: str) -> str:
    """The e-mail of a sign-up: the confirmation link to an unknown address, "you already have an
    account" to a known one. Returns which ("confirm" or "known"). A django-q2 task."""
    site_url = settings.SITE_URL.rstrip("/")
    host = urlsplit(settings.SITE_URL).netloc
    context = {"email": email, "site_url": site_url, "site_name": host, "valid_hours": SIGNUP_LINK_HOURS}
    if address_user(email) is not None:
        kind, subject = "known", "You already have a Prorata account"
        context.update(login_url=site_url + reverse("login"), reset_url=site_url + reverse("password_reset"))
    else:
        kind, subject = "confirm", "Confirm your e-mail to finish signing up to Prorata"
        context["confirm_url"] = site_url + reverse("signup_confirm", kwargs={"token": token})
    context["subject"] = subject  # the HTML e-mail's title (notifications/email_base.html)
    body = render_to_string(f"registration/signup_{kind}_email.txt", context)
    message = EmailMultiAlternatives(subject, body, None, [email])
    message.attach_alternative(render_to_string(f"registration/signup_{kind}_email.html", context), "text/html")
    message.send()
    return kind
