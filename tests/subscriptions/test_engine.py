"""The billing engine's public API against the policy's worked examples, to the cent."""

from decimal import Decimal

import pytest

from accounts.models import AccountFlag, AuditEvent, FlagKind
from invoices.gateways import sandbox
from invoices.models import CreditNote, Invoice, InvoiceStatus, Payment, PaymentMethod, SandboxCharge
from subscriptions import billing, charges
from tests.factories import AccountFactory, UserFactory

from .conftest import add_properties, at, current

pytestmark = pytest.mark.django_db


def paid_personal(account, day="2026-04-01"):
    return billing.subscribe(account, "personal", now=at(day))


# --- D / REN-4 -----------------------------------------------------------------------------------


def test_ren4_first_paid_subscription_starts_on_the_payment_date(account):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01T09:30"))
    assert (sub.status, sub.plan.code, sub.cycle) == ("active", "personal", "monthly")
    assert sub.current_period_start == at("2026-04-01T09:30")
    assert sub.current_period_end == at("2026-05-01T09:30")
    invoice = Invoice.objects.get(account=account)
    assert (invoice.status, invoice.total, invoice.amount_paid) == ("paid", Decimal("14.00"), Decimal("14.00"))
    assert invoice.number == "2026-000001"


def test_d1_monthly_periods_clamp_the_anchor_day(account):
    sub = billing.subscribe(account, "personal", now=at("2026-01-31"))
    assert sub.current_period_end == at("2026-02-28")


# --- TRI ------------------------------------------------------------------------------------------


def test_tri1_trial_needs_a_card_and_charges_nothing(catalog):
    acct = AccountFactory()
    with pytest.raises(billing.NotEligible, match="Add a payment method"):
        billing.start_trial(acct, "personal", now=at("2026-04-01"))
    billing.set_payment_method(acct, "pm_card_visa", now=at("2026-04-01"))
    sub = billing.start_trial(acct, "personal", now=at("2026-04-01T08:00"))
    assert sub.status == "trialing" and sub.trial_end == at("2026-04-15T08:00")
    assert not Invoice.objects.exists() and not SandboxCharge.objects.exists()


def test_tri2_one_trial_per_account(account):
    sub = billing.start_trial(account, "personal", now=at("2026-04-01"))
    billing.cancel(sub, now=at("2026-04-02"))
    with pytest.raises(billing.NotEligible, match="already had a free trial"):
        billing.start_trial(account, "advanced", now=at("2026-05-01"))


def test_tri2_trial_refused_on_matching_card_fingerprint_and_flagged(account, catalog):
    billing.start_trial(account, "personal", now=at("2026-04-01"))
    other = AccountFactory()
    billing.set_payment_method(other, "pm_card_visa", now=at("2026-04-02"))  # the same card
    with pytest.raises(billing.NotEligible, match="already used with this card"):
        billing.start_trial(other, "personal", now=at("2026-04-02"))
    flag = AccountFlag.objects.get(account=other, kind=FlagKind.TRIAL_ABUSE)
    assert flag.matched_account_id == account.pk
    # The customer may still subscribe without a trial (TRI-2).
    quote = billing.preview_change(current(other), "personal", "monthly", now=at("2026-04-02"))
    assert quote.kind == "new" and quote.amount_due == Decimal("14.00")


def test_tri2_gmail_dots_and_tags_are_the_same_person(catalog):
    first = AccountFactory(owner=UserFactory(username="jane.doe@gmail.com"))
    billing.set_payment_method(first, "pm_card_visa", now=at("2026-04-01"))
    billing.start_trial(first, "personal", now=at("2026-04-01"))
    second = AccountFactory(owner=UserFactory(username="JaneDoe+billing@gmail.com"))
    billing.set_payment_method(second, "pm_card_mastercard", now=at("2026-04-03"))
    with pytest.raises(billing.NotEligible, match="e-mail address"):
        billing.start_trial(second, "personal", now=at("2026-04-03"))
    assert AccountFlag.objects.filter(account=second, matched_account=first).exists()


