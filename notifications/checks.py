"""Deployment check for the e-mail links (NOT-2): RFC 8058 one-click unsubscribe needs an https
List-Unsubscribe URL, and every link in our e-mails is built on SITE_URL."""

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def site_url_is_https(app_configs=None, **kwargs):
    if settings.SITE_URL.startswith("https://"):
        return []
    return [Warning(
        f"SITE_URL={settings.SITE_URL!r} is not an https address.",
        hint="Set SITE_URL to the site's public https address (e.g. https://billing.example.com): e-mail links "
             "are built on it, and mail clients offer one-click unsubscribe (RFC 8058) only for https links.",
        id="notifications.W001",
    )]
