"""The Stripe card flow, under /billing/stripe/ (config/urls.py)."""

from django.urls import path

from . import stripe_views

app_name = "stripe_billing"
urlpatterns = [
    path("setup-intent/", stripe_views.setup_intent_create, name="setup_intent"),
    path("card/", stripe_views.card_save, name="card_save"),
]
