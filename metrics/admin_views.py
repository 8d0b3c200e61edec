"""The revenue and health page of the back office (ACC-5) and its CSV downloads. Support and
Billing managers see it (`metrics.view_dashboard`, accounts/groups.py), and superusers."""

import csv

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from . import summary, tables

PERMISSION = "metrics.view_dashboard"


def dashboard(request):
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    board = summary.dashboard(now)
    built = tables.tables(board)
    wanted = request.GET.get("csv")
    if wanted:
        table = next((t for t in built if t.slug == wanted), None)
        if table is None:
            raise Http404(f"There is no table {wanted!r}.")
        return _csv(table, now)
    context = {
        **admin.site.each_context(request),
        "title": "Revenue and health",
        "board": board,
        "cards": tables.today_cards(board),
        "tables": built,
        "check_ok": board.check_difference == 0,
        "subscriptions_mrr": tables.money(board.subscriptions_mrr).text,
    }
    return TemplateResponse(request, "admin/metrics/dashboard.html", context)


def _csv(table, now) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="prorata-{table.slug}-{now:%Y-%m-%d}.csv"'
    writer = csv.writer(response)
    for row in table.csv_rows():
        writer.writerow(row)
    return response
