"""The "figure" filter of the back-office lists: `?figure=churn:2026-03` on the accounts list shows
exactly the accounts behind that number of the revenue page (ACC-5: each figure is linked to the
records behind it). The rows come from `metrics.rows.figure_rows`, the same definitions as the
numbers."""

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.utils import timezone

from .rows import Figure, UnknownFigure, figure_rows


class FigureFilter(admin.SimpleListFilter):
    title = "revenue figure"
    parameter_name = "figure"

    def _figure(self, value, model_admin):
        try:
            figure = Figure.parse(value)
            figure.title(timezone.now())  # a month in the future is refused too
        except (UnknownFigure, ValueError) as exc:
            raise IncorrectLookupParameters(str(exc)) from None
        if figure.model != model_admin.model._meta.label_lower:
            plural = model_admin.model._meta.verbose_name_plural
            raise IncorrectLookupParameters(f"The figure {value!r} does not list {plural}.")
        return figure

    def lookups(self, request, model_admin):
        value = request.GET.get(self.parameter_name)
        if not value:
            return []  # the filter only shows when a link of the revenue page opened the list
        try:
            figure = self._figure(value, model_admin)
        except IncorrectLookupParameters as exc:
            # Shown, so that `queryset` runs and refuses it: a filter without choices would be
            # dropped silently and the list would show every row.
            return [(value, str(exc))]
        return [(value, figure.title(timezone.now()))]

    def queryset(self, request, queryset):
        if not self.value():
            return queryset
        figure = self._figure(self.value(), self.model_admin)
        return queryset.filter(figure_rows(figure, timezone.now()))

    def __init__(self, request, params, model, model_admin):
        self.model_admin = model_admin
        super().__init__(request, params, model, model_admin)
