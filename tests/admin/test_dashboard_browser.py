"""ACC-5 in a real browser: a Billing manager opens the revenue and health page on the 14-month
ledger, follows a figure to the accounts behind it and downloads a table (Playwright + Debian
Chromium against the live server).

With AXE_CORE_JS pointing at axe-core's axe.min.js (npm package `axe-core`), the page is also
checked for critical and serious accessibility findings. UPDATE_SCREENSHOTS=1 refreshes
docs/screenshots/revenue.png."""

import os
import shutil
from pathlib import Path

import pytest
import time_machine

from accounts.groups import BILLING_MANAGERS, ensure_staff_groups
from tests.metrics.ledger import NOW, build_ledger

from .conftest import CHROMIUM, staff_member

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def test_acc5_a_billing_manager_reads_the_revenue_page_in_the_browser(transactional_db, live_server, browser,
                                                                      catalog):
    with time_machine.travel(NOW, tick=True):  # the server's clock: the ledger's "now"
        build_ledger(catalog)
        manager = staff_member("billing@prorata.test", ensure_staff_groups()[BILLING_MANAGERS])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", manager.username)
        page.fill("#id_password", "password-123")
        page.click("input[type=submit]")
        page.get_by_role("link", name="Revenue and health").click()
        page.wait_for_selector("#movements-table")

        cards = page.inner_text("#today")
        assert "MRR today\n$159.37" in cards and "ARR today\n$1,912.44" in cards and "Paying accounts\n7" in cards
        assert "add up to the same MRR" in page.inner_text("#ledger-check")
        assert page.locator("svg.chart").count() == 5
        assert page.get_by_role("img", name="MRR movements per month").count() == 1
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "revenue.png"), full_page=True)
        if os.environ.get("UPDATE_SCREENSHOTS"):
            page.set_viewport_size({"width": 1400, "height": 1400})
            page.screenshot(path=str(ROOT / "docs" / "screenshots" / "revenue.png"), full_page=False)

        axe = os.environ.get("AXE_CORE_JS")
        if axe:
            page.evaluate(Path(axe).read_text())  # not a <script>: the page's CSP allows none (issue 28)
            found = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
                                  ".map(v => [v.impact, v.id, v.nodes.length])")
            assert [v for v in found if v[0] in ("critical", "serious")] == []

        with page.expect_download() as download:
            page.locator("#movements").get_by_role("link", name="as CSV").click()
        lines = Path(download.value.path()).read_text().splitlines()
        assert lines[1] == "2026-03,28.00,29.00,0.00,0.00,0.00,-29.00,1,0,0,0,1,0.00,28.00"

        # The churn of March 2026 is one account: the link lists exactly it.
        page.locator("#movements-table tr", has_text="March 2026").get_by_role("link", name="-$29.00").click()
        page.wait_for_selector("#result_list")
        assert page.locator("#result_list tbody tr").count() == 1
        assert "Account C" in page.inner_text("#result_list")
        assert "Churned in March 2026" in page.inner_text("#changelist-filter")
        context.close()
