from functools import partial

from django.contrib.admin.views.decorators import staff_member_required
from django.urls import path
from ninja.openapi.views import openapi_view

from .api import api

app_name = "api"
urlpatterns = [
    # Issue 28: the interactive docs are for staff (the admin's login first), with Swagger UI from
    # django-ninja's own static files ("ninja" in INSTALLED_APPS), never a CDN. The schema itself,
    # /api/v1/openapi.json, stays public: API clients read it without a key.
    path("v1/docs", staff_member_required(partial(openapi_view, api=api)), name="docs"),
    path("v1/", api.urls),
]
