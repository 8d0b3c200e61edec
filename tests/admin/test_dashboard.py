"""ACC-5: the revenue and health page of the back office: who may see it, what it shows, its CSV
downloads, and the admin lists its numbers link to (the "figure" filter)."""

import csv
import io
import re

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from invoices.models import Refund
from tests.metrics.ledger import NOW, build_ledger

from .conftest import client_for, staff_member

URL = "/admin/revenue/"


@pytest.fixture
def ledger(catalog):
    return build_ledger(catalog)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_acc5_only_support_billing_managers_and_superusers_see_the_page(db, support_client, manager_client,
                                                                        superuser):
    assert support_client.get(URL).status_code == 200
    assert manager_client.get(URL).status_code == 200
    assert client_for(superuser).get(URL).status_code == 200
    other_staff = client_for(staff_member("intern@prorata.test"))  # staff, in no group
    assert other_staff.get(URL).status_code == 403
    anonymous = Client().get(URL)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")


def test_acc5_the_admin_index_links_to_the_page_for_those_who_may_see_it(db, support_client):
    assert 'href="/admin/revenue/"' in support_client.get(reverse("admin:index")).content.decode()
    other_staff = client_for(staff_member("intern@prorata.test", **{"is_superuser": False}))
    assert 'href="/admin/revenue/"' not in other_staff.get(reverse("admin:index")).content.decode()


def cell_texts(html: str, table_id: str) -> list[list[str]]:
    table = re.search(rf'<table class="data" id="{table_id}">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r"<tr>(.*?)</tr>", table, re.S)
    return [[re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)]
            for row in rows]


@pytest.mark.slow
def test_acc5_the_page_shows_the_ledger_figures_with_charts_links_and_csv(frozen, ledger, manager_client):
    response = manager_client.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    # Today (the hand computation is in tests/metrics/test_figures.py).
    assert "$159.37" in html and "$1,912.44" in html
    assert 'id="ledger-check"' in html and "add up to the same MRR" in html
    # Five charts, each beside its table, as inline SVG with an accessible name; no script, no CDN.
    assert html.count('class="chart"') == 5
    assert html.count('role="img" aria-label=') == 5
    assert "<script" not in html.split('id="content-main"')[1]
    movements = cell_texts(html, "movements-table")
    assert movements[0][:3] == ["Month", "Opening MRR", "New MRR"]
    march = next(row for row in movements if row[0] == "March 2026")
    assert march[1:] == ["$28.00", "+$29.00", "$0.00", "$0.00", "$0.00", "-$29.00", "1", "0", "0", "0", "1",
                         "$0.00", "$28.00"]
    september = next(row for row in movements if row[0] == "September 2026")
    assert september[1:] == ["$142.20", "+$9.00", "$0.00", "$0.00", "-$5.83", "-$14.00", "1", "0", "0", "1", "1",
                             "-$10.83", "$131.37"]
    assert movements[-1][0] == "March 2027 (to date)" and movements[-1][-1] == "$159.37"
    trials = cell_texts(html, "trials-table")
    assert ["March 2027 (to date)", "1", "0", "1", "0", "—"] in trials
    assert ["October 2026", "1", "1", "0", "1", "100.0%"] in trials
    failed = cell_texts(html, "failed-payments-table")
    assert ["March 2026", "1", "$29.00", "0", "$0.00", "1", "$29.00", "0", "$0.00", "0.0%"] in failed
    # Each number links to the admin list of its rows.
    assert 'href="/admin/accounts/account/?figure=churn%3A2026-03"' in html
    assert 'href="/admin/invoices/invoice/?figure=failed%3A2026-05"' in html
    assert 'href="/admin/invoices/creditnote/?figure=credit_notes%3A2026-08"' in html
    assert 'href="/admin/accounts/account/?figure=mrr%3A2026-09%3Aadvanced%3Ayearly"' in html


@pytest.mark.slow
def test_acc5_every_table_downloads_as_csv(frozen, ledger, support_client):
    response = support_client.get(URL, {"csv": "movements"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="prorata-movements-2027-03-10.csv"'
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:3] == ["Month", "Opening MRR", "New MRR"]
    assert rows[1] == ["2026-03", "28.00", "29.00", "0.00", "0.00", "0.00", "-29.00", "1", "0", "0", "0", "1",
                       "0.00", "28.00"]
    assert len(rows) == 14
    for slug in ("mrr", "trials", "failed-payments", "overage-refunds-credit"):
        download = support_client.get(URL, {"csv": slug})
        assert download.status_code == 200 and len(list(csv.reader(io.StringIO(download.content.decode())))) == 14
    mrr = list(csv.reader(io.StringIO(support_client.get(URL, {"csv": "mrr"}).content.decode())))
    # Plans in catalog order (rank, then code), monthly before yearly.
    assert mrr[0] == ["Month", "Metered (monthly) MRR", "Personal (monthly) MRR", "Personal (yearly) MRR",
                      "Advanced (monthly) MRR", "Advanced (yearly) MRR", "MRR", "ARR", "Paying accounts"]
    assert mrr[-1] == ["2027-03", "9.00", "56.00", "11.20", "0.00", "83.17", "159.37", "1912.44", "7"]
    assert support_client.get(URL, {"csv": "nope"}).status_code == 404


@pytest.mark.slow
def test_acc5_a_figure_link_lists_exactly_its_rows(frozen, ledger, support_client):
    def listed(url):
        html = support_client.get(url).content.decode()
        return sorted(set(re.findall(r"Account [A-K]\b", html)))

    assert listed("/admin/accounts/account/?figure=churn:2026-03") == ["Account C"]
    assert listed("/admin/accounts/account/?figure=mrr:2026-09:advanced:yearly") == ["Account A"]
    assert listed("/admin/accounts/account/?figure=new:2026-10") == ["Account F"]
    page = support_client.get("/admin/accounts/account/?figure=churn:2026-03").content.decode()
    assert "Churned in March 2026" in page  # the filter says what the list is
    invoices = support_client.get("/admin/invoices/invoice/?figure=failed:2027-01").content.decode()
    assert "Account I" in invoices and "Account B" not in invoices
    refunds = support_client.get("/admin/invoices/refund/?figure=refunds:2026-10").content.decode()
    refunded = Refund.objects.get()  # F's, the only refund of the ledger
    assert f"/admin/invoices/refund/{refunded.pk}/change/" in refunds
    assert "0 refunds" in support_client.get("/admin/invoices/refund/?figure=refunds:2026-11").content.decode()
    # A figure that does not exist, or is not about this list, is refused rather than ignored.
    for bad in ("/admin/accounts/account/?figure=bogus:2026-03", "/admin/accounts/account/?figure=failed:2026-03",
                "/admin/accounts/account/?figure=churn:2030-01"):
        response = support_client.get(bad)
        assert response.status_code == 302 and response["Location"].endswith("?e=1"), bad
