"""Account actions through the admin, each on a confirmation page with a mandatory reason: suspend
and lift (SUS-2), immediate downgrade with a credit note (DWN-4), custom plans (CAT-3); the trial-abuse
list (TRI-2); the account page's records, audit log and e-mail log (ACC-3, NOT-3)."""

from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from accounts.models import AccountFlag, AuditEvent, FlagKind
from invoices.models import CreditNote, Invoice
from notifications.models import EmailLog
from plans.models import Plan
from subscriptions import billing, staff
from tests.factories import AccountFactory, PropertyFactory, UserFactory

from .conftest import OWNER, at, kinds, messages_of

pytestmark = pytest.mark.django_db


def action(name, account):
    return reverse(f"admin:accounts_account_{name}", args=[account.pk])


def account_page(account):
    return reverse("admin:accounts_account_change", args=[account.pk])


def current(account):
    return account.subscriptions.select_related("plan").order_by("-id").first()


# --- SUS-2 -------------------------------------------------------------------------------------------


def test_sus2_support_suspends_for_a_policy_violation_with_a_reason_and_lifts_it(
    account, support, support_client, committed, clock
):
    with clock("2026-04-10T09:00"):
        confirm = support_client.get(action("suspend", account))
        assert confirm.status_code == 200 and "Tracking stops for every property" in confirm.content.decode()
        blank = support_client.post(action("suspend", account), {"reason": "   "})
        assert "A reason is required." in blank.content.decode() or "This field is required." in blank.content.decode()
        account.refresh_from_db()
        assert account.status == "active" and not mail.outbox
        with committed():
            response = support_client.post(action("suspend", account), {"reason": "Spam from a tracked site"},
                                           follow=True)
    assert any("suspended for a policy violation" in m for m in messages_of(response))
    account.refresh_from_db()
    assert (account.status, account.suspension_reason, account.suspension_note) == (
        "suspended", "policy_violation", "Spam from a tracked site")
    assert account.suspended_at == at("2026-04-10T09:00")
    event = AuditEvent.objects.get(action="account.suspended")
    assert (event.actor, event.reason, event.before["status"], event.after["status"]) == (
        support, "Spam from a tracked site", "active", "suspended")
    assert kinds() == [("account.suspended", [OWNER])]
    assert "Spam from a tracked site" in mail.outbox[0].body
    assert current(account).status == "active"  # a suspension is not a cancellation (CAN-1)

    mail.outbox.clear()
    with clock("2026-04-11T09:00"):
        page = support_client.get(account_page(account)).content.decode()
        assert "Lift suspension" in page and ">Suspend<" not in page
        with committed():
            support_client.post(action("lift", account), {"reason": "Site cleaned up"})
    account.refresh_from_db()
    assert (account.status, account.suspension_reason) == ("active", "")
    event = AuditEvent.objects.get(action="account.reactivated")
    assert event.actor == support and event.reason == "Site cleaned up"
    assert kinds() == [("account.reactivated", [OWNER])]


def test_sus2_staff_cannot_lift_a_suspension_for_non_payment(account, support, support_client, clock):
    from subscriptions.lifecycle import account_suspend

    account_suspend(account, "non_payment", "Last retry failed", actor=None, now=at("2026-04-01"), notify=False)
    with clock("2026-04-10"):
        response = support_client.post(action("lift", account), {"reason": "Customer asked"})
    assert "suspended for non-payment" in response.content.decode()
    account.refresh_from_db()
    assert account.suspension_reason == "non_payment"
    with pytest.raises(billing.InvalidChange):
        staff.lift_suspension(account, reason="x", actor=support, now=at("2026-04-10"))


# --- DWN-4 -------------------------------------------------------------------------------------------


