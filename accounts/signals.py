from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from .models import LoginEvent
from .selectors import membership_for


@receiver(user_logged_in)
def record_login(sender, request, user, **kwargs):
    """Logins are part of the trial-usage evidence (REF-2)."""
    membership = membership_for(user)
    LoginEvent.objects.create(
        user=user,
        account=membership.account if membership else None,
        ip=request.META.get("REMOTE_ADDR") if request else None,
    )
