"""PAY-5: the owner removes the card on file unless a paid subscription needs it (then the reason
says why and what to do); the card is detached at the gateway outside any transaction; removing
a card is never a cancellation (CAN-1)."""

from datetime import date
from decimal import Decimal

import pytest

from accounts.models import AuditEvent, UsageMonth
from invoices.gateways.sandbox import faults
from invoices.models import PaymentMethod, SandboxCard
from subscriptions import billing, scheduler, selectors, usage_panel

from .conftest import at, current


def card(account) -> PaymentMethod:
    return PaymentMethod.objects.filter(account=account).order_by("-id").first()


def refused(account, now) -> str:
    with pytest.raises(billing.NotEligible) as info:
        billing.payment_method_remove(account, now=now)
    assert card(account).is_default and card(account).detached_at is None  # nothing changed
    assert selectors.card_removal_refusal(account, now) == str(info.value)  # the page says the same
    return str(info.value)


def test_pay5_on_free_the_card_is_removed_here_and_at_the_gateway(account):
    method = card(account)
    removed = billing.payment_method_remove(account, now=at("2026-04-01"))
    assert removed.pk == method.pk
    method.refresh_from_db()
    assert method.detached_at == at("2026-04-01") and not method.is_default
    assert SandboxCard.objects.get(gateway_id=method.gateway_id).customer == ""  # detached at the gateway
    assert AuditEvent.objects.filter(action="payment_method.removed", object_id=str(method.pk)).exists()
    assert current(account).plan.code == "free" and current(account).status == "active"  # CAN-1: nothing else
    with pytest.raises(billing.InvalidChange, match="no card on file"):
        billing.payment_method_remove(account, now=at("2026-04-02"))


def test_pay5_a_removed_card_is_never_charged_again(account):
    """A trial needs a card again (TRI-1) and a subscription is refused until one is saved."""
    billing.payment_method_remove(account, now=at("2026-04-01"))
    with pytest.raises(billing.NotEligible, match="Add a payment method"):
        billing.start_trial(account, "personal", "monthly", now=at("2026-04-02"))
    with pytest.raises(billing.NotEligible, match="Add a payment method first"):
        billing.subscribe(account, "personal", "monthly", now=at("2026-04-02"))


def test_pay5_a_trial_needs_the_card_it_converts_on(account):
    billing.start_trial(account, "personal", "monthly", now=at("2026-04-01"))
    reason = refused(account, at("2026-04-05"))
    assert reason == ("Your free trial of Personal converts on 2026-04-15: $14.00 is charged to this card. Replace the "
                      "card with another one, or cancel first: a card can be removed once no charge is scheduled.")


def test_pay5_an_active_paid_subscription_needs_the_card_for_its_renewal(account):
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    reason = refused(account, at("2026-04-10"))
    assert reason.startswith("The next charge of your Personal subscription, $14.00 on 2026-04-30, is made with "
                             "this card.")


def test_pay5_a_subscription_cancelling_at_period_end_renews_nothing_so_the_card_may_go(account):
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    billing.cancel(current(account), now=at("2026-04-10"))
    billing.payment_method_remove(account, now=at("2026-04-11"))
    assert card(account).detached_at is not None
    report = scheduler.run(now=at("2026-05-01T00:01"))  # CAN-2: the period ends, the account moves to Free
    assert not report.failures
    assert current(account).plan.code == "free"


def test_pay5_a_scheduled_downgrade_to_free_renews_nothing_so_the_card_may_go(account):
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    billing.change_plan(current(account), "free", "monthly", now=at("2026-04-10"))
    billing.payment_method_remove(account, now=at("2026-04-11"))
    assert card(account).detached_at is not None


def test_pay5_money_owed_keeps_the_card_until_it_is_paid_or_replaced(account):
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-02"))
    scheduler.run(now=at("2026-04-30T01:00"))
    assert current(account).status == "past_due"
    reason = refused(account, at("2026-04-30T02:00"))
    assert reason.startswith("You have $14.00 unpaid (invoice ") and "Pay it first, or replace the card" in reason


def test_pay5_overage_counted_this_month_keeps_the_card_for_the_invoice_on_the_1st(account):
    billing.subscribe(account, "personal", "monthly", now=at("2026-04-01"))
    billing.cancel(current(account), now=at("2026-04-02"))  # no renewal any more
    UsageMonth.objects.update_or_create(account=account, month=date(2026, 4, 1),
                                        defaults={"sessions": 12_500, "sessions_included": 10_000})
    reason = refused(account, at("2026-04-20"))
    assert reason.startswith("Sessions over your quota this month ($5.00 so far) are invoiced on the 1st")
    assert Decimal("5.00") == usage_panel.usage_summary(account, at("2026-04-20"))["overage_amount"]


def test_pay5_when_the_gateway_does_not_answer_the_card_stays_on_file(account):
    method = card(account)
    with faults(unavailable=True), pytest.raises(billing.BillingError, match="did not answer, so your card is still"):
        billing.payment_method_remove(account, now=at("2026-04-01"))
    method.refresh_from_db()
    assert method.is_default and method.detached_at is None
    assert SandboxCard.objects.get(gateway_id=method.gateway_id).customer != ""
    assert AuditEvent.objects.filter(action="payment_method.remove_failed").exists()
    billing.payment_method_remove(account, now=at("2026-04-01T00:05"))  # trying again works
    assert card(account).detached_at is not None
