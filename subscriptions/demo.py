"""Demo customers in the account states a newcomer should see (issue 14), built through the public
engine as customers, staff and the billing run would, on a clock that ends at `today`.

`seed_demo` creates them for `make run` (their logins are printed); the test of "what customers are
told equals what the run charges" (tests/web/test_statement_states.py) builds the same states.
Each builder returns the account and the last quote the owner confirmed (None when the state was
not reached by a quote), so that the quote's next charge can be compared with the run's.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model

from accounts.models import Account

from . import billing, scheduler, staff
from .models import Subscription

PASSWORD = "demo-customer-2026"


@dataclass(frozen=True)
class DemoState:
    key: str
    title: str  # what the README and the login list say
    email: str
    account: Account
    quote: object | None  # the last quote confirmed (pricing.Quote) or None


def _owner(key: str, name: str, *, now: datetime, card: str = "pm_card_visa"):
    email = f"{key}@demo.prorata.localhost"
    existing = Account.objects.filter(memberships__user__username=email).first()
    if existing is not None:
        return None
    _user, account = billing.sign_up(email=email, password=PASSWORD, account_name=name, now=now)
    if card:
        billing.set_payment_method(account, f"{card}:{key}", now=now)  # each its own card (TRI-2)
    return account


def _customer(key: str, name: str, days_before: float, card: str = "pm_card_visa"):
    """A builder's first step, shared: the customer `key` signs up `days_before` `today` with a card
    of their own; a builder whose customer exists already is skipped (seed_demo runs twice)."""
    def wrap(build):
        def builder(today, staff_user):
            start = today - timedelta(days=days_before)
            account = _owner(key, name, now=start, card=card)
            return None if account is None else build(account, start, today, staff_user)
        return builder
    return wrap


def _current(account) -> Subscription:
    return account.subscriptions.select_related("plan", "scheduled_plan", "account").order_by("-id").first()


@_customer("trialing", "Trialing Ltd", 5)
def trialing(account, start, today, staff_user):
    return account, billing.change_plan(_current(account), "personal", "monthly", now=start)


@_customer("monthly", "Monthly Co", 10)
def monthly(account, start, today, staff_user):
    account.trial_used_at = today - timedelta(days=60)  # a returning customer: no trial (TRI-2)
    account.save(update_fields=["trial_used_at"])
    return account, billing.change_plan(_current(account), "personal", "monthly", now=start)


@_customer("yearly", "Yearly Extras GmbH", 40)
def yearly_with_extra_properties(account, start, today, staff_user):
    sub = billing.subscribe(account, "advanced", "monthly", now=start)
    billing.set_extra_properties(sub, 2, now=start + timedelta(days=5))
    return account, billing.change_plan(_current(account), "advanced", "yearly", now=today - timedelta(days=20))


@_customer("downgrading", "Downgrading LLC", 12)
def pending_downgrade(account, start, today, staff_user):
    billing.subscribe(account, "advanced", "monthly", now=start)
    return account, billing.change_plan(_current(account), "personal", "monthly", now=today - timedelta(days=2))


@_customer("cancelling", "Cancelling Inc.", 8)
def pending_cancellation(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    billing.cancel(_current(account), reason="too_expensive", now=today - timedelta(days=1))
    return account, None


@_customer("credit", "Credit Balance SARL", 15)
def credit_balance(account, start, today, staff_user):
    billing.subscribe(account, "advanced", "monthly", now=start)
    staff.downgrade_now(_current(account), "personal", reason="Demo: tracking outage compensation",
                        actor=staff_user, now=today - timedelta(days=5))
    return account, None


@_customer("pastdue", "Past Due Ltd", 31)
def past_due(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail:pastdue", now=start + timedelta(days=3))
    scheduler.run(_current(account).current_period_end - timedelta(hours=23))  # the renewal fails (DUN-1)
    return account, None


@_customer("suspended", "Suspended For Payment Co", 45)
def suspended_for_non_payment(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    billing.set_payment_method(account, "pm_card_chargeCustomerFail:suspended", now=start + timedelta(days=2))
    first_failure = _current(account).current_period_end - timedelta(hours=23)
    scheduler.run(first_failure)
    for days in (1, 3, 5, 7):  # DUN-2: every retry fails; the last one suspends (DUN-3)
        scheduler.run(first_failure + timedelta(days=days, minutes=1))
    return account, None


@_customer("policy", "Policy Breach Ltd", 9)
def suspended_for_policy(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    staff.suspend_account(account, reason="Demo: spam reported on a tracked site", actor=staff_user,
                          now=today - timedelta(days=1))
    return account, None


@_customer("renewed", "Renewed Yesterday Co", 31 - 0.5)  # the period ends in 12 hours
def renewal_paid_ahead(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    scheduler.run(today - timedelta(hours=6))  # REN-1: charged 24 hours before the end
    return account, None


@_customer("refunded", "Refunded Trial Co", 20)
def free_after_refund(account, start, today, staff_user):
    billing.start_trial(account, "personal", now=start)
    scheduler.run(start + timedelta(days=14, minutes=1))  # TRI-3: the conversion charge
    invoice = account.invoices.get(kind="trial_conversion")
    request = billing.request_refund(invoice, message="We never installed it.", now=start + timedelta(days=15))
    staff.decide_refund(request, approve=True, reason="Demo: no usage during the trial", actor=staff_user,
                        now=start + timedelta(days=16))
    return account, None


@_customer("custom", "Custom Plan Corp", 6)
def custom_plan(account, start, today, staff_user):
    account.trial_used_at = today - timedelta(days=90)
    account.save(update_fields=["trial_used_at"])
    staff.create_custom_plan(account, base_plan_code="advanced", code="custom-corp-pro", name="Custom Corp Pro",
                             monthly_price=Decimal("49.00"), yearly_price=None, limit_properties=25,
                             actor=staff_user, now=start)
    return account, billing.change_plan(_current(account), "custom-corp-pro", "monthly", now=start)


BUILDERS = (
    ("trialing", "On a free trial of Personal", trialing),
    ("monthly", "Personal, monthly", monthly),
    ("yearly", "Advanced, yearly, with 2 extra properties", yearly_with_extra_properties),
    ("downgrading", "Advanced with a downgrade to Personal at period end", pending_downgrade),
    ("cancelling", "Personal, cancelled at period end", pending_cancellation),
    ("credit", "Personal with credit from an immediate downgrade", credit_balance),
    ("pastdue", "Past due: the renewal failed, retries running", past_due),
    ("suspended", "Suspended for non-payment", suspended_for_non_payment),
    ("policy", "Suspended for a policy violation", suspended_for_policy),
    ("renewed", "Renewal paid in the last 24 hours", renewal_paid_ahead),
    ("refunded", "Free after a refunded trial", free_after_refund),
    ("custom", "On a custom plan", custom_plan),
)


def build_states(today: datetime, staff_user) -> list[DemoState]:
    """Create the demo customers that do not exist yet; returns the states built now."""
    built = []
    for key, title, builder in BUILDERS:
        result = builder(today, staff_user)
        if result is not None:
            account, quote = result
            built.append(DemoState(key, title, f"{key}@demo.prorata.localhost", account, quote))
    return built


def demo_logins() -> list[tuple[str, str, str]]:
    """(title, e-mail, password) of every demo customer that exists."""
    existing = set(get_user_model().objects.filter(username__endswith="@demo.prorata.localhost")
                   .values_list("username", flat=True))
    return [(title, f"{key}@demo.prorata.localhost", PASSWORD) for key, title, _builder in BUILDERS
            if f"{key}@demo.prorata.localhost" in existing]
