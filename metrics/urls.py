from django.contrib import admin
from django.urls import path

from . import admin_views

app_name = "metrics"

urlpatterns = [
    path("", admin.site.admin_view(admin_views.dashboard), name="dashboard"),
]
