"""The billing run: renewals, trial conversion, scheduled changes, dunning, suspension, overage."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from accounts.models import PropertyStatus, UsageMonth
from core import events
from invoices.gateways import sandbox
from invoices.models import Invoice, Payment, SandboxCharge
from notifications.models import EmailLog
from subscriptions import billing, scheduler
from subscriptions.models import Subscription

from .conftest import add_properties, at, current

pytestmark = pytest.mark.django_db
run = scheduler.run  # replaced per test by a committing wrapper (see commit_events)


@pytest.fixture
def emitted():
    """Domain events delivered (after commit) during the test, as (kind, data)."""
    seen = []

    def handler(event):
        seen.append((event.kind, event.data))

    events.subscribe("*", handler)
    yield seen
    events.unsubscribe("*", handler)


@pytest.fixture(autouse=True)
def commit_events(django_capture_on_commit_callbacks, monkeypatch):
    """The test's transaction never commits: run each engine call's on-commit callbacks when the
    call returns, as a real commit would."""

    def committing(fn):
        def call(*args, **kwargs):
            with django_capture_on_commit_callbacks(execute=True):
                return fn(*args, **kwargs)

        return call

    for name in ("subscribe", "start_trial", "change_plan", "cancel", "set_payment_method", "set_extra_properties"):
        monkeypatch.setattr(billing, name, committing(getattr(billing, name)))
    global run
    run = committing(scheduler.run)


def kinds(emitted):
    return [kind for kind, _ in emitted]


def break_card(account, day):
    billing.set_payment_method(account, "pm_card_chargeCustomerFail", now=at(day))


# --- TRI-3, TRI-7 -----------------------------------------------------------------------------


def test_tri3_trial_converts_at_its_end_and_the_first_period_starts_then(account, emitted):
    billing.start_trial(account, "personal", now=at("2026-04-01T08:00"))
    assert run(at("2026-04-15T07:59")).counts["trials"] == 0
    report = run(at("2026-04-15T08:00"))
    assert report.counts["trials"] == 1
    sub = current(account)
    assert (sub.status, sub.current_period_start, sub.current_period_end) == (
        "active", at("2026-04-15T08:00"), at("2026-05-15T08:00"))
    invoice = Invoice.objects.get(kind="trial_conversion")
    assert (invoice.status, invoice.total) == ("paid", Decimal("14.00"))
    assert "trial.converted" in kinds(emitted)


def test_tri3_failed_trial_conversion_goes_to_dunning(account, emitted):
    billing.start_trial(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-02")
    run(at("2026-04-15"))
    sub = current(account)
    assert sub.status == "past_due" and sub.next_retry_at == at("2026-04-16")
    assert Invoice.objects.get(kind="trial_conversion").status == "open"
    assert "payment.failed" in kinds(emitted)


def test_tri7_trial_ending_reminder_three_days_before_once(account, emitted):
    billing.start_trial(account, "personal", now=at("2026-04-01"))
    run(at("2026-04-11T23:59"))
    assert "trial.ending_soon" not in kinds(emitted)
    run(at("2026-04-12"))
    run(at("2026-04-12T00:15"))
    assert kinds(emitted).count("trial.ending_soon") == 1


def test_tri5_cancelled_trial_moves_to_free_after_its_end_date(account):
    sub = billing.start_trial(account, "personal", now=at("2026-04-01"))
    billing.cancel(sub, now=at("2026-04-03"))
    run(at("2026-04-15"))
    account.refresh_from_db()
    assert current(account).plan.code == "free" and account.status == "active"
    assert not SandboxCharge.objects.exists()


# --- REN ----------------------------------------------------------------------------------------


def test_ren1_renewal_charged_24_hours_before_the_end_and_next_period_starts_at_old_end(account, emitted):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    assert run(at("2026-04-29T23:59")).counts["renewals"] == 0
    assert run(at("2026-04-30T00:00")).counts["renewals"] == 1
    renewal = Invoice.objects.get(kind="renewal")
    assert (renewal.status, renewal.total) == ("paid", Decimal("14.00"))
    assert (renewal.period_start, renewal.period_end) == (at("2026-05-01"), at("2026-06-01"))
    assert current(account).current_period_end == at("2026-05-01")  # benefits run to the end
    assert run(at("2026-05-01")).counts["rollovers"] == 1
    sub = current(account)
    assert (sub.current_period_start, sub.current_period_end) == (at("2026-05-01"), at("2026-06-01"))
    assert "payment.succeeded" in kinds(emitted)


def test_ren2_renewal_holds_the_scheduled_plan_extra_properties_and_credit(account, settings):
    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    billing.set_extra_properties(sub, 2, now=at("2026-06-01"))
    run(at("2026-06-30"))
    renewal = Invoice.objects.get(kind="renewal")
    assert [line.amount for line in renewal.lines.all()] == [Decimal("29.00"), Decimal("60.00")]
    assert renewal.total == Decimal("89.00")


def test_ren3_each_renewal_happens_once_however_often_the_run_runs(account):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    for minute in range(0, 60, 15):
        run(at(f"2026-04-30T00:{minute:02d}"))
    call_command("billing_run", "--now", "2026-04-30T01:00")
    assert Invoice.objects.filter(kind="renewal").count() == 1
    assert SandboxCharge.objects.filter(amount=Decimal("14.00")).count() == 2  # first period + one renewal


def test_ren3_a_run_that_crashes_half_way_finishes_the_rest_and_charges_nobody_twice(catalog, settings):
    from tests.factories import AccountFactory

    settings.BILLING_SETTLE_GRACE_SECONDS = 0
    accounts = []
    for _ in range(6):
        acct = AccountFactory()
        billing.set_payment_method(acct, "pm_card_visa", now=at("2026-04-01"))
        billing.subscribe(acct, "personal", now=at("2026-04-01"))
        accounts.append(acct)
    with sandbox.faults(crash_after_charges=2), pytest.raises(sandbox.SimulatedCrash):
        run(at("2026-04-30"))
    # The set-wise run records every attempt before it charges: the crash leaves six unknown
    # payments, three of them charged at the bank (the third crashed before being recorded).
    assert Payment.objects.filter(status="unknown").count() == 6
    begun = Payment.objects.filter(invoice__kind="renewal").values("idempotency_key")
    assert SandboxCharge.objects.filter(idempotency_key__in=begun).count() == 3
    report = run(at("2026-04-30T00:15"))
    assert report.counts["settle"] == 6  # each settled with the gateway before anything else (PAY-2)
    assert report.counts["retries"] == 3  # the three the bank never saw are sent again at once
    assert Invoice.objects.filter(kind="renewal", status="paid").count() == 6
    keys = Payment.objects.filter(invoice__kind="renewal").values("idempotency_key")
    renewals = SandboxCharge.objects.filter(idempotency_key__in=keys)
    assert renewals.count() == 6  # one charge per subscription
    for acct in accounts:
        assert SandboxCharge.objects.filter(idempotency_key__in=keys, succeeded=True,
                                            card__customer=f"cus_sbx_{acct.pk}").count() == 1
    assert Payment.objects.filter(invoice__kind="renewal", status="succeeded").count() == 6
    unsent = Payment.objects.filter(invoice__kind="renewal", status="failed")
    assert unsent.count() == 3 and {p.decline_code for p in unsent} == {"not_sent"}
    assert not EmailLog.objects.filter(kind="payment.failed").exists()  # not a decline: nobody is told so
    assert Subscription.objects.filter(status="active").count() == 6


def test_ren5_yearly_renewal_reminder_seven_days_before(account, emitted):
    billing.subscribe(account, "personal", "yearly", now=at("2026-01-01"))
    run(at("2026-12-24T23:00"))
    assert "renewal.upcoming" not in kinds(emitted)
    run(at("2026-12-25"))
    run(at("2026-12-26"))
    reminders = [data for kind, data in emitted if kind == "renewal.upcoming"]
    assert len(reminders) == 1 and reminders[0]["amount"] == "134.40"


# --- DWN at effect time, ADD-3, CAN-2 ----------------------------------------------------------------


def test_dwn2_a_due_downgrade_renews_at_the_new_plans_price(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))
    run(at("2026-04-30"))
    assert Invoice.objects.get(kind="renewal").total == Decimal("14.00")
    assert current(account).plan.code == "advanced"  # until the period ends
    run(at("2026-05-01"))
    sub = current(account)
    assert (sub.plan.code, sub.current_price, sub.scheduled_plan) == ("personal", Decimal("14.00"), None)


def test_dwn1_yearly_to_monthly_applies_after_the_year(account):
    sub = billing.subscribe(account, "advanced", "yearly", now=at("2026-01-01"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))
    run(at("2026-12-31"))
    run(at("2027-01-01"))
    sub = current(account)
    assert (sub.plan.code, sub.cycle) == ("personal", "monthly")
    assert (sub.current_period_start, sub.current_period_end) == (at("2027-01-01"), at("2027-02-01"))
    assert Invoice.objects.get(kind="renewal").total == Decimal("14.00")


def test_dwn3_at_effect_time_the_newest_excess_properties_are_paused_never_deleted(account, emitted):
    sub = billing.subscribe(account, "advanced", now=at("2026-04-01"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-04-11"))
    props = add_properties(account, 5)  # added after the downgrade was accepted
    run(at("2026-04-30"))
    run(at("2026-05-01"))
    statuses = {p.pk: p.status for p in account.properties.all()}
    assert [statuses[p.pk] for p in props] == ["active"] * 3 + ["paused"] * 2
    assert account.properties.count() == 5
    applied = [data for kind, data in emitted if kind == "downgrade.applied"]
    assert applied and len(applied[-1]["paused_properties"]) == 2


def test_add3_a_downgrade_to_a_plan_without_the_add_on_drops_the_extra_properties(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    billing.set_extra_properties(sub, 2, now=at("2026-06-01"))
    billing.change_plan(sub, "personal", "monthly", now=at("2026-06-10"))
    run(at("2026-06-30"))
    assert [line.amount for line in Invoice.objects.get(kind="renewal").lines.all()] == [Decimal("14.00")]
    run(at("2026-07-01"))
    assert current(account).extra_properties == 0


def test_add2_fewer_extra_properties_from_the_period_end(account):
    sub = billing.subscribe(account, "advanced", now=at("2026-06-01"))
    billing.set_extra_properties(sub, 3, now=at("2026-06-01"))
    billing.set_extra_properties(sub, 1, now=at("2026-06-05"))
    run(at("2026-06-30"))
    assert Invoice.objects.get(kind="renewal").total == Decimal("59.00")
    run(at("2026-07-01"))
    assert current(account).extra_properties == 1


def test_can2_cancellation_takes_effect_at_period_end_and_moves_to_free(account, emitted):
    sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    add_properties(account, 3)
    billing.cancel(sub, now=at("2026-04-10"))
    run(at("2026-04-30"))
    assert not Invoice.objects.filter(kind="renewal").exists()
    assert current(account).plan.code == "personal"
    run(at("2026-05-01"))
    assert current(account).plan.code == "free"
    assert list(account.properties.order_by("id").values_list("status", flat=True)) == [
        PropertyStatus.ACTIVE, PropertyStatus.PAUSED, PropertyStatus.PAUSED]
    assert "cancellation.effective" in kinds(emitted)


# --- DUN / SUS --------------------------------------------------------------------------------------


def test_dun1_failed_renewal_leaves_the_invoice_open_and_the_subscription_past_due(account, emitted):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-20")
    run(at("2026-04-30"))
    sub = current(account)
    assert sub.status == "past_due" and Invoice.objects.get(kind="renewal").status == "open"
    failed = [data for kind, data in emitted if kind == "payment.failed"]
    assert failed[0]["decline_message"] == "Your card was declined."
    assert failed[0]["next_retry_at"] == at("2026-05-01").isoformat()
    run(at("2026-05-01"))
    assert current(account).current_period_start == at("2026-05-01")  # DUN-3: service continues


def test_dun2_retries_1_3_5_7_days_after_the_first_failure_then_suspension(account, emitted):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-20")
    run(at("2026-04-30"))
    retries = []
    day = at("2026-04-30")
    while day <= at("2026-05-10"):
        report = run(day)
        if report.counts["retries"]:
            retries.append(day)
        day += timedelta(hours=6)
    assert retries == [at("2026-05-01"), at("2026-05-03"), at("2026-05-05"), at("2026-05-07")]
    assert kinds(emitted).count("payment.failed") == 5  # the first failure and each retry
    sub = current(account)
    account.refresh_from_db()
    assert sub.status == "suspended" and (account.status, account.suspension_reason) == ("suspended", "non_payment")
    assert "account.suspended" in kinds(emitted)


def test_dun3_new_card_after_suspension_voids_the_renewal_and_charges_a_new_period_from_today(account, emitted):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-20")
    for day in ("2026-04-30", "2026-05-01", "2026-05-03", "2026-05-05", "2026-05-07"):
        run(at(day))
    assert current(account).status == "suspended"
    with pytest.raises(billing.NotEligible):
        billing.change_plan(current(account), "advanced", "monthly", now=at("2026-05-09"))  # UPG-7
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-05-09T10:00"))
    sub = current(account)
    account.refresh_from_db()
    assert sub.status == "active" and account.status == "active"
    assert (sub.current_period_start, sub.current_period_end) == (at("2026-05-09T10:00"), at("2026-06-09T10:00"))
    assert Invoice.objects.get(kind="renewal").status == "void"
    assert Invoice.objects.get(kind="reactivation").status == "paid"
    assert "account.reactivated" in kinds(emitted)


def test_dun4_new_card_while_past_due_retries_the_open_invoice_at_once(account):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-20")
    run(at("2026-04-30"))
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-30T12:00"))
    sub = current(account)
    assert sub.status == "active" and sub.next_retry_at is None
    assert Invoice.objects.get(kind="renewal").status == "paid"


def test_dun4_a_declined_new_card_does_not_advance_the_retry_schedule(account, emitted):
    """policy-decisions, DUN-4: the customer's own attempt is extra; a decline is told at once and
    leaves the run's retry count, next retry and e-mails as they were."""
    from subscriptions.errors import PaymentDeclined

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-20")
    run(at("2026-04-30"))
    sub = current(account)
    before = (sub.status, sub.retry_count, sub.next_retry_at)
    failed_mails = kinds(emitted).count("payment.failed")
    with pytest.raises(PaymentDeclined, match="Your new card was saved, but the retry failed"):
        billing.set_payment_method(account, "pm_card_chargeDeclinedInsufficientFunds", now=at("2026-04-30T12:00"))
    sub = current(account)
    assert (sub.status, sub.retry_count, sub.next_retry_at) == before and before[1] == 0
    assert sub.charge_in_flight_id is None
    assert kinds(emitted).count("payment.failed") == failed_mails
    assert Payment.objects.filter(invoice__kind="renewal", status="failed").count() == 2  # the run's, the card's
    # The run's next retry still comes on its day, with the new card, and succeeds this time.
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-30T13:00"))
    assert current(account).status == "active"


