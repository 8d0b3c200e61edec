from django.urls import path

from . import settings_views, views

app_name = "billing"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("plans/", views.plans, name="plans"),
    path("usage/", views.usage, name="usage"),
    path("change/", views.change, name="change"),
    path("change/confirm/", views.change_confirm, name="change_confirm"),
    path("cancel/", views.cancel, name="cancel"),
    path("resume/", views.resume, name="resume"),
    path("extra-properties/", views.extra_properties, name="extra_properties"),
    path("extra-properties/confirm/", views.extra_properties_confirm, name="extra_properties_confirm"),
    path("payment-method/", settings_views.payment_method, name="payment_method"),
    path("payment-method/remove/", settings_views.payment_method_remove, name="payment_method_remove"),
    path("pay/", settings_views.pay_open, name="pay_open"),
    path("details/", settings_views.billing_details, name="billing_details"),
    path("emails/", settings_views.email_settings, name="email_settings"),
    path("requests/", settings_views.requests, name="requests"),
    path("requests/refund/<int:pk>/", settings_views.refund_request, name="refund_request"),
    path("requests/restore/", settings_views.restore_request, name="restore_request"),
]
