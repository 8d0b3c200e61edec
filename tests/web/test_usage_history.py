"""USE-2 usage history: past months against their quota with the overage invoiced for them (USE-3),
the days of a month as a server-rendered SVG chart beside a table, and the current month's
projected overage, read from the account statement. Members may read it (ACC-1)."""

from datetime import date
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import UsageDay, UsageMonth
from core import charts
from invoices.models import Invoice, InvoiceKind
from subscriptions import billing, scheduler, usage_panel
from subscriptions.statement import account_statement
from tests.factories import PropertyFactory

from .conftest import at, login


def _text(response) -> str:
    return response.content.decode()


@pytest.fixture
def history(account, travel):
    """Personal since 2026-03-01: 12,500 sessions in March (overage invoiced on 04-01), and
    April's first ten days at 400 sessions a day."""
    travel("2026-03-01")
    billing.subscribe(account, "personal", "monthly")
    site = PropertyFactory(account=account)
    UsageMonth.objects.create(account=account, month=date(2026, 3, 1), sessions=12_500, sessions_included=10_000)
    scheduler.run(now=at("2026-04-01T00:30"))
    UsageMonth.objects.create(account=account, month=date(2026, 4, 1), sessions=4_000, sessions_included=10_000)
    for day in range(1, 11):
        UsageDay.objects.create(property=site, account=account, day=date(2026, 4, day), sessions=400)
    travel("2026-04-10T12:00")
    return account


def test_use2_past_months_show_sessions_quota_and_the_overage_invoiced(history, client_owner):
    invoice = Invoice.objects.get(account=history, kind=InvoiceKind.OVERAGE)
    assert invoice.total == Decimal("5.00")  # USE-3: 2,500 x $2.00 / 1,000
    html = _text(client_owner.get(reverse("billing:usage")))
    march = html.split('href="?month=2026-03">March 2026</a>')[1].split("</tr>")[0]
    # each month's cells carry their column's name too (data-label), for the stacked phone layout
    assert 'data-label="Sessions" class="num">12,500</td>' in march
    assert 'data-label="Quota" class="num">10,000</td>' in march
    assert 'data-label="Over the quota" class="num">2,500</td>' in march
    assert f'$5.00 (<a href="/billing/invoices/{invoice.pk}/">{invoice.number}</a>)' in march
    assert 'href="?month=2026-04">April 2026</a> <span class="muted">(so far)</span>' in html


def test_use2_the_month_is_drawn_day_by_day_against_the_quota_with_the_numbers_beside(history, client_owner):
    html = _text(client_owner.get(reverse("billing:usage")))
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html and 'role="img"' in html
    assert ('aria-label="Sessions counted in April 2026, running total by day: 4,000 by April 10, against a quota '
            'of 10,000"') in html
    assert 'class="reference"' in html and "Quota 10,000" in html  # the dashed quota line, named
    assert "<script" not in html.split('<svg')[1].split("</svg>")[0]  # server-rendered, no script
    assert '<caption id="days-caption">Sessions by day, April 2026</caption>' in html
    assert '<tr><td>Apr 10</td><td class="num">400</td><td class="num">4,000</td></tr>' in html
    assert html.count("<tr><td>Apr ") == 10  # today is April 10: no empty future days


def test_use2_the_projected_overage_is_the_statements(history, client_owner, travel):
    UsageMonth.objects.filter(account=history, month=date(2026, 4, 1)).update(sessions=6_000)
    html = _text(client_owner.get(reverse("billing:usage")))
    now = at("2026-04-10T12:00")
    statement = account_statement(history, now, usage=usage_panel.usage_summary(history, now))
    assert statement.overage is not None
    shown = (f"{statement.overage.sessions:,} over your quota: ${statement.overage.amount}")
    assert shown in html and "invoiced on 2026-05-01" in html  # 6,000 x 30 / 9.5 days = 18,947: 8,947 over


def test_use2_a_past_month_is_shown_day_by_day_on_request(history, client_owner):
    site = history.properties.first()
    UsageDay.objects.create(property=site, account=history, day=date(2026, 3, 31), sessions=12_500)
    html = _text(client_owner.get(reverse("billing:usage"), {"month": "2026-03"}))
    assert "<h2 id=\"month-title\">March 2026</h2>" in html
    assert html.count("<tr><td>Mar ") == 31
    assert "Over the quota" in html and "2,500 over" in html  # the running total crossed the quota on the 31st
    assert 'id="projected"' not in html  # a closed month has no projection


@pytest.mark.parametrize("month", ["2026-13", "April", "2026-05", "2025-12"])
def test_use2_a_month_outside_the_accounts_life_is_not_found(history, client_owner, month):
    history.created_at = at("2026-01-15")
    history.save(update_fields=["created_at"])
    assert client_owner.get(reverse("billing:usage"), {"month": month}).status_code == 404


def test_acc1_members_read_the_usage_history_without_invoice_links(history, member_user):
    html = _text(login(member_user).get(reverse("billing:usage")))
    assert "Usage history" in html and "$5.00" in html
    assert "/billing/invoices/" not in html.split("<main")[1]


def test_use4_free_says_its_hard_cap_and_shows_no_projection(account, client_owner, travel):
    travel("2026-04-10")
    UsageMonth.objects.create(account=account, month=date(2026, 4, 1), sessions=1_000, sessions_included=1_000)
    html = _text(client_owner.get(reverse("billing:usage")))
    assert "Your plan has a hard cap" in html and "the quota is reached until next month" in html
    assert "Projected overage" not in html


def test_use2_the_chart_draws_the_quota_line_and_reaches_up_to_it():
    """Infrastructure: core.charts' reference line (used by the usage history) is drawn at its value
    and the plot's scale includes it even when every bar is below."""
    svg = str(charts.bar_chart(label="t", categories=["1", "2"], money=False,
                               series=[charts.Series("Sessions", (10, 20), charts.PALETTE[0])],
                               reference=charts.Reference("Quota 100", Decimal(100))))
    assert 'class="reference"' in svg and "<title>Quota 100: 100</title>" in svg
    assert ">100</text>" in svg  # the axis goes up to the quota