def test_tri4_cancelling_a_trial_suspends_the_account_at_once_and_charges_nothing(account):
    sub = billing.start_trial(account, "advanced", now=at("2026-04-01"))
    billing.cancel(sub, reason="Too expensive", now=at("2026-04-05"))
    account.refresh_from_db()
    sub.refresh_from_db()
    assert sub.status == "canceled" and sub.cancel_reason == "Too expensive"
    assert (account.status, account.suspension_reason) == ("suspended", "cancelled_trial")
    assert not SandboxCharge.objects.exists()


def test_tri5_cancelled_trial_reactivates_until_its_original_end_date(account):
    sub = billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))
    billing.cancel(sub, now=at("2026-04-03"))
    resumed = billing.resume(sub, now=at("2026-04-10"))
    account.refresh_from_db()
    assert resumed.status == "trialing" and resumed.trial_end == at("2026-04-15T08:00")  # the end date does not move
    assert account.status == "active"
    billing.cancel(resumed, now=at("2026-04-11"))
    with pytest.raises(billing.NotEligible, match="ended on 2026-04-15"):
        billing.resume(resumed, now=at("2026-04-16"))


def test_tri6_plan_change_during_trial_is_free_and_keeps_the_end_date(account):
    sub = billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))
    quote = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-05"))
    sub.refresh_from_db()
    assert quote.kind == "trial_change" and quote.amount_due == 0
    assert (sub.plan.code, sub.status, sub.trial_end) == ("advanced", "trialing", at("2026-04-15T08:00"))
    assert not Invoice.objects.exists()


# --- UPG ------------------------------------------------------------------------------------------


def test_upg2_same_cycle_upgrade_prorates_by_days(account):
    sub = paid_personal(account)
    preview = billing.preview_change(sub, "advanced", "monthly", now=at("2026-04-16T10:00"))
    assert preview.amount_due == Decimal("7.50")
    assert preview.lines[0].computation == "($29.00 − $14.00) × 15/30 days = $7.50"
    assert not Invoice.objects.filter(kind="upgrade").exists()  # a preview changes nothing
    quote = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16T10:00"))
    sub.refresh_from_db()
    assert quote.amount_due == Decimal("7.50") and quote.invoice.total == Decimal("7.50")
    assert quote.invoice.status == "paid"
    assert sub.plan.code == "advanced" and sub.current_price == Decimal("29.00")
    assert (sub.current_period_start, sub.current_period_end) == (at("2026-04-01"), at("2026-05-01"))
    paid = sum(i.amount_paid for i in Invoice.objects.filter(account=account))
    assert paid == Decimal("21.50")  # the period cost $21.50 in all; renews at $29 on 05-01


def test_upg2_consecutive_upgrades_each_charge_only_their_own_difference(account, premium):
    sub = paid_personal(account)
    first = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    second = billing.change_plan(sub, "premium", "monthly", now=at("2026-04-21"))
    assert first.amount_due == Decimal("7.50")
    assert second.amount_due == Decimal("6.67")  # (49 - 29) x 10/30, not (49 - 14) x 10/30
    assert second.lines[0].computation == "($49.00 − $29.00) × 10/30 days = $6.67"


def test_upg2_upgrade_downgrade_upgrade_in_one_period_stays_exact(account, premium):
    sub = paid_personal(account)
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-18"))  # scheduled for 05-01
    sub.refresh_from_db()
    assert sub.plan.code == "advanced" and sub.scheduled_plan.code == "personal"
    quote = billing.change_plan(sub, "premium", "monthly", now=at("2026-04-21"))
    sub.refresh_from_db()
    assert quote.amount_due == Decimal("6.67")
    assert sub.scheduled_plan is None  # UPG-5
    charged = [i.total for i in Invoice.objects.filter(account=account).order_by("id")]
    assert charged == [Decimal("14.00"), Decimal("7.50"), Decimal("6.67")]


