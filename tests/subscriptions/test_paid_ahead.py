"""REN-1 charges a renewal 24 hours before its period starts. In those 24 hours the next period is
already bought, at the terms it was invoiced with. A change made then adds to that period (an
upgrade or more extra properties pay for it too), ends after it (a cancellation), or waits until it
has started (a downgrade, a cycle switch, fewer extra properties, undoing a scheduled downgrade).
Before, an upgrade in the window gave the whole next period at the old price and its quote told of a
charge on a day already past; a cancellation threw away the period the customer had paid for."""

from decimal import Decimal

import pytest

from invoices.models import Invoice, InvoiceKind, InvoiceLine
from subscriptions import billing, scheduler
from subscriptions.errors import NotEligible
from subscriptions.statement import account_statement

from .conftest import add_properties, at, current

pytestmark = pytest.mark.django_db

WINDOW = at("2026-04-30T12:00")  # the renewal of 05-01..06-01 was charged at 04-30 00:00


def renewed_ahead(account, plan="personal", cycle="monthly"):
    """`plan` from 04-01, its renewal for 05-01..06-01 charged and paid by the run at 04-30 06:00."""
    billing.subscribe(account, plan, cycle, now=at("2026-04-01"))
    scheduler.run(at("2026-04-30T06:00"))
    renewal = Invoice.objects.get(account=account, kind=InvoiceKind.RENEWAL)
    assert renewal.status == "paid" and renewal.period_start == at("2026-05-01")
    return current(account)


def test_ren1_an_upgrade_after_the_renewal_was_charged_also_pays_the_difference_for_the_bought_period(account):
    sub = renewed_ahead(account)
    quote = billing.preview_change(sub, "advanced", "monthly", now=WINDOW)
    assert [(line.description, line.amount, line.computation) for line in quote.lines] == [
        ("Upgrade from Personal to Advanced, 1 of 30 days (2026-04-30 to 2026-05-01)", Decimal("0.50"),
         "($29.00 − $14.00) × 1/30 days = $0.50"),
        ("Upgrade from Personal to Advanced, 31 of 31 days (2026-05-01 to 2026-06-01)", Decimal("15.00"),
         "($29.00 − $14.00) × 31/31 days = $15.00"),
    ]
    assert quote.amount_due == Decimal("15.50")
    assert quote.at_period_end == "Renews on 2026-06-01 at $29.00."
    assert (quote.next_charge.at, quote.next_charge.total) == (at("2026-05-31"), Decimal("29.00"))

    billing.change_plan(sub, "advanced", "monthly", now=WINDOW, expected_amount=Decimal("15.50"))
    upgrade = Invoice.objects.get(account=account, kind=InvoiceKind.UPGRADE)
    assert upgrade.total == Decimal("15.50")
    assert [(line.period_start, line.period_end) for line in upgrade.lines.order_by("id")] == [
        (WINDOW, at("2026-05-01")), (at("2026-05-01"), at("2026-06-01"))]
    statement = account_statement(account, WINDOW)
    assert statement.paid_ahead is not None and statement.next_charge.at == at("2026-05-31")

    scheduler.run(at("2026-05-01T06:00"))
    sub = current(account)
    assert (sub.plan.code, sub.current_period_start, sub.current_period_end) == (
        "advanced", at("2026-05-01"), at("2026-06-01"))
    may = InvoiceLine.objects.filter(invoice__account=account, period_start=at("2026-05-01"))
    assert sum(line.amount for line in may) == Decimal("29.00")  # May on Advanced costs Advanced's price: 14 + 15
    scheduler.run(at("2026-05-31T06:00"))
    june = Invoice.objects.get(account=account, kind=InvoiceKind.RENEWAL, period_start=at("2026-06-01"))
    assert june.total == Decimal("29.00")


def test_add1_extra_properties_bought_after_the_renewal_was_charged_pay_for_the_bought_period_too(account):
    sub = renewed_ahead(account, "advanced")
    quote = billing.preview_extra_properties(sub, 2, now=WINDOW)
    assert [line.amount for line in quote.lines] == [Decimal("2.00"), Decimal("60.00")]
    assert quote.lines[1].description.endswith("31 of 31 days (2026-05-01 to 2026-06-01)")
    assert quote.at_period_end == "Renews on 2026-06-01 with 2 extra properties at $89.00."
    assert (quote.next_charge.at, quote.next_charge.total) == (at("2026-05-31"), Decimal("89.00"))
    billing.set_extra_properties(sub, 2, now=WINDOW, expected_amount=Decimal("62.00"))
    scheduler.run(at("2026-05-01T06:00"))
    assert current(account).extra_properties == 2
    scheduler.run(at("2026-05-31T06:00"))
    assert Invoice.objects.get(kind=InvoiceKind.RENEWAL, period_start=at("2026-06-01")).total == Decimal("89.00")


