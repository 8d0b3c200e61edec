from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from .auth import client_ip
from .models import LoginEvent
from .selectors import membership_for


@receiver(user_logged_in)
def record_login(sender, request, user, **kwargs):
    """Logins are part of the trial-usage evidence (REF-2)."""
    membership = membership_for(user)
    LoginEvent.objects.create(
        user=user,
        account=membership.account if membership else None,
        ip=client_ip(request) if request else None,  # behind our proxies: the client's, not the proxy's
    )
