"""The account pages under /account/ (config/urls.py); the namespace stays `accounts`."""

from django.urls import path

from . import account_views as views

app_name = "accounts"
urlpatterns = [
    path("properties/", views.property_list, name="properties"),
    path("properties/add/", views.property_add, name="property_add"),
    path("properties/<int:pk>/delete/", views.property_delete, name="property_delete"),
]