def test_sus1_suspended_for_non_payment_says_why(account):
    billing.subscribe(account, "personal", now=at("2026-04-01"))
    break_card(account, "2026-04-20")
    for day in ("2026-04-30", "2026-05-01", "2026-05-03", "2026-05-05", "2026-05-07"):
        run(at(day))
    account.refresh_from_db()
    assert "failed" in account.suspension_note and account.suspension_reason == "non_payment"


def test_inv5_a_renewal_that_credit_brings_to_zero_is_paid_without_a_charge(account):
    from invoices import services as ledger

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    first = Invoice.objects.get(kind="subscription")
    ledger.credit_note_issue(account=account, invoice=first, kind="correction", amount=Decimal("20.00"),
                             reason="Goodwill", now=at("2026-04-10"))
    charges = SandboxCharge.objects.count()
    assert run(at("2026-04-30")).counts["renewals"] == 1
    renewal = Invoice.objects.get(kind="renewal")
    assert (renewal.credit_applied, renewal.total, renewal.status) == (Decimal("14.00"), Decimal("0.00"), "paid")
    assert renewal.paid_at == at("2026-04-30") and renewal.number  # issued, numbered, paid at once
    assert not Payment.objects.filter(invoice=renewal).exists()  # no attempt, and no gateway call
    assert SandboxCharge.objects.count() == charges
    assert current(account).status == "active"


