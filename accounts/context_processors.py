from .selectors import membership_for


def current_account(request):
    membership = getattr(request, "_membership", None)
    if membership is None and getattr(request, "user", None) is not None:
        membership = membership_for(request.user)
        request._membership = membership
    return {"membership": membership, "current_account": membership.account if membership else None}
