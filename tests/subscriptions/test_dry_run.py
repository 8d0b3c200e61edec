"""`billing_run --dry-run` states what the run will charge, from the computation the charge itself
uses (PAY-4: the period's lines less the account's credit, DWN-4), and flags a renewal with no card
on file. It said $29.00 where $26.50 was charged, $14.00 where $0.00 was, and never named a
missing card."""

import re
from decimal import Decimal

import pytest

from invoices.models import Invoice
from subscriptions import billing, scheduler

from .conftest import at, current

pytestmark = pytest.mark.django_db


def _said(planned: list[str]) -> Decimal:
    (line,) = [line for line in planned if line.startswith("renew ")]
    return Decimal(re.search(r"charge \$([\d,.]+)", line).group(1))


@pytest.mark.parametrize(("downgraded_on", "said", "credit"), [
    ("2026-04-16", "$6.50 ($14.00 less $7.50 of credit)", Decimal("7.50")),
    ("2026-04-02", "$0.00 ($14.00 less $14.00 of credit)", Decimal("14.50")),
])
def test_pay4_dry_run_states_the_charge_after_credit_as_the_run_charges_it(account, settings, downgraded_on, said,
                                                                           credit):
    settings.BILLING_DOWNGRADE_TIMING = "immediate"  # DWN-4: the unused difference becomes credit
    billing.subscribe(account, "advanced", now=at("2026-04-01"))
    billing.change_plan(current(account), "personal", "monthly", now=at(downgraded_on))
    planned = scheduler.run(at("2026-04-30T01:00"), dry_run=True).planned
    assert any(said in line for line in planned), planned
    assert not Invoice.objects.filter(kind="renewal").exists()  # the dry run changed nothing
    scheduler.run(at("2026-04-30T01:00"))
    renewal = Invoice.objects.get(kind="renewal")
    assert renewal.credit_applied == min(credit, Decimal("14.00"))
    assert renewal.total == _said(planned)


def test_pay6_dry_run_flags_a_renewal_with_no_card_on_file(account):
    billing.subscribe(account, "advanced", now=at("2026-04-01"))
    # A card removed at the gateway (never a cancellation, CAN-1): the renewal will fail.
    method = account.payment_methods.get(is_default=True)
    billing.payment_method_detached(account, method.gateway_id, now=at("2026-04-20"))
    planned = scheduler.run(at("2026-04-30T01:00"), dry_run=True).planned
    (line,) = [line for line in planned if line.startswith("renew ")]
    assert "charge $29.00" in line and "NO CARD ON FILE" in line