# --- USE-3 --------------------------------------------------------------------------------------


def test_use3_overage_invoiced_on_the_first_for_the_previous_month(account):
    billing.subscribe(account, "personal", "yearly", now=at("2026-01-15"))
    UsageMonth.objects.create(account=account, month=date(2026, 11, 1), sessions=12_500, sessions_included=10_000)
    assert run(at("2026-11-30T23:45")).counts["overage"] == 0
    assert run(at("2026-12-01T00:00")).counts["overage"] == 1
    invoice = Invoice.objects.get(kind="overage")
    assert (invoice.total, invoice.status, invoice.issued_at) == (Decimal("5.00"), "paid", at("2026-12-01"))
    assert invoice.lines.get().computation == "2,500 sessions × $2.00 / 1,000 = $5.00"
    assert run(at("2026-12-01T00:15")).counts["overage"] == 0  # once


def test_use3_quota_is_the_highest_plan_of_the_month_and_hard_caps_pay_nothing(account):
    UsageMonth.objects.create(account=account, month=date(2026, 11, 1), sessions=5_000, sessions_included=1_000)
    run(at("2026-12-01"))
    assert not Invoice.objects.filter(kind="overage").exists()  # Free: hard cap, no overage (USE-4)


def _overage_usage(account, month, sessions, included=10_000):
    return UsageMonth.objects.update_or_create(account=account, month=month,
                                               defaults={"sessions": sessions, "sessions_included": included})[0]


