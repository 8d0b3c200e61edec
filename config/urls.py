from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from accounts import auth as account_auth
from core import health
from invoices.stripe_endpoint import StripeWebhookView
from ops import views as ops_views
from subscriptions import account_views


def favicon(request):
    """Browsers and the admin ask for /favicon.ico: the static file, served by whitenoise. Its URL is
    read per request (the production storage names it after its content, so a redeploy with a new
    icon changes it; hence a temporary redirect)."""
    return HttpResponseRedirect(static("favicon.ico"))


# The database down: 503 with a short page instead of a bare 500 (core/outage.py).
handler500 = "core.outage.server_error"

admin.site.site_header = "Prorata back office"
admin.site.site_title = "Prorata"
admin.site.index_title = "Billing back office"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="billing:overview", permanent=False)),
    path("favicon.ico", favicon),
    # OPS-1: liveness, readiness and Prometheus metrics (docs/operations.md).
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", ops_views.metrics, name="metrics"),
    path("signup/", account_views.sign_up, name="signup"),
    path("signup/confirm/<str:token>/", account_views.sign_up_confirm, name="signup_confirm"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # ACC-4: customers reset and change their own password (accounts/auth.py, templates/registration/).
    path("password/reset/", account_auth.PasswordReset.as_view(), name="password_reset"),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password/reset/<uidb64>/<token>/", account_auth.PasswordResetConfirm.as_view(),
         name="password_reset_confirm"),
    path("password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path("account/password/", account_auth.PasswordChange.as_view(), name="password_change"),
    # The admin's login page shows "Forgotten your password?" when this name exists: the same flow.
    path("admin/password_reset/", account_auth.PasswordReset.as_view(), name="admin_password_reset"),
    path("account/", include("subscriptions.account_urls")),
    path("billing/", include("subscriptions.urls")),
    path("billing/", include("subscriptions.invoice_urls")),
    path("billing/stripe/", include("subscriptions.stripe_urls")),
    path("notifications/", include("notifications.urls")),
    path("api/", include("api.urls")),
    # dj-stripe's webhook view, acknowledging input no redelivery can fix (invoices/stripe_endpoint.py).
    path("stripe/webhook/<uuid:uuid>/", StripeWebhookView.as_view(), name="stripe_webhook"),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("admin/revenue/", include("metrics.urls")),  # ACC-5: the revenue and health page
    path("admin/", admin.site.urls),
]