def test_upg2_yearly_to_yearly_upgrade_prorates_by_days(account):
    sub = billing.subscribe(account, "personal", "yearly", now=at("2026-01-01"))
    quote = billing.change_plan(sub, "advanced", "yearly", now=at("2026-04-11"))  # day 100 of 365
    assert quote.amount_due == Decimal("104.29")  # (278.04 - 134.40) x 265/365 = 104.287...
    assert quote.lines[0].computation == "($278.04 − $134.40) × 265/365 days = $104.29"


def test_upg3_monthly_to_yearly_starts_a_new_year_and_forfeits_the_days_left(account):
    sub = paid_personal(account)
    preview = billing.preview_change(sub, "advanced", "yearly", now=at("2026-04-16"))
    assert preview.amount_due == Decimal("278.04") and preview.forfeited_days == 15
    assert "15 unused days" in preview.notes[0] and "Thursday 2026-04-23" in preview.notes[0]
    quote = billing.change_plan(sub, "advanced", "yearly", now=at("2026-04-16"))
    sub.refresh_from_db()
    assert (sub.cycle, sub.current_period_start, sub.current_period_end) == (
        "yearly", at("2026-04-16"), at("2027-04-16"))
    assert "15 unused days" in quote.invoice.notes


def test_upg4_declined_upgrade_changes_nothing(account):
    sub = paid_personal(account)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-10"))
    before_invoices = list(Invoice.objects.exclude(status="draft").values_list("number", "status"))
    with pytest.raises(billing.PaymentDeclined, match="declined"):
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    sub.refresh_from_db()
    assert sub.plan.code == "personal" and sub.status == "active" and sub.charge_in_flight is None
    assert list(Invoice.objects.exclude(status="draft").values_list("number", "status")) == before_invoices
    attempt = Payment.objects.get(status="failed")  # the attempt is kept, on an unissued draft
    assert attempt.invoice.number is None and attempt.decline_code == "card_declined"
    assert AuditEvent.objects.filter(action="charge.declined").exists()


def test_upg5_upgrade_clears_a_scheduled_cancellation(account):
    sub = paid_personal(account)
    billing.cancel(sub, now=at("2026-04-05"))
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    sub.refresh_from_db()
    assert not sub.cancel_at_period_end


def test_upg6_free_to_paid_is_a_trial_when_eligible(account):
    quote = billing.change_plan(current(account), "personal", "monthly", now=at("2026-04-01"))
    assert quote.kind == "new" and quote.amount_due == 0
    assert current(account).status == "trialing"


def test_upg6_free_to_paid_without_trial_eligibility_is_charged_now(account):
    account.trial_used_at = at("2025-01-01")
    account.save()
    quote = billing.change_plan(current(account), "personal", "monthly", now=at("2026-04-01T12:00"))
    sub = current(account)
    assert quote.amount_due == Decimal("14.00") and quote.invoice.status == "paid"
    assert (sub.status, sub.current_period_start) == ("active", at("2026-04-01T12:00"))


def test_upg7_plan_changes_refused_while_past_due(account):
    sub = paid_personal(account)
    sub.status = "past_due"
    sub.save()
    with pytest.raises(billing.NotEligible, match="Update your payment method"):
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))


# --- DWN ------------------------------------------------------------------------------------------


def test_dwn1_downgrade_is_scheduled_for_the_period_end_with_no_charge(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    quote = billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))  # day 10 of 30
    sub.refresh_from_db()
    assert quote.kind == "downgrade" and quote.amount_due == 0 and quote.effective_at == at("2026-05-01")
    assert sub.plan.code == "advanced" and sub.scheduled_plan.code == "personal"
    assert not Invoice.objects.filter(kind="upgrade").exists() and not CreditNote.objects.exists()


