"""Sign-up and the property pages (`/signup/`, `/account/properties/`, URL namespace `accounts`).
They call the engine (`billing.sign_up` puts a new account on Free; `selectors.suspension` says why
a suspended account's properties do not track), so they live in the engine's app, above accounts."""

from django.contrib import messages
from django.contrib.auth import login
from django.db import IntegrityError, transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from accounts import services, signup
from accounts.auth import signup_attempt_allowed, signup_wait_minutes
from accounts.decorators import account_required
from accounts.forms import PropertyForm, SignUpForm
from accounts.models import Property

from . import billing, selectors


@require_http_methods(["GET", "POST"])
def sign_up(request):
    """The sign-up form. A valid form answers "Check your e-mail" and queues one e-mail, the same
    page and the same work whether the address has an account or not (issue 28); the account is
    created from the e-mailed link (sign_up_confirm)."""
    if request.user.is_authenticated:
        return redirect("billing:overview")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and not signup_attempt_allowed(request):
        minutes = signup_wait_minutes()
        form.add_error(None, f"Too many sign-ups from your network. Try again in {minutes} minute"
                             f"{'s' if minutes != 1 else ''}, or log in if you have an account.")
        return render(request, "registration/signup.html", {"form": form}, status=429)
    if request.method == "POST" and form.is_valid():
        signup.signup_request(email=form.cleaned_data["email"], account_name=form.cleaned_data["account_name"],
                              timezone=form.cleaned_data["timezone"], password=form.cleaned_data["password"])
        return render(request, "registration/signup_sent.html", {"valid_hours": signup.SIGNUP_LINK_HOURS})
    return render(request, "registration/signup.html", {"form": form})


@require_http_methods(["GET", "POST"])
def sign_up_confirm(request, token: str):
    """The e-mailed sign-up link. GET only shows what will be created and a button (mail scanners
    follow links); POST creates the account on Free with the chosen password, logs in and goes to
    the billing overview. An expired, changed or used link, or an address that has an account by
    now, is refused with the way on."""
    if request.user.is_authenticated:
        return redirect("billing:overview")
    try:
        data = signup.signup_payload(token)
    except signup.SignupLinkError as exc:
        return render(request, "registration/signup_confirm.html", {"refusal": str(exc)}, status=400)
    if request.method == "POST":
        try:
            with transaction.atomic():
                # No password given to sign_up: the user gets the hash the customer chose (the link
                # carries only that), set in the same transaction.
                user, _account = billing.sign_up(email=data["email"], password=None,
                                                 account_name=data["account_name"], timezone=data["timezone"])
                user.password = data["password_hash"]
                user.save(update_fields=["password"])
        except (services.AccountError, IntegrityError):
            pass  # the address has an account by now: refused below, as on GET
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome to Prorata. You are on the Free plan.")
            return redirect("billing:overview")
    taken = signup.address_user(data["email"])
    if taken is not None:
        refusal = ("This link was used already: your account exists. Log in with your e-mail and password."
                   if taken.password == data["password_hash"] else
                   "An account with this e-mail address exists already. Log in instead.")
        return render(request, "registration/signup_confirm.html", {"refusal": refusal, "taken": True}, status=409)
    return render(request, "registration/signup_confirm.html", {"signup": data})


@account_required("view_usage")
def property_list(request):
    account = request.account
    props = list(account.properties.live().order_by("created_at", "id"))
    limit = services.property_limit(account)
    form = PropertyForm()
    return render(
        request,
        "accounts/property_list.html",
        {"properties": props, "limit": limit, "form": form,
         "can_manage": request.membership.can("manage_properties"),
         # SUS-1: a suspended account's properties do not track; the page says so and why.
         "suspension": selectors.suspension(account)},
    )


@account_required("manage_properties")
@require_http_methods(["POST"])
def property_add(request):
    form = PropertyForm(request.POST)
    if not form.is_valid():
        # The domain's own reason when it is the domain that is wrong (accounts/domains.py).
        messages.error(request, form.errors["domain"][0] if "domain" in form.errors and form.data.get("domain")
                       else "Enter a name and a domain for the property.")
        return redirect("accounts:properties")
    try:
        prop = services.property_add(
            account=request.account, name=form.cleaned_data["name"],
            domain=form.cleaned_data["domain"], actor=request.user,
        )
    except services.AccountError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Added {prop.name}. Its tracking tag is {prop.tracking_tag}.")
    return redirect("accounts:properties")


@account_required("manage_properties")
@require_http_methods(["GET", "POST"])
def property_delete(request, pk: int):
    prop = get_object_or_404(Property.objects.live(), pk=pk, account=request.account)
    if request.method == "POST":
        services.property_delete(prop=prop, actor=request.user)
        messages.success(request, f"Deleted {prop.name}.")
        return redirect("accounts:properties")
    return render(request, "accounts/property_confirm_delete.html", {"property": prop})