def test_dwn4_billing_manager_downgrades_at_once_and_the_unused_value_becomes_credit(
    account, manager, manager_client, committed, clock
):
    billing.subscribe(account, "advanced", now=at("2026-04-01"))  # $29/month, 04-01 -> 05-01
    mail.outbox.clear()
    url = action("downgrade", account)
    with clock("2026-04-16T10:00"):
        confirm = manager_client.get(url).content.decode()
        assert "($29.00 − $14.00) × 15/30 days = $7.50" in confirm
        no_reason = manager_client.post(url, {"plan": "personal", "reason": ""})
        assert no_reason.status_code == 200 and current(account).plan.code == "advanced"
        with committed():
            manager_client.post(url, {"plan": "personal", "reason": "Customer complaint: wrong plan sold"})
    sub = current(account)
    assert (sub.plan.code, sub.cycle, sub.current_price) == ("personal", "monthly", Decimal("14.00"))
    assert sub.current_period_end == at("2026-05-01")  # the anchor does not move
    note = CreditNote.objects.get()
    assert (note.kind, note.amount, note.remaining, note.issued_by) == (
        "downgrade", Decimal("7.50"), Decimal("7.50"), manager)
    assert note.computation == "($29.00 − $14.00) × 15/30 days = $7.50"
    assert note.invoice == Invoice.objects.get(kind="subscription")
    event = AuditEvent.objects.get(action="downgrade.applied")
    assert (event.actor, event.reason, event.before["plan"], event.after["plan"]) == (
        manager, "Customer complaint: wrong plan sold", "advanced", "personal")
    assert AuditEvent.objects.get(action="credit_note.issued").actor == manager
    assert sorted(kinds()) == [("credit_note.issued", [OWNER]), ("downgrade.applied", [OWNER])]


def test_dwn4_staff_downgrade_refuses_free_upgrades_and_accounts_that_do_not_fit(account, manager):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    with pytest.raises(billing.InvalidChange, match="only the owner can do"):
        staff.downgrade_now(sub, "free", reason="x", actor=manager, now=at("2026-04-10"))
    with pytest.raises(billing.InvalidChange, match="not a downgrade"):
        staff.downgrade_now(sub, "advanced", reason="x", actor=manager, now=at("2026-04-10"))
    sub = billing.change_plan(sub, "advanced", "monthly", now=at("2026-04-10")) and current(account)
    for _ in range(4):
        PropertyFactory(account=account)
    with pytest.raises(billing.LimitExceeded, match="Personal allows 3 properties; you have 4"):
        staff.downgrade_now(sub, "personal", reason="x", actor=manager, now=at("2026-04-16"))
    with pytest.raises(billing.InvalidChange, match="Give a reason"):
        staff.downgrade_now(sub, "personal", reason=" ", actor=manager, now=at("2026-04-16"))
    assert current(account).plan.code == "advanced" and not CreditNote.objects.exists()


def test_dwn4_support_cannot_downgrade_or_issue_credit_notes(account, support, support_client, clock):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    with clock("2026-04-16"):
        assert support_client.get(action("downgrade", account)).status_code == 403
        assert support_client.post(action("downgrade", account),
                                   {"plan": "personal", "reason": "x"}).status_code == 403
        assert support_client.get(reverse("admin:invoices_creditnote_add")).status_code == 403
    with pytest.raises(staff.NotPermitted):
        staff.downgrade_now(sub, "personal", reason="x", actor=support, now=at("2026-04-16"))
    assert current(account).plan.code == "advanced" and not CreditNote.objects.exists()


# --- CAT-3 -------------------------------------------------------------------------------------------


