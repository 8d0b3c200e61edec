"""Bar charts as inline SVG, rendered on the server: no script, no CDN, works offline. The revenue
page (metrics) and the customer's usage history draw with it.

A chart is a picture of a table that the page shows beside it (the numbers, for screen readers
and for copying), so the SVG carries a short accessible name and no data of its own. Geometry is
computed with Decimal like the money it draws (no float anywhere)."""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

# Colours that keep 3:1 contrast with the white page (WCAG 1.4.11), told apart by colour-blind
# readers too (after Okabe and Ito), darkest first.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#6A3D9A", "#8C564B", "#B2186B", "#1F1F1F", "#7A6A00")

WIDTH, HEIGHT = 720, 320
LEFT, RIGHT, BOTTOM = 78, 12, 40
LEGEND_ROW = 18
ONE = Decimal(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: tuple  # one number (Decimal or int) per category
    color: str


@dataclass(frozen=True)
class Reference:
    """A horizontal line across the plot at `value` (a quota, a target), dashed, named in the legend."""

    name: str
    value: Decimal
    color: str = "#1F1F1F"


def _px(value: Decimal) -> str:
    return str(Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def nice_step(span: Decimal, ticks: int = 5) -> Decimal:
    """A round step (1, 2 or 5 times a power of ten) that cuts `span` into about `ticks` parts.

    >>> nice_step(Decimal("1234")), nice_step(Decimal("9")), nice_step(Decimal("0.3"))
    (Decimal('500'), Decimal('2'), Decimal('0.10'))
    """
    if span <= 0:
        return ONE
    raw = span / ticks
    power = Decimal(10) ** (raw.adjusted())
    for factor in (1, 2, 5, 10):
        if raw <= power * factor:
            return power * factor
    return power * 10


def _label(value: Decimal, money: bool) -> str:
    sign = "−" if value < 0 else ""
    value = abs(value)
    text = f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,.2f}"
    return f"{sign}${text}" if money else f"{sign}{text}"


@dataclass(frozen=True)
class _Frame:
    """The plot's vertical scale: `top` and `bottom` values at the plot's edges, ticks every `step`."""

    top: Decimal
    bottom: Decimal
    step: Decimal
    top_margin: int
    plot_h: Decimal

    def y(self, value: Decimal) -> Decimal:
        return self.top_margin + (self.top - value) * self.plot_h / (self.top - self.bottom)


def _bounds(values: list[list[Decimal]], count: int, stacked: bool, reference: Reference | None,
            money: bool) -> tuple[Decimal, Decimal, Decimal]:
    """(top, bottom, step): the extremes of the bars (stacked: their sums), and the reference line,
    widened to whole ticks."""
    if stacked:
        highs = [sum((v[i] for v in values if v[i] > 0), Decimal(0)) for i in range(count)]
        lows = [sum((v[i] for v in values if v[i] < 0), Decimal(0)) for i in range(count)]
    else:
        highs = [max([v[i] for v in values] + [Decimal(0)]) for i in range(count)]
        lows = [min([v[i] for v in values] + [Decimal(0)]) for i in range(count)]
    top, bottom = max(highs + [Decimal(0)]), min(lows + [Decimal(0)])
    if reference is not None:
        top = max(top, Decimal(reference.value))
    if top == bottom:
        top = ONE
    step = nice_step(top - bottom)
    if not money:
        step = max(step, ONE)  # counts: whole ticks
    top = (top / step).to_integral_value(rounding="ROUND_CEILING") * step
    bottom = (bottom / step).to_integral_value(rounding="ROUND_FLOOR") * step
    return top, bottom, step


def _grid(frame: _Frame, width: int, money: bool) -> list[str]:
    """The horizontal grid lines and their labels on the axis."""
    parts = []
    tick = frame.bottom
    while tick <= frame.top:
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{_px(frame.y(tick))}" y2="{_px(frame.y(tick))}" '
                     f'class="{"zero" if tick == 0 else "grid"}"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{_px(frame.y(tick) + 4)}" text-anchor="end" class="tick">'
                     f'{escape(_label(tick, money))}</text>')
        tick += frame.step
    return parts


