from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

from core.logs import account_seen

from .selectors import membership_for


def account_required(permission: str = "view_usage"):
    """Login, a membership, and the role's permission (ACC-1). Sets request.membership and
    request.account; object lookups in views must filter by request.account."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            membership = membership_for(request.user)
            if membership is None:
                raise PermissionDenied("Your user does not belong to an account.")
            if not membership.can(permission):
                raise PermissionDenied("Your role does not allow this. Ask the account owner.")
            request._membership = membership
            request.membership = membership
            request.account = membership.account
            account_seen(membership.account_id)  # OPS-3: the request's later log lines name the account
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