def test_cat3_billing_manager_creates_a_custom_plan_for_one_account(account, manager, manager_client, clock, catalog):
    url = action("custom_plan", account)
    with clock("2026-04-10"):
        form = manager_client.get(f"{url}?base=advanced").content.decode()
        assert f'value="advanced-{account.pk}"' in form and 'value="29.00"' in form
        response = manager_client.post(url, {
            "base_plan": "advanced", "code": "acme-advanced", "name": "Advanced for Acme", "monthly_price": "24.00",
            "yearly_price": "", "limit_properties": "25", "limit_sessions": "250000", "limit_integrations": "",
            "overage_per_1000": "1.00", "extra_property_monthly": "", "trial_days": "0",
        }, follow=True)
    assert any("Custom plan" in m and "acme-advanced" in m for m in messages_of(response))
    plan = Plan.objects.get(code="acme-advanced")
    assert (plan.public, plan.account, plan.based_on.code, plan.rank) == (False, account, "advanced",
                                                                          catalog["advanced"].rank)
    assert (plan.monthly_price, plan.yearly_price, plan.limit_properties, plan.limit_sessions) == (
        Decimal("24.00"), None, 25, 250000)
    assert plan.limit_integrations is None and plan.extra_property_monthly is None
    event = AuditEvent.objects.get(action="plan.custom_created")
    assert event.actor == manager and event.after["based_on"] == "advanced"
    # Offered to this account only.
    quote = billing.preview_change(current(account), "acme-advanced", "monthly", now=at("2026-04-10"))
    assert quote.amount_due == Decimal("24.00") and "Advanced for Acme" in quote.lines[0].description
    other = AccountFactory(owner=UserFactory(username="other@acme.test"))
    with pytest.raises(billing.InvalidChange, match="no plan called"):
        billing.preview_change(current(other), "acme-advanced", "monthly", now=at("2026-04-10"))


def test_cat3_custom_plan_needs_a_price_and_a_free_code(account, manager):
    with pytest.raises(billing.InvalidChange, match="monthly or a yearly price"):
        staff.create_custom_plan(account, base_plan_code="personal", code="acme-x", name="X", monthly_price=None,
                                 yearly_price="0", actor=manager, now=at("2026-04-10"))
    with pytest.raises(billing.InvalidChange, match="already exists"):
        staff.create_custom_plan(account, base_plan_code="personal", code="advanced", name="X", monthly_price="5.00",
                                 yearly_price=None, actor=manager, now=at("2026-04-10"))
    plan = staff.create_custom_plan(account, base_plan_code="personal", code="acme-basic", name="Basic for Acme",
                                    monthly_price="9.00", yearly_price=None, actor=manager, now=at("2026-04-10"))
    assert (plan.limit_properties, plan.limit_sessions, plan.overage_per_1000) == (3, 10000, Decimal("2.00"))


# --- TRI-2 -------------------------------------------------------------------------------------------


def test_tri2_trial_abuse_list_shows_accounts_matching_another_accounts_trial(account, support_client, clock):
    billing.start_trial(account, "personal", now=at("2026-04-01"))  # Acme had the trial, Visa 4242
    same_card = AccountFactory(name="Card Twin", owner=UserFactory(username="twin@other.test"))
    billing.set_payment_method(same_card, "pm_card_visa", now=at("2026-04-02"))
    gmail_first = AccountFactory(name="Jane One", owner=UserFactory(username="jane.doe@gmail.com"))
    gmail_first.trial_used_at = at("2026-03-01")
    gmail_first.save(update_fields=["trial_used_at"])
    AccountFactory(name="Jane Two", owner=UserFactory(username="JaneDoe+x@gmail.com"))
    AccountFactory(name="Unrelated", owner=UserFactory(username="someone@else.test"))
    flagged = AccountFactory(name="Flagged Only", owner=UserFactory(username="flag@else.test"))
    AccountFlag.objects.create(account=flagged, kind=FlagKind.TRIAL_ABUSE, matched_account=account, detail="card")
    with clock("2026-04-10"):
        body = support_client.get(reverse("admin:accounts_account_trial_abuse")).content.decode()
    assert "Card Twin" in body and f"Acme Analytics</a> (#{account.pk}, card: Visa •••• 4242" in body
    assert "Jane Two" in body and f"Jane One</a> (#{gmail_first.pk}, owner e-mail: janedoe@gmail.com" in body
    assert "Flagged Only" in body and "Possible trial abuse" in body
    assert "Unrelated" not in body


# --- ACC-3, NOT-3: the account page, the audit log and the e-mail log ---------------------------------


