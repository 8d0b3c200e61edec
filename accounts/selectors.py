from .models import Membership


def membership_for(user):
    """The user's membership (a user belongs to one account), with the account loaded."""
    if not user.is_authenticated:
        return None
    return Membership.objects.select_related("account").filter(user=user).order_by("id").first()