def test_dwn1_yearly_to_monthly_waits_for_the_end_of_the_year(account):
    sub = billing.subscribe(account, "advanced", "yearly", now=at("2026-01-01"))
    quote = billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))  # after 100 of 365 days
    assert quote.effective_at == at("2027-01-01")  # Advanced for 265 more days
    assert "then you move to Personal (monthly) and it renews at $14.00" in quote.at_period_end


def test_dwn1_the_owner_can_undo_a_scheduled_downgrade(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))
    billing.resume(sub, now=at("2026-04-12"))
    sub.refresh_from_db()
    assert sub.scheduled_plan is None


def test_dwn3_downgrade_refused_when_the_account_does_not_fit(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    add_properties(account, 10)
    with pytest.raises(billing.LimitExceeded) as exc:
        billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))
    assert str(exc.value) == "Personal allows 3 properties; you have 10. Delete 7 properties to downgrade."
    sub.refresh_from_db()
    assert sub.scheduled_plan is None


def test_dwn4_immediate_downgrade_issues_a_credit_note_used_on_the_next_invoice(account, settings):
    settings.BILLING_DOWNGRADE_TIMING = "immediate"
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    quote = billing.change_plan(sub, "personal", "monthly", now=at("2026-04-16"))
    sub.refresh_from_db()
    assert sub.plan.code == "personal" and quote.lines[0].amount == Decimal("7.50")
    note = CreditNote.objects.get()
    assert (note.amount, note.remaining, note.kind) == (Decimal("7.50"), Decimal("7.50"), "downgrade")
    assert note.number == "CN-2026-000001" and note.invoice.number == "2026-000001"
    # The credit pays part of the next charge: an upgrade back costs 7.50 - 7.50 = 0 (INV-5).
    again = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    note.refresh_from_db()
    assert again.invoice.credit_applied == Decimal("7.50") and again.invoice.total == 0
    assert again.invoice.status == "paid" and note.remaining == 0
    assert SandboxCharge.objects.count() == 1  # only the first subscription was charged


def test_inv5_a_quote_charges_now_what_the_card_is_charged_after_the_accounts_credit(account):
    """PAY-3 with INV-5: credit on the account pays part of a change; the quote takes it off as a
    line, so "Charged now" is the invoice's total and the card's charge, and the next charge is not
    told the same credit again (PAY-4)."""
    from invoices import services as ledger

    sub = paid_personal(account)
    first = Invoice.objects.get(kind="subscription")
    ledger.credit_note_issue(account=account, invoice=first, kind="correction", amount=Decimal("5.00"),
                             reason="Goodwill", now=at("2026-04-10"))
    quote = billing.preview_change(sub, "advanced", "monthly", now=at("2026-04-16"))
    assert quote.amount_due == Decimal("2.50")  # 7.50 for the days left, less 5.00 of credit
    assert [(line.description, line.amount) for line in quote.lines][-1] == ("Your credit", Decimal("-5.00"))
    assert quote.next_charge.credit == 0  # the credit is spent now, not at the renewal
    applied = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"), expected_amount=Decimal("2.50"))
    assert (applied.invoice.credit_applied, applied.invoice.total) == (Decimal("5.00"), Decimal("2.50"))
    assert SandboxCharge.objects.order_by("-id").first().amount == Decimal("2.50")
    # Extra properties: the same, with the credit a DWN-4-like correction leaves.
    ledger.credit_note_issue(account=account, invoice=first, kind="correction", amount=Decimal("1.00"),
                             reason="Goodwill", now=at("2026-04-20"))
    sub.refresh_from_db()
    addon = billing.preview_extra_properties(sub, 1, now=at("2026-04-20"))
    bought = billing.set_extra_properties(sub, 1, now=at("2026-04-20"), expected_amount=addon.amount_due)
    assert addon.lines[-1].amount == Decimal("-1.00") and bought.invoice.total == addon.amount_due
    assert SandboxCharge.objects.order_by("-id").first().amount == addon.amount_due


