"""The invoice pages under /billing/ (config/urls.py); the namespace stays `invoices`."""

from django.urls import path

from . import invoice_views as views

app_name = "invoices"
urlpatterns = [
    path("invoices/", views.invoice_list, name="list"),
    path("invoices/<int:pk>/", views.invoice_detail, name="detail"),
    path("invoices/<int:pk>/pdf/", views.invoice_download, name="pdf"),
    path("invoices/<int:pk>/pay/", views.invoice_pay, name="pay"),
    path("credit-notes/<int:pk>/", views.credit_note_detail, name="credit_note"),
    path("credit-notes/<int:pk>/pdf/", views.credit_note_download, name="credit_note_pdf"),
]
