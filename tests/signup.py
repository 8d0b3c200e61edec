"""Signing up in tests as a customer does (issue 28): the form, then the link of the e-mail it sends."""

import re

from django.core import mail
from django.urls import reverse

CONFIRM_PATH = re.compile(r"https?://[^/\s]+(/signup/confirm/[^/\s]+/)")


def signup_link(email: str) -> str:
    """The path of the sign-up link in the last e-mail to `email` (from django.core.mail.outbox)."""
    to_address = [m for m in mail.outbox if m.to == [email.strip().lower()]]
    assert to_address, f"no e-mail to {email}"
    return CONFIRM_PATH.search(to_address[-1].body).group(1)


def sign_up(client, **form):
    """Post the sign-up form, then confirm from the e-mailed link; the confirmation's response."""
    sent = client.post(reverse("signup"), form)
    assert sent.status_code == 200 and b"Check your e-mail" in sent.content, sent.content[:2000]
    return client.post(signup_link(form["email"]))