def test_can2_a_cancellation_after_the_renewal_was_charged_ends_after_the_period_bought(account):
    sub = renewed_ahead(account)
    sub = billing.cancel(sub, now=WINDOW)
    assert account_statement(account, WINDOW).ends_at == at("2026-06-01")
    scheduler.run(at("2026-05-01T06:00"))
    sub = current(account)
    assert (sub.plan.code, sub.status, sub.current_period_end, sub.cancel_at_period_end) == (
        "personal", "active", at("2026-06-01"), True)
    scheduler.run(at("2026-05-31T06:00"))
    assert not Invoice.objects.filter(account=account, period_start=at("2026-06-01")).exists()
    scheduler.run(at("2026-06-01T06:00"))
    assert current(account).plan.code == "free"


def test_can2_a_cancellation_after_a_renewal_at_a_scheduled_plan_keeps_that_plan_for_the_period_bought(account):
    """A downgrade scheduled before the renewal made it charge the lower plan; cancelling in the
    window must not give that period on the higher plan."""
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01"))
    billing.change_plan(current(account), "personal", "monthly", now=at("2026-04-20"))
    scheduler.run(at("2026-04-30T06:00"))
    assert Invoice.objects.get(kind=InvoiceKind.RENEWAL).total == Decimal("14.00")
    billing.cancel(current(account), now=WINDOW)
    scheduler.run(at("2026-05-01T06:00"))
    sub = current(account)
    assert (sub.plan.code, sub.current_period_end, sub.cancel_at_period_end) == ("personal", at("2026-06-01"), True)


@pytest.mark.parametrize("plan, cycle", [("free", "monthly"), ("personal", "yearly"), ("advanced", "yearly")])
def test_dwn1_a_change_that_would_lower_or_reshape_the_bought_period_waits_until_it_starts(account, plan, cycle):
    """A downgrade (DWN-1) or a cycle switch (UPG-3) in the window is refused with when it can be made."""
    sub = renewed_ahead(account, "advanced")
    with pytest.raises(NotEligible, match=r"Your next period \(2026-05-01 to 2026-06-01\) was already charged.*"
                                          r"once the period has started, on 2026-05-01 at 00:00 \(UTC time\)"):
        billing.preview_change(sub, plan, cycle, now=WINDOW)
    with pytest.raises(NotEligible):
        billing.change_plan(sub, plan, cycle, now=WINDOW)
    scheduler.run(at("2026-05-01T06:00"))
    billing.preview_change(current(account), plan, cycle, now=at("2026-05-01T07:00"))  # then it may


def test_add2_fewer_extra_properties_wait_until_the_bought_period_starts(account):
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01"))
    billing.set_extra_properties(current(account), 2, now=at("2026-04-02"))
    add_properties(account, 1)
    scheduler.run(at("2026-04-30T06:00"))
    with pytest.raises(NotEligible, match="was already charged"):
        billing.set_extra_properties(current(account), 1, now=WINDOW)
    assert current(account).extra_properties == 2
    scheduler.run(at("2026-05-01T06:00"))
    billing.set_extra_properties(current(account), 1, now=at("2026-05-01T07:00"))  # then it may
    assert current(account).scheduled_extra_properties == 1


def test_dwn1_undoing_a_downgrade_after_the_renewal_charged_the_lower_plan_waits(account):
    """Undoing the downgrade in the window would give the bought period on the higher plan at the
    lower plan's price."""
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01"))
    billing.change_plan(current(account), "personal", "monthly", now=at("2026-04-20"))
    scheduler.run(at("2026-04-30T06:00"))
    with pytest.raises(NotEligible, match="was already charged"):
        billing.resume(current(account), now=WINDOW)
    assert current(account).scheduled_plan.code == "personal"
    scheduler.run(at("2026-05-01T06:00"))
    assert current(account).plan.code == "personal"


def test_upg2_on_the_last_day_of_the_period_only_the_bought_period_is_charged(account):
    """No "0 of 31 days, $0.00" line: on the current period's last local day nothing of it is left."""
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01T14:00"))
    scheduler.run(at("2026-04-30T15:00"))
    sub = current(account)
    quote = billing.preview_change(sub, "advanced", "monthly", now=at("2026-05-01T10:00"))
    assert [(line.description, line.amount) for line in quote.lines] == [
        ("Upgrade from Personal to Advanced, 31 of 31 days (2026-05-01 to 2026-06-01)", Decimal("15.00"))]


def test_add1_on_the_last_day_of_the_period_only_the_bought_period_is_charged(account):
    """The same for extra properties bought on the current period's last local day."""
    billing.subscribe(account, "advanced", "monthly", now=at("2026-04-01T14:00"))
    scheduler.run(at("2026-04-30T15:00"))
    quote = billing.preview_extra_properties(current(account), 1, now=at("2026-05-01T10:00"))
    assert [line.amount for line in quote.lines] == [Decimal("30.00")]
    assert quote.lines[0].description.endswith("31 of 31 days (2026-05-01 to 2026-06-01)")


def test_can2_the_dry_run_says_a_cancellation_after_the_renewal_starts_the_bought_period(account):
    """billing_run --dry-run said the subscription would end at the period end; it rolls over."""
    billing.cancel(renewed_ahead(account), now=WINDOW)
    planned = scheduler.run(at("2026-05-01T06:00"), dry_run=True).planned
    assert any("start the next period on Personal" in line for line in planned), planned
