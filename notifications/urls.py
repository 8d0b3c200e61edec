from django.urls import path

from . import views

app_name = "notifications"
urlpatterns = [
    path("unsubscribe/<int:account_id>/<slug:category>/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("resubscribe/<int:account_id>/<slug:category>/<str:token>/", views.resubscribe, name="resubscribe"),
]