def test_use3_sessions_reported_after_the_overage_invoice_are_billed_on_the_next_one(account):
    billing.subscribe(account, "personal", "yearly", now=at("2026-01-15"))
    november = _overage_usage(account, date(2026, 11, 1), 12_500)
    run(at("2026-12-01"))
    november.refresh_from_db()
    assert november.sessions_billed == 12_500
    UsageMonth.objects.filter(pk=november.pk).update(sessions=12_800)  # 300 November sessions arrive on Dec 3
    _overage_usage(account, date(2026, 12, 1), 10_500)
    assert run(at("2026-12-15")).counts["overage"] == 0  # not before the next 1st
    assert run(at("2027-01-01")).counts["overage"] == 1
    invoice = Invoice.objects.get(kind="overage", issued_at=at("2027-01-01"))
    lines = [(line.description, line.amount, line.computation) for line in invoice.lines.order_by("id")]
    assert lines == [
        ("Late usage November 2026: 300 sessions reported after the invoice", Decimal("0.60"),
         "2,800 sessions × $2.00 / 1,000 = $5.60, less $5.00 invoiced for 12,500 sessions = $0.60"),
        ("Overage December 2026: 500 sessions over the 10,000 included", Decimal("1.00"),
         "500 sessions × $2.00 / 1,000 = $1.00"),
    ]
    assert (invoice.total, invoice.status) == (Decimal("1.60"), "paid")
    assert (invoice.period_start, invoice.period_end) == (at("2026-11-01"), at("2027-01-01"))  # both months
    november_lines = invoice.lines.get(description__startswith="Late")
    assert (november_lines.period_start, november_lines.period_end) == (at("2026-11-01"), at("2026-12-01"))
    assert sum(i.lines.filter(period_start=at("2026-11-01")).get().amount
               for i in Invoice.objects.filter(kind="overage")) == Decimal("5.60")  # = the final count's overage
    assert UsageMonth.objects.get(pk=november.pk).sessions_billed == 12_800
    assert run(at("2027-01-01T00:15")).counts["overage"] == 0
    assert run(at("2027-02-01")).counts["overage"] == 0  # nothing new: no invoice