def test_not3_account_page_links_its_records_and_lists_its_emails(account, support_client, clock):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    EmailLog.objects.create(recipient=OWNER, kind="payment.succeeded", category="billing", subject="Receipt 42",
                            body_text="", body_html="", account=account, status="sent")
    other = AccountFactory(owner=UserFactory(username="other@else.test"))
    EmailLog.objects.create(recipient="other@else.test", kind="payment.succeeded", category="billing",
                            subject="Other receipt", body_text="", body_html="", account=other)
    with clock("2026-04-10"):
        page = support_client.get(account_page(account)).content.decode()
        for changelist in ("subscriptions/subscription", "invoices/invoice", "invoices/creditnote",
                           "invoices/payment", "invoices/refundrequest", "accounts/auditevent",
                           "notifications/emaillog"):
            assert f"/admin/{changelist}/?account__id__exact={account.pk}" in page
        assert f"/admin/subscriptions/restorerequest/?subscription__account__id__exact={account.pk}" in page
        assert "Receipt 42" in page and "Other receipt" not in page
        emails = support_client.get(f"/admin/notifications/emaillog/?account__id__exact={account.pk}")
        assert "Receipt 42" in emails.content.decode() and "Other receipt" not in emails.content.decode()
        restores = support_client.get(f"/admin/subscriptions/restorerequest/?subscription__account__id__exact="
                                      f"{account.pk}")
        assert restores.status_code == 200


def test_acc3_audit_log_is_filterable_per_account_and_by_action(account, support_client, clock):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    other = AccountFactory(name="Other Co", owner=UserFactory(username="other@else.test"))
    billing.set_payment_method(other, "pm_card_mastercard", now=at("2026-04-01"))
    with clock("2026-04-10"):
        mine = support_client.get(f"/admin/accounts/auditevent/?account__id__exact={account.pk}").content.decode()
        by_action = support_client.get("/admin/accounts/auditevent/?q=subscription.started").content.decode()
        family = support_client.get("/admin/accounts/auditevent/?family=payment_method").content.decode()
    assert "subscription.started" in mine and "Other Co" not in mine
    assert "subscription.started" in by_action and "payment_method.set" not in by_action
    assert "Other Co" in family and "subscription.started" not in family


def test_acc3_money_records_and_the_audit_log_cannot_be_changed_in_the_admin(account, superuser, clock):
    from .conftest import client_for

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    invoice = Invoice.objects.get()
    event = AuditEvent.objects.filter(account=account).first()
    client = client_for(superuser)
    with clock("2026-04-10"):
        for model, obj in (("invoices/invoice", invoice), ("accounts/auditevent", event),
                           ("invoices/payment", invoice.payments.get())):
            assert client.get(f"/admin/{model}/add/").status_code == 403
            assert client.post(f"/admin/{model}/{obj.pk}/delete/", {"post": "yes"}).status_code == 403
            view = client.get(f"/admin/{model}/{obj.pk}/change/")
            assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
        total = invoice.total
        client.post(f"/admin/invoices/invoice/{invoice.pk}/change/", {"total": "0.00"})
    invoice.refresh_from_db()
    assert invoice.total == total and AuditEvent.objects.filter(pk=event.pk).exists()


def test_can1_there_is_no_staff_action_that_cancels_a_subscription(account, superuser, clock):
    from .conftest import client_for

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    with clock("2026-04-10"):
        page = client_for(superuser).get(account_page(account)).content.decode()
    assert "Suspend" in page and "Downgrade now" in page and "Cancel subscription" not in page
    assert not [name for name in staff.__all__ if "cancel" in name]


def test_dwn4_staff_downgrade_after_the_renewal_was_charged_credits_the_bought_period_too(account, manager):
    """REN-1: in the 24 hours after a renewal was charged, the next period is bought at the old
    plan's price; a downgrade at once credits its difference too, so the account pays the lower
    plan for it."""
    from subscriptions import scheduler

    billing.subscribe(account, "advanced", now=at("2026-04-01"))
    scheduler.run(at("2026-04-30T06:00"))
    staff.downgrade_now(current(account), "personal", reason="Wrong plan sold", actor=manager,
                        now=at("2026-04-30T12:00"))
    note = CreditNote.objects.get()
    assert note.amount == Decimal("15.50")
    assert note.computation == ("($29.00 − $14.00) × 1/30 days = $0.50 + "
                                "($29.00 − $14.00) × 31/31 days = $15.00")
    scheduler.run(at("2026-05-01T06:00"))
    assert current(account).plan.code == "personal"
