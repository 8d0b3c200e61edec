"""Plans and quote-and-confirm (PAY-3) for trials, upgrades and downgrades."""

from decimal import Decimal

import pytest
from django.urls import reverse

from invoices.models import Invoice, InvoiceStatus
from subscriptions import billing

from .conftest import add_properties, at, current


@pytest.fixture
def personal(account, travel):
    """Personal monthly, period 2026-04-01 -> 05-01, paid."""
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    return current(account)


def _text(response) -> str:
    return response.content.decode()


def confirm(client, plan, cycle, amount):
    return client.post(reverse("billing:change_confirm"), {"plan": plan, "cycle": cycle, "quoted_amount": amount})


def test_pay3_plans_page_marks_the_current_plan_and_says_what_each_button_does(personal, client_owner):
    html = _text(client_owner.get(reverse("billing:plans")))
    assert "Current plan" in html
    assert "Upgrade to Advanced" in html and "Downgrade to Free" in html and "Switch to yearly" in html
    assert "$14.00" in html and "$134.40" in html and "$29.00" in html and "$278.04" in html


def test_pay3_free_account_is_offered_a_free_trial(account, client_owner):
    html = _text(client_owner.get(reverse("billing:plans")))
    assert "Start free trial" in html and "Subscribe to" not in html


def test_tri1_without_a_card_the_trial_button_asks_for_one_first(catalog, owner):
    from tests.factories import AccountFactory

    from .conftest import login

    AccountFactory(owner=owner)
    html = _text(login(owner).get(reverse("billing:plans")))
    assert "Add a payment method first" in html
    assert f'{reverse("billing:payment_method")}?next=plans' in html


def test_tri1_start_a_trial_through_the_quote(account, client_owner, travel):
    travel("2026-04-01")
    quote = _text(client_owner.get(reverse("billing:change"), {"plan": "personal", "cycle": "monthly"}))
    assert "14-day free trial of Personal" in quote and "$0.00" in quote and "2026-04-15" in quote
    response = confirm(client_owner, "personal", "monthly", "0.00")
    assert response.status_code == 302
    sub = current(account)
    assert sub.status == "trialing" and sub.plan.code == "personal"
    assert not Invoice.objects.filter(account=account).exists()
    overview = _text(client_owner.get(reverse("billing:overview")))
    assert "Your free trial of Personal has started" in overview and "Trialing" in overview


def test_pay3_upgrade_quote_shows_charge_period_end_and_computation(personal, client_owner, travel):
    travel("2026-04-16")
    response = client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "monthly"})
    html = _text(response)
    assert response.status_code == 200
    assert '<span class="price" id="amount-due">$7.50</span>' in html
    assert "($29.00 − $14.00) × 15/30 days = $7.50" in html
    assert "Renews on 2026-05-01 at $29.00." in html
    assert 'name="quoted_amount" value="7.50"' in html
    assert "Pay $7.50 and upgrade" in html
    assert current(personal.account).plan.code == "personal"  # a quote changes nothing


def test_pay3_confirm_applies_exactly_the_quote(personal, client_owner, travel):
    travel("2026-04-16")
    response = confirm(client_owner, "advanced", "monthly", "7.50")
    assert response.status_code == 302 and response["Location"] == reverse("billing:overview")
    sub = current(personal.account)
    assert sub.plan.code == "advanced"
    invoice = Invoice.objects.filter(account=personal.account, kind="upgrade").get()
    assert invoice.total == Decimal("7.50") and invoice.status == InvoiceStatus.PAID
    overview = _text(client_owner.get(reverse("billing:overview")))
    assert f"Charged $7.50 (invoice {invoice.number})" in overview


def test_pay3_confirm_refuses_an_amount_other_than_the_one_quoted(personal, client_owner, travel):
    travel("2026-04-16")
    response = confirm(client_owner, "advanced", "monthly", "5.00")
    html = _text(response)
    assert response.status_code == 409
    assert "The amount has changed since you saw it" in html and "You confirmed $5.00" in html
    assert "now costs $7.50" in html and 'value="7.50"' in html
    assert current(personal.account).plan.code == "personal"
    assert not Invoice.objects.filter(account=personal.account, kind="upgrade").exists()


