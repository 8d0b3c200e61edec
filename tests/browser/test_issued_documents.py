"""INV-6 in a real browser: a refunded and a credited invoice say so with the date of the refund and
of the credit note (not the payment's), and an invoice's lines on a 390 px phone show every amount
in full. With AXE_CORE_JS pointing at axe-core's axe.min.js (npm package `axe-core`), each page is
also checked for critical and serious findings."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import Account
from core import zones
from invoices import services as ledger
from invoices.models import CreditNote, Invoice, InvoiceKind
from invoices.tax_rates import EU_RATES, tax_rates_load_file
from subscriptions import billing, staff
from tests.factories import AccountFactory
from tests.invoices.test_issued_documents import SELLER_DE, manager

from .conftest import log_in
from .test_self_service import axe_clean

pytestmark = pytest.mark.browser
ZONE = "Pacific/Kiritimati"
STATUS = "dt:text-is('Status') + dd"
LINES = "#lines-title ~ .table-wrap table"


def customer() -> Account:
    account = AccountFactory(name="Acme Analytics")
    Account.objects.filter(pk=account.pk).update(company="Acme GmbH", address="Torstrasse 5\n10119 Berlin",
                                                 country="DE", timezone=ZONE)
    account.refresh_from_db()
    billing.set_payment_method(account, "pm_card_visa", now=timezone.now() - timedelta(days=40))
    return account


def current(account):
    return account.subscriptions.select_related("plan").order_by("-id").first()


def day(moment) -> str:
    return f"{zones.local_date(moment, zones.zone(ZONE)):%Y-%m-%d}"


def test_inv6_refunded_and_credited_invoices_show_the_date_of_their_own_event(page, shot, catalog):
    account = customer()
    start = timezone.now() - timedelta(days=30)
    billing.subscribe(account, "advanced", "monthly", now=start)
    billing.change_plan(current(account), "advanced", "yearly", now=start + timedelta(days=5))  # UPG-3
    first, yearly = Invoice.objects.filter(account=account).order_by("id")
    refunded_at, credited_at = start + timedelta(days=8), start + timedelta(days=12)
    staff.refund_invoice(first, reason="Tracking was down", actor=manager(), now=refunded_at)  # REF-4
    staff.downgrade_now(current(account), "personal", reason="Tracking was down", actor=manager(),
                        now=credited_at)  # DWN-4: a credit note on the yearly invoice
    assert CreditNote.objects.filter(invoice=yearly).exists()
    log_in(page, account.owner.email)

    page.goto(f"/billing/invoices/{first.pk}/")
    expect(page.locator(STATUS)).to_have_text(f"Refunded on {day(refunded_at)}")
    expect(page.locator("#document dt:text-is('Paid on') + dd")).to_have_text(day(first.paid_at))
    axe_clean(page, "refunded invoice")
    shot("refunded")

    page.goto(f"/billing/invoices/{yearly.pk}/")
    expect(page.locator(STATUS)).to_have_text(f"Partly credited on {day(credited_at)}")
    assert day(credited_at) != day(yearly.paid_at)
    axe_clean(page, "credited invoice")
    shot("credited")


def test_inv6_invoice_lines_on_a_390px_phone_show_every_amount_in_full(page, shot, catalog, settings):
    """The issue's report: "$998" for "$998.04" at 390 px. Each line's amount and each total must be
    inside the screen and not clipped by its cell or by the table's scrolling box."""
    for name, value in SELLER_DE.items():
        setattr(settings, name, value)
    tax_rates_load_file(EU_RATES)
    account = customer()
    now = timezone.now() - timedelta(days=3)
    with transaction.atomic():  # the ledger runs inside the engine's transactions (it locks the credit notes)
        invoice = ledger.invoice_create(
            account=account, subscription=current(account), kind=InvoiceKind.UPGRADE, currency="USD", now=now,
            period_start=now, period_end=now + timedelta(days=365),
            lines=[ledger.Line("Advanced (yearly), 2026-12-04 to 2027-12-04", Decimal("278.04"),
                               computation="278.04 for 365 of 365 days"),
                   ledger.Line("2 extra properties (yearly), 2026-12-04 to 2027-12-04", Decimal("720.00"),
                               computation="2 \u00d7 30.00 \u00d7 12 months = 720.00", quantity=Decimal("2"),
                               unit_price=Decimal("360.00"))])
        ledger.invoice_issue(invoice, now=now)
    log_in(page, account.owner.email)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/billing/invoices/{invoice.pk}/")
    expect(page.locator(LINES)).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    wrap = page.locator(LINES).locator("..")
    assert wrap.evaluate("el => el.scrollWidth <= el.clientWidth + 1")  # nothing hidden off to the right
    amounts = page.locator(f"{LINES} tbody tr > td:last-child")  # each line's amount, then the totals
    texts = [amounts.nth(i).inner_text().strip() for i in range(amounts.count())]
    assert "$278.04" in texts and "$720.00" in texts and "$998.04" in texts  # two lines, the net subtotal
    for i in range(amounts.count()):
        cell = amounts.nth(i)
        box = cell.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, (texts[i], box)
        assert cell.evaluate("el => el.scrollWidth <= el.clientWidth + 1"), texts[i]
    axe_clean(page, "invoice lines at 390 px")
    shot()
