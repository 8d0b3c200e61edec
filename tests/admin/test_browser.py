"""One refund approval in a real browser (Playwright + Debian Chromium) against the live server."""

import shutil
from decimal import Decimal
from pathlib import Path

import pytest
from django.core import mail

from accounts.groups import BILLING_MANAGERS, ensure_staff_groups
from invoices.models import CreditNote
from subscriptions import billing

from .conftest import CHROMIUM, OWNER, at, kinds, staff_member

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def test_ref5_billing_manager_approves_a_trial_refund_in_the_browser(transactional_db, live_server, browser,
                                                                     converted):
    manager = staff_member("manager@prorata.test", ensure_staff_groups()[BILLING_MANAGERS])
    request = billing.request_refund(converted, message="We never installed the tag.", actor=converted.account.owner,
                                   now=at("2026-04-20"))
    mail.outbox.clear()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{live_server.url}/admin/login/?next=/admin/invoices/refundrequest/{request.pk}/change/")
    page.fill("#id_username", manager.username)
    page.fill("#id_password", "password-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#trial-evidence")
    assert "No usage during the trial" in page.inner_text("#evidence-summary")
    assert "We never installed the tag." in page.inner_text("#refund-decision")
    page.fill("#refund-decision-form textarea[name=reason]", "No property sent an event during the trial.")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "refund-review.png"), full_page=True)
    page.click("#refund-decision-form input[name=approve]")
    page.wait_for_selector("ul.messagelist li.success")
    assert "Refunded $14.00" in page.inner_text("ul.messagelist")
    assert "Refunded" in page.inner_text("#refund-decision")
    page.screenshot(path=str(ARTIFACTS / "refund-approved.png"), full_page=True)
    page.close()

    request.refresh_from_db()
    assert (request.status, request.decided_by, request.decision_reason) == (
        "refunded", manager, "No property sent an event during the trial.")
    assert CreditNote.objects.get(invoice=converted).amount == Decimal("14.00")
    assert converted.account.subscriptions.order_by("-id").first().plan.code == "free"
    assert ("refund.decided", [OWNER]) in kinds()