def test_pay3_a_quote_seen_yesterday_is_refused_today(personal, client_owner, travel):
    travel("2026-04-16")
    seen = _text(client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "monthly"}))
    assert 'value="7.50"' in seen
    travel("2026-04-17")  # one day fewer remains: (29 - 14) x 14/30 = 7.00
    response = confirm(client_owner, "advanced", "monthly", "7.50")
    assert response.status_code == 409 and "now costs $7.00" in _text(response)
    assert current(personal.account).plan.code == "personal"


def test_upg4_declined_upgrade_shows_the_reason_and_changes_nothing(personal, client_owner, travel):
    billing.set_payment_method(personal.account, "pm_card_chargeDeclinedInsufficientFunds")
    travel("2026-04-16")
    response = confirm(client_owner, "advanced", "monthly", "7.50")
    html = _text(response)
    assert response.status_code == 402
    assert "Payment declined." in html and "Your card has insufficient funds." in html
    assert "your plan is unchanged" in html
    assert current(personal.account).plan.code == "personal"
    assert not Invoice.objects.filter(account=personal.account, kind="upgrade", number__isnull=False).exists()


def test_upg3_monthly_to_yearly_quote_states_forfeited_days_and_restore_window(personal, client_owner, travel):
    travel("2026-04-16")  # a Thursday
    html = _text(client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "yearly"}))
    assert "$278.04" in html and "Advanced (yearly), 2026-04-16 to 2027-04-16" in html
    assert "The 15 unused days of your monthly period are forfeited" in html
    assert "until Thursday 2026-04-23 (5 working days)" in html
    response = confirm(client_owner, "advanced", "yearly", "278.04")
    assert response.status_code == 302
    invoice = Invoice.objects.get(account=personal.account, kind="upgrade")
    assert "15 unused days" in invoice.notes
    detail = _text(client_owner.get(reverse("invoices:detail", args=[invoice.pk])))
    assert "15 unused days" in detail


def test_dwn1_downgrade_is_scheduled_and_shown_with_undo(personal, client_owner, travel):
    travel("2026-04-10")
    quote = _text(client_owner.get(reverse("billing:change"), {"plan": "free", "cycle": "monthly"}))
    assert "You keep Personal until 2026-05-01" in quote and "$0.00" in quote
    assert "At the end of your current period, 2026-05-01" in quote
    assert confirm(client_owner, "free", "monthly", "0.00").status_code == 302
    overview = _text(client_owner.get(reverse("billing:overview")))
    assert "Downgrade to Free on 2026-05-01" in overview and "Undo downgrade" in overview
    assert client_owner.post(reverse("billing:resume")).status_code == 302
    assert current(personal.account).scheduled_plan is None
    assert "Downgrade to Free on" not in _text(client_owner.get(reverse("billing:overview")))


def test_dwn3_refused_downgrade_says_what_to_remove_and_links_to_properties(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "advanced", "monthly")
    add_properties(account, 10)
    response = client_owner.get(reverse("billing:change"), {"plan": "personal", "cycle": "monthly"})
    html = _text(response)
    assert response.status_code == 409
    assert "Personal allows 3 properties; you have 10. Delete 7 properties to downgrade." in html
    assert reverse("accounts:properties") in html
    posted = confirm(client_owner, "personal", "monthly", "0.00")
    assert posted.status_code == 409 and "Delete 7 properties" in _text(posted)
    assert current(account).scheduled_plan is None


def test_upg7_plan_change_while_past_due_is_refused_with_the_reason(personal, client_owner, travel):
    from subscriptions import scheduler

    billing.set_payment_method(personal.account, "pm_card_chargeCustomerFail")
    scheduler.run(now=at("2026-04-30T01:00"))
    travel("2026-04-30T02:00")
    response = client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "monthly"}, follow=True)
    assert "Update your payment method and pay the open invoice" in _text(response)


def test_tri6_plan_change_during_a_trial_is_free(account, client_owner, travel):
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    html = _text(client_owner.get(reverse("billing:plans")))
    assert "Switch trial to Advanced" in html
    quote = _text(client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "monthly"}))
    assert "Trial switched to Advanced" in quote and "Switch my trial" in quote
    assert confirm(client_owner, "advanced", "monthly", "0.00").status_code == 302
    assert current(account).plan.code == "advanced" and current(account).status == "trialing"