# --- CAN ------------------------------------------------------------------------------------------


def test_can2_paid_subscription_cancels_at_period_end_and_can_resume(account):
    sub = paid_personal(account)
    billing.cancel(sub, reason="Closing the shop", now=at("2026-04-10"))
    sub.refresh_from_db()
    assert sub.cancel_at_period_end and sub.status == "active" and sub.cancel_reason == "Closing the shop"
    with pytest.raises(billing.InvalidChange, match="already ends on 2026-05-01"):
        billing.cancel(sub, now=at("2026-04-11"))
    billing.resume(sub, now=at("2026-04-12"))  # CAN-3
    sub.refresh_from_db()
    assert not sub.cancel_at_period_end


def test_can1_free_plan_has_nothing_to_cancel(account):
    with pytest.raises(billing.InvalidChange):
        billing.cancel(current(account), now=at("2026-04-01"))


# --- ADD ------------------------------------------------------------------------------------------


def test_add1_extra_properties_are_charged_prorated(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    quote = billing.set_extra_properties(sub, 2, now=at("2026-06-11"))
    sub.refresh_from_db()
    assert quote.amount_due == Decimal("40.00")
    assert quote.lines[0].computation == "2 × $30.00 × 20/30 days = $40.00"
    assert sub.extra_properties == 2 and quote.invoice.status == "paid"


def test_add1_extra_properties_raise_the_property_limit(account):
    from accounts import services

    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    billing.set_extra_properties(sub, 2, now=at("2026-06-11"))
    assert services.property_limit(account) == 12


def test_add1_add_on_not_offered_on_personal(account):
    sub = paid_personal(account)
    with pytest.raises(billing.InvalidChange, match="does not offer extra properties"):
        billing.set_extra_properties(sub, 1, now=at("2026-04-02"))


def test_add2_lowering_the_quantity_waits_for_the_period_end_and_needs_a_fit(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    billing.set_extra_properties(sub, 2, now=at("2026-06-11"))
    add_properties(account, 12)
    with pytest.raises(billing.LimitExceeded, match="Delete 2 properties"):
        billing.set_extra_properties(sub, 0, now=at("2026-06-12"))
    account.properties.filter(pk__in=list(account.properties.values_list("pk", flat=True)[:2])).delete()
    quote = billing.set_extra_properties(sub, 0, now=at("2026-06-12"))
    sub.refresh_from_db()
    assert quote.amount_due == 0 and sub.extra_properties == 2 and sub.scheduled_extra_properties == 0


# --- PAY ------------------------------------------------------------------------------------------


def test_pay1_sandbox_understands_stripe_test_tokens_and_stores_no_number(catalog):
    acct = AccountFactory()
    method = billing.set_payment_method(acct, "pm_card_visa", now=at("2026-04-01"))
    assert (method.brand, method.last4, method.exp_month) == ("visa", "4242", 12)
    assert method.fingerprint.startswith("fp_") and method.gateway_id.startswith("pm_sbx_")
    with pytest.raises(billing.PaymentDeclined, match="declined"):
        billing.set_payment_method(acct, "pm_card_chargeDeclined", now=at("2026-04-01"))
    assert PaymentMethod.objects.filter(account=acct).count() == 1
    billing.set_payment_method(acct, "pm_card_chargeDeclinedInsufficientFunds", now=at("2026-04-02"))
    with pytest.raises(billing.PaymentDeclined, match="insufficient funds"):
        billing.subscribe(acct, "personal", now=at("2026-04-02"))
    billing.set_payment_method(acct, "pm_card_chargeCustomerFail", now=at("2026-04-03"))
    assert PaymentMethod.objects.get(account=acct, is_default=True).last4 == "0341"
    with pytest.raises(billing.PaymentDeclined):
        billing.subscribe(acct, "personal", now=at("2026-04-03"))
    with pytest.raises(billing.PaymentDeclined, match="Unknown test token"):
        billing.set_payment_method(acct, "4242424242424242", now=at("2026-04-03"))
    # A label names another card of the same kind: same behaviour, its own fingerprint.
    labelled = billing.set_payment_method(acct, "pm_card_visa:second", now=at("2026-04-04"))
    assert labelled.last4 == "4242" and labelled.fingerprint != method.fingerprint


def test_pay2_a_timeout_is_settled_through_the_idempotency_key_not_charged_twice(account):
    sub = paid_personal(account)
    with sandbox.faults(timeout_after_charge=1):
        quote = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    assert quote.invoice.status == "paid" and quote.amount_due == Decimal("7.50")
    assert SandboxCharge.objects.filter(amount=Decimal("7.50")).count() == 1
    sub.refresh_from_db()
    assert sub.plan.code == "advanced"


def test_pay2_an_unknown_outcome_is_settled_later_exactly_once(account):
    sub = paid_personal(account)
    with sandbox.faults(timeout_after_charge=1, unavailable=False):
        pass
    # The gateway charges, the answer is lost, and the lookup fails too: the outcome is unknown.
    with sandbox.faults(timeout_after_charge=1) as state:
        original = sandbox.SandboxGateway.find_charge

        def unreachable(self, key):
            raise sandbox.GatewayUnavailable("down")

        sandbox.SandboxGateway.find_charge = unreachable
        try:
            with pytest.raises(billing.PaymentPending):
                billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
        finally:
            sandbox.SandboxGateway.find_charge = original
        assert state["timeout_after_charge"] == 0
    sub.refresh_from_db()
    assert sub.plan.code == "personal" and sub.charge_in_flight is not None
    with pytest.raises(billing.InvalidChange, match="still being processed"):
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16T00:01"))
    settled = charges.payments_settle_unknown(now=at("2026-04-16T00:10"))
    assert [p.status for p in settled] == ["succeeded"]
    assert charges.payments_settle_unknown(now=at("2026-04-16T00:20")) == []
    sub.refresh_from_db()
    assert sub.plan.code == "advanced" and sub.charge_in_flight is None
    assert SandboxCharge.objects.filter(amount=Decimal("7.50")).count() == 1
    assert Invoice.objects.get(kind="upgrade").status == "paid"


# --- INV ------------------------------------------------------------------------------------------


def test_inv1_invoice_numbers_are_gapless_within_a_year_even_after_a_decline(account):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-10"))
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at("2026-04-11"))
    with pytest.raises(billing.PaymentDeclined):
        billing.set_extra_properties(sub, 1, now=at("2026-04-12"))
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-13"))
    billing.set_extra_properties(sub, 1, now=at("2026-04-14"))
    numbers = list(Invoice.objects.filter(number__isnull=False).order_by("number").values_list("number", flat=True))
    assert numbers == ["2026-000001", "2026-000002", "2026-000003"]


def test_inv1_invoice_keeps_billing_details_lines_and_totals(account):
    account.company, account.vat_id, account.country = "Acme GmbH", "DE123456789", "DE"
    account.save()
    sub = paid_personal(account)
    invoice = Invoice.objects.get(subscription=sub)
    assert (invoice.bill_to_company, invoice.bill_to_vat_id, invoice.bill_to_country) == (
        "Acme GmbH", "DE123456789", "DE")
    line = invoice.lines.get()
    assert line.amount == Decimal("14.00") and line.period_start == at("2026-04-01")
    assert invoice.subtotal == invoice.total == invoice.amount_paid == Decimal("14.00")
    assert invoice.payments.get().status == "succeeded"


def test_inv4_new_billing_details_appear_on_later_invoices_only(account):
    sub = paid_personal(account)
    account.company = "New Name Ltd"
    account.save()
    billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"))
    first, second = Invoice.objects.order_by("id")
    assert first.bill_to_company == "" and second.bill_to_company == "New Name Ltd"


# --- ACC-3 ----------------------------------------------------------------------------------------


def test_acc3_every_change_writes_an_audit_row_with_actor_and_before_after(account):
    owner = account.owner
    sub = billing.subscribe(account, "personal", actor=owner, now=at("2026-04-01"))
    billing.change_plan(sub, "advanced", "monthly", actor=owner, now=at("2026-04-16"))
    event = AuditEvent.objects.get(action="subscription.upgraded")
    assert event.actor == owner and event.actor_label.endswith("(customer)")
    assert event.before["plan"] == "personal" and event.after["plan"] == "advanced"
    assert event.created_at == at("2026-04-16")
    event.reason = "edited"
    with pytest.raises(Exception, match="append-only"):
        event.save()
    assert InvoiceStatus.PAID == "paid"


def test_pay2_a_charge_the_gateway_has_not_seen_yet_stays_unknown_until_the_grace_period(account, monkeypatch):
    sub = paid_personal(account)

    def lost_on_the_way(self, **kwargs):
        raise sandbox.GatewayUnavailable("connection reset before the gateway answered")

    monkeypatch.setattr(sandbox.SandboxGateway, "charge", lost_on_the_way)
    with pytest.raises(billing.PaymentPending):
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16T10:00"))
    payment = Payment.objects.get(invoice__kind="upgrade")
    assert payment.status == "unknown"  # not "failed": it may still complete at the gateway
    assert charges.payments_settle_unknown(now=at("2026-04-16T10:01")) == []  # within the grace period
    settled = charges.payments_settle_unknown(now=at("2026-04-16T10:10"))
    assert [(p.status, p.decline_code) for p in settled] == [("failed", "not_sent")]
    sub.refresh_from_db()
    assert sub.plan.code == "personal" and sub.charge_in_flight is None


def test_upg1_higher_rank_or_longer_cycle_is_an_upgrade_that_applies_at_once(account):
    sub = paid_personal(account)
    assert billing.preview_change(sub, "personal", "yearly", now=at("2026-04-10")).kind == "upgrade"
    assert billing.preview_change(sub, "advanced", "monthly", now=at("2026-04-10")).kind == "upgrade"
    assert billing.preview_change(sub, "free", "monthly", now=at("2026-04-10")).kind == "downgrade"
    quote = billing.change_plan(sub, "personal", "yearly", now=at("2026-04-10T12:00"))
    sub.refresh_from_db()
    assert quote.effective_at == at("2026-04-10T12:00") and sub.cycle == "yearly"  # immediately, once confirmed


def test_ref1_payments_are_final_no_refund_for_unused_time_on_cancel_or_downgrade(account):
    from invoices.models import Refund

    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-05"))  # DWN-1: no refund
    billing.cancel(sub, now=at("2026-04-06"))  # CAN-2: no refund
    assert not Refund.objects.exists() and not CreditNote.objects.exists()
    invoice = Invoice.objects.get(kind="subscription")
    with pytest.raises(billing.NotEligible):
        billing.request_refund(invoice, now=at("2026-04-07"))  # only a trial conversion may be refunded (REF-2)
    assert not SandboxCharge.objects.filter(refunded_amount__gt=0).exists()


def test_pay3_a_change_applies_only_at_the_amount_the_customer_confirmed(account):
    sub = paid_personal(account)
    with pytest.raises(billing.QuoteChanged, match=r"\$7.50 instead of \$8.00") as exc:
        billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"), expected_amount=Decimal("8.00"))
    assert exc.value.quote.amount_due == Decimal("7.50")
    sub.refresh_from_db()
    assert sub.plan.code == "personal" and not Invoice.objects.filter(kind="upgrade").exists()
    quote = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-16"), expected_amount=Decimal("7.50"))
    assert quote.invoice.total == Decimal("7.50")
