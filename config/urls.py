from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from accounts import views as account_views

admin.site.site_header = "Prorata back office"
admin.site.site_title = "Prorata"
admin.site.index_title = "Billing back office"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="billing:overview", permanent=False)),
    path("signup/", account_views.sign_up, name="signup"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", include("accounts.urls")),
    path("billing/", include("subscriptions.urls")),
    path("billing/", include("invoices.urls")),
    path("billing/stripe/", include("invoices.stripe_urls")),
    path("notifications/", include("notifications.urls")),
    path("api/", include("api.urls")),
    path("stripe/", include("djstripe.urls", namespace="djstripe")),
    path("admin/revenue/", include("metrics.urls")),  # ACC-5: the revenue and health page
    path("admin/", admin.site.urls),
]