def test_add1_extra_properties_quote_and_confirm(account, client_owner, travel):
    travel("2026-06-01")
    billing.subscribe(account, "advanced", "monthly")
    travel("2026-06-11")
    form = _text(client_owner.get(reverse("billing:extra_properties")))
    assert '<label for="id_quantity">' in form
    quote = _text(client_owner.get(reverse("billing:extra_properties"), {"quantity": "2"}))
    assert '<span class="price" id="amount-due">$40.00</span>' in quote
    assert "2 × $30.00 × 20/30 days = $40.00" in quote
    response = client_owner.post(reverse("billing:extra_properties_confirm"),
                                 {"quantity": "2", "quoted_amount": "40.00"})
    assert response.status_code == 302
    assert current(account).extra_properties == 2
    assert Invoice.objects.get(account=account, kind="add_on").total == Decimal("40.00")


def test_add1_extra_properties_confirm_refuses_a_different_amount(account, client_owner, travel):
    travel("2026-06-01")
    billing.subscribe(account, "advanced", "monthly")
    travel("2026-06-11")
    response = client_owner.post(reverse("billing:extra_properties_confirm"),
                                 {"quantity": "2", "quoted_amount": "1.00"})
    assert response.status_code == 409 and "now costs $40.00" in _text(response)
    assert current(account).extra_properties == 0


def test_pay3_amount_changing_between_the_check_and_the_charge_is_refused_by_the_engine(
    personal, client_owner, travel, monkeypatch
):
    """The page's check and the engine's lock are two moments: the engine re-checks under its lock."""
    travel("2026-04-16")
    real_preview = billing.preview_change

    def stale_preview(*args, **kwargs):  # what the page computed a moment earlier
        from dataclasses import replace

        return replace(real_preview(*args, **kwargs), amount_due=Decimal("8.00"))

    monkeypatch.setattr(billing, "preview_change", stale_preview)
    response = confirm(client_owner, "advanced", "monthly", "8.00")
    assert response.status_code == 409 and "now costs $7.50" in _text(response)
    assert current(personal.account).plan.code == "personal"
    assert not Invoice.objects.filter(account=personal.account, kind="upgrade").exists()


def test_ren1_in_the_24_hours_after_the_renewal_the_pages_say_what_a_change_does_to_the_period_bought(
        account, client_owner, travel):
    """The quote of an upgrade charges the bought next period's difference and names the next
    charge after it; a downgrade explains when it can be made; the cancel page names the end of
    the period bought."""
    from subscriptions import scheduler

    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    scheduler.run(at("2026-04-30T06:00"))
    travel("2026-04-30T12:00")
    quote = _text(client_owner.get(reverse("billing:change"), {"plan": "advanced", "cycle": "monthly"}))
    assert '<span class="price" id="amount-due">$15.50</span>' in quote
    assert "($29.00 − $14.00) × 31/31 days = $15.00" in quote and "Renews on 2026-06-01 at $29.00." in quote
    refused = client_owner.get(reverse("billing:change"), {"plan": "free", "cycle": "monthly"}, follow=True)
    assert "Your next period (2026-05-01 to 2026-06-01) was already charged" in _text(refused)
    assert "continues until <strong>2026-06-01</strong>" in _text(client_owner.get(reverse("billing:cancel")))


def test_can2_cancelled_in_the_24_hours_after_the_renewal_every_page_names_the_end_of_the_period_bought(
        account, client_owner, travel):
    """The overview's pending-changes banner named the current period's end while the flash, the
    cancel page and the e-mail named the bought period's."""
    from subscriptions import scheduler

    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    scheduler.run(at("2026-04-30T06:00"))
    travel("2026-04-30T12:00")
    response = client_owner.post(reverse("billing:cancel"), {"reason_code": "", "reason": ""}, follow=True)
    html = _text(response)
    assert "Service runs until 2026-06-01" in html
    assert "service runs until 2026-06-01, then the account moves to Free" in html