def test_use3_late_sessions_alone_make_an_overage_invoice_even_for_a_month_under_quota_at_its_1st(account):
    billing.subscribe(account, "personal", "yearly", now=at("2026-01-15"))
    october = _overage_usage(account, date(2026, 10, 1), 9_900)
    run(at("2026-11-01"))
    assert not Invoice.objects.filter(kind="overage").exists()  # under quota on the 1st
    UsageMonth.objects.filter(pk=october.pk).update(sessions=10_400)  # late October sessions
    run(at("2026-12-01"))
    invoice = Invoice.objects.get(kind="overage")
    line = invoice.lines.get()
    assert (line.description, line.amount) == ("Late usage October 2026: 400 sessions reported after the invoice",
                                               Decimal("0.80"))
    assert line.computation == "400 sessions × $2.00 / 1,000 = $0.80"
    assert (invoice.period_start, invoice.period_end) == (at("2026-10-01"), at("2026-11-01"))  # the month billed


def test_use3_a_late_event_through_the_usage_api_is_billed_on_the_next_overage_invoice(account):
    from tests.factories import PropertyFactory
    from usage.ingest import usage_ingest

    billing.subscribe(account, "personal", "yearly", now=at("2026-01-15"))
    prop = PropertyFactory(account=account)
    _overage_usage(account, date(2026, 11, 1), 12_000)
    run(at("2026-12-01"))
    assert Invoice.objects.get(kind="overage").total == Decimal("4.00")
    late = [{"id": f"late-{n}", "tracking_tag": prop.tracking_tag, "type": "session",
             "timestamp": "2026-11-30T22:00:00Z"} for n in range(500)]
    assert usage_ingest(late, now=at("2026-12-03")).accepted == 500  # 3 days late, for November
    run(at("2027-01-01"))
    follow_up = Invoice.objects.get(kind="overage", issued_at=at("2027-01-01"))
    assert follow_up.total == Decimal("1.00")  # 500 × $2.00 / 1,000