def _bars(frame: _Frame, i: int, x0: Decimal, band: Decimal, category: str, series: list[Series],
          values: list[list[Decimal]], stacked: bool, money: bool) -> list[str]:
    """The bars of category `i`: stacked (positives up, negatives down from zero) or side by side."""
    parts = []
    if stacked:
        bar_w = band * Decimal("0.62")
        up, down = Decimal(0), Decimal(0)
        for s, v in zip(series, values, strict=True):
            value = v[i]
            if value == 0:
                continue
            if value > 0:
                y_top, y_bottom, up = frame.y(up + value), frame.y(up), up + value
            else:
                y_top, y_bottom, down = frame.y(down), frame.y(down + value), down + value
            parts.append(_rect(x0 + (band - bar_w) / 2, y_top, bar_w, y_bottom - y_top, s.color,
                               f"{category} — {s.name}: {_label(value, money)}"))
        return parts
    inner = band * Decimal("0.8")
    bar_w = inner / max(len(series), 1)
    for j, (s, v) in enumerate(zip(series, values, strict=True)):
        value = v[i]
        if value == 0:
            continue
        y_top, y_bottom = (frame.y(value), frame.y(0)) if value > 0 else (frame.y(0), frame.y(value))
        parts.append(_rect(x0 + (band - inner) / 2 + bar_w * j, y_top, bar_w, y_bottom - y_top, s.color,
                           f"{category} — {s.name}: {_label(value, money)}"))
    return parts


def bar_chart(*, label: str, categories: list[str], series: list[Series], stacked: bool = True,
              money: bool = True, width: int = WIDTH, height: int = HEIGHT, reference: Reference | None = None,
              label_every: int = 1) -> SafeString:
    """Bars per category, stacked (positives up, negatives down from zero) or side by side.
    A category "Mar 2026" is written on two lines, the year only under the first bar and January.
    `reference`: a dashed horizontal line (the plot reaches up to it). `label_every`: write every
    n-th category under the axis (31 days on a phone), the first and the last always."""
    values = [[Decimal(v or 0) for v in s.values] for s in series]
    top, bottom, step = _bounds(values, len(categories), stacked, reference, money)
    legend, top_margin = _legend(series, width, reference)
    plot_w = Decimal(width - LEFT - RIGHT)
    frame = _Frame(top, bottom, step, top_margin, Decimal(height - top_margin - BOTTOM))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{escape(label)}" class="chart">', *_grid(frame, width, money)]
    band = plot_w / max(len(categories), 1)
    for i, category in enumerate(categories):
        x0 = LEFT + band * i
        name, _, year = category.partition(" ")
        if i % label_every == 0 or i == len(categories) - 1:
            parts.append(f'<text x="{_px(x0 + band / 2)}" y="{height - BOTTOM + 15}" text-anchor="middle" '
                         f'class="tick">{escape(name)}</text>')
        if year and (i == 0 or name == "Jan"):
            parts.append(f'<text x="{_px(x0 + band / 2)}" y="{height - BOTTOM + 29}" text-anchor="middle" '
                         f'class="tick">{escape(year)}</text>')
        parts += _bars(frame, i, x0, band, category, series, values, stacked, money)
    if reference is not None:
        at = _px(frame.y(Decimal(reference.value)))
        parts.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{at}" y2="{at}" stroke="{reference.color}" '
                     f'stroke-width="2" stroke-dasharray="6 4" class="reference"><title>{escape(reference.name)}: '
                     f'{escape(_label(Decimal(reference.value), money))}</title></line>')
    parts += legend
    parts.append("</svg>")
    return mark_safe("".join(parts))


def _legend(series: list[Series], width: int, reference: Reference | None = None) -> tuple[list[str], int]:
    """The legend above the plot, wrapped onto as many rows as it needs; returns its parts and the
    plot's top margin."""
    parts, x, row = [], Decimal(LEFT), 0
    for s in series:
        size = 17 + Decimal(len(s.name)) * Decimal("6.8") + 16
        if x + size > width - RIGHT and x > LEFT:
            x, row = Decimal(LEFT), row + 1
        y = 8 + row * LEGEND_ROW
        parts.append(f'<rect x="{_px(x)}" y="{y}" width="12" height="12" fill="{s.color}"/>')
        parts.append(f'<text x="{_px(x + 17)}" y="{y + 10}" class="legend">{escape(s.name)}</text>')
        x += size
    if reference is not None:
        size = 29 + Decimal(len(reference.name)) * Decimal("6.8") + 16
        if x + size > width - RIGHT and x > LEFT:
            x, row = Decimal(LEFT), row + 1
        y = 8 + row * LEGEND_ROW
        parts.append(f'<line x1="{_px(x)}" x2="{_px(x + 24)}" y1="{y + 6}" y2="{y + 6}" stroke="{reference.color}" '
                     'stroke-width="2" stroke-dasharray="6 4"/>')
        parts.append(f'<text x="{_px(x + 29)}" y="{y + 10}" class="legend">{escape(reference.name)}</text>')
    return parts, 8 + (row + 1) * LEGEND_ROW + 12


def _rect(x, y, w, h, color, tip) -> str:
    return (f'<rect x="{_px(x)}" y="{_px(y)}" width="{_px(w)}" height="{_px(max(h, Decimal("0.5")))}" '
            f'fill="{color}"><title>{escape(tip)}</title></rect>')