def test_use3_months_invoiced_before_the_late_usage_check_count_as_billed(account):
    import importlib

    from django.apps import apps

    billing.subscribe(account, "personal", "yearly", now=at("2026-01-15"))
    november = _overage_usage(account, date(2026, 11, 1), 12_500)
    run(at("2026-12-01"))
    UsageMonth.objects.filter(pk=november.pk).update(sessions_billed=None)  # as before the field existed
    migration = importlib.import_module("accounts.migrations.0005_usage_month_sessions_billed")
    migration.mark_invoiced_months(apps, None)
    assert UsageMonth.objects.get(pk=november.pk).sessions_billed == 12_500
    run(at("2027-01-01"))
    assert Invoice.objects.filter(kind="overage").count() == 1  # November's overage not billed twice


# --- the command -------------------------------------------------------------------------------------


def test_billing_run_dry_run_shows_amounts_and_changes_nothing(account, capsys):
    """D-4, REN-1: billing_run --now ... --dry-run prints the renewal it would
    charge ($29.00) and creates no invoice."""
    billing.subscribe(account, "advanced", now=at("2026-04-01"))
    call_command("billing_run", "--now", "2026-04-30T00:00", "--dry-run")
    out = capsys.readouterr().out
    assert "dry run" in out and "charge $29.00" in out
    assert not Invoice.objects.filter(kind="renewal").exists()


def test_billing_run_rejects_a_bad_now():
    """D-4: billing_run refuses a --now that is not ISO-8601, with a clear error."""
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="ISO-8601"):
        call_command("billing_run", "--now", "next tuesday")
