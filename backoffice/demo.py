"""Demo customers in the account states a newcomer should see (issue 14), built through the public
engine as customers, staff and the billing run would, on a clock that ends at `today`.

`seed_demo` creates them for `make run` (their logins are printed); the test of "what customers are
told equals what the run charges" (tests/web/test_statement_states.py) builds the same states.
Each builder returns the account and the last quote the owner confirmed (None when the state was
not reached by a quote), so that the quote's next charge can be compared with the run's.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model

from accounts.models import Account
from accounts.services import property_add
from subscriptions import billing, pricing, scheduler, staff
from subscriptions.models import Subscription
from usage.ingest import MAX_BATCH_EVENTS, usage_ingest

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


def _customer(key: str, name: str, days_before, card: str = "pm_card_visa"):
    """A builder's first step, shared: the customer `key` signs up `days_before` `today` (a number
    of days, or a function of `today` giving the moment) with a card of their own; a builder whose
    customer exists already is skipped (seed_demo runs twice)."""
    def wrap(build):
        def builder(today, staff_user):
            start = days_before(today) if callable(days_before) else today - timedelta(days=days_before)
            account = _owner(key, name, now=start, card=card)
            return None if account is None else build(account, start, today, staff_user)
        return builder
    return wrap


def _properties(account, names: list[str], *, now) -> None:
    """The customer adds its websites (within its plan's limit, CAT-1), as on the properties page."""
    slug = account.owner.email.split("@")[0]
    for name in names:
        property_add(account=account, name=name, domain=f"{name.lower().replace(' ', '-')}.{slug}.localhost",
                     actor=account.owner, now=now)


def _sessions(account, sessions: int, start: datetime, end: datetime) -> None:
    """The tracking product reports `sessions` sessions spread evenly over [start, end) on the
    account's live properties, through the usage API's ingest (USE-1: counted, quota and alerts by
    its rules), in batches as the tracker sends them, each received just after its last event."""
    tags = list(account.properties.live().values_list("tracking_tag", flat=True))
    if not tags or sessions <= 0 or end <= start:
        return
    step = (end - start) / sessions
    events = [{"id": f"demo-{account.pk}-{start:%Y%m%d%H%M}-{i}", "tracking_tag": tags[i % len(tags)],
               "type": "session", "timestamp": (start + step * i).isoformat()} for i in range(sessions)]
    for first in range(0, sessions, MAX_BATCH_EVENTS):
        batch = events[first:first + MAX_BATCH_EVENTS]
        usage_ingest(batch, now=datetime.fromisoformat(batch[-1]["timestamp"]) + timedelta(minutes=1))


def _month_start(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)  # USE-1: UTC months


def _current(account) -> Subscription:
    return account.subscriptions.select_related("plan", "scheduled_plan", "account").current_of(account)


@_customer("trialing", "Trialing Ltd", 5)
def trialing(account, start, today, staff_user):
    quote = billing.change_plan(_current(account), "personal", "monthly", now=start)
    _properties(account, ["Shop", "Blog"], now=start + timedelta(minutes=5))
    _sessions(account, 420, max(start + timedelta(hours=1), _month_start(today)), today - timedelta(hours=1))
    return account, quote


@_customer("monthly", "Monthly Co", 60)
def monthly(account, start, today, staff_user):
    """A returning customer: a trial two months ago, cancelled the next day (TRI-4) and ended on Free;
    ten days ago it subscribes, without a second trial (TRI-2)."""
    trial = billing.start_trial(account, "personal", now=start)
    billing.cancel(trial, reason="Just looking", now=start + timedelta(days=1))
    scheduler.run(trial.trial_end + timedelta(minutes=1))  # the cancelled trial ends: Free
    subscribed = today - timedelta(days=10)
    quote = billing.change_plan(_current(account), "personal", "monthly", now=subscribed)
    _properties(account, ["Store", "Help center"], now=subscribed + timedelta(minutes=5))
    _sessions(account, 2600, max(subscribed + timedelta(hours=1), _month_start(today)), today - timedelta(hours=1))
    return account, quote


@_customer("yearly", "Yearly Extras GmbH", 40)
def yearly_with_extra_properties(account, start, today, staff_user):
    sub = billing.subscribe(account, "advanced", "monthly", now=start)
    _properties(account, [f"Brand site {n}" for n in range(1, 9)], now=start + timedelta(hours=1))
    billing.set_extra_properties(sub, 2, now=start + timedelta(days=5))
    _properties(account, ["Outlet", "Careers"], now=start + timedelta(days=5, hours=1))
    quote = billing.change_plan(_current(account), "advanced", "yearly", now=today - timedelta(days=20))
    _sessions(account, 3100, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(hours=1))
    return account, quote


@_customer("downgrading", "Downgrading LLC", 12)
def pending_downgrade(account, start, today, staff_user):
    billing.subscribe(account, "advanced", "monthly", now=start)
    _properties(account, ["Main site", "Docs", "Status page"], now=start + timedelta(hours=1))  # fits Personal (DWN-3)
    quote = billing.change_plan(_current(account), "personal", "monthly", now=today - timedelta(days=2))
    _sessions(account, 1500, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(hours=1))
    return account, quote


@_customer("cancelling", "Cancelling Inc.", 8)
def pending_cancellation(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    _properties(account, ["Shop", "Newsletter"], now=start + timedelta(hours=1))  # one is paused on Free (CAN-2)
    _sessions(account, 800, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(hours=1))
    billing.cancel(_current(account), reason="too_expensive", now=today - timedelta(days=1))
    return account, None


@_customer("credit", "Credit Balance SARL", 15)
def credit_balance(account, start, today, staff_user):
    billing.subscribe(account, "advanced", "monthly", now=start)
    _properties(account, ["Web app", "Landing pages"], now=start + timedelta(hours=1))
    staff.downgrade_now(_current(account), "personal", reason="Demo: tracking outage compensation",
                        actor=staff_user, now=today - timedelta(days=5))
    _sessions(account, 1200, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(hours=1))
    return account, None


@_customer("pastdue", "Past Due Ltd", 31)
def past_due(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    _properties(account, ["Shop", "Blog"], now=start + timedelta(hours=1))
    _sessions(account, 900, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(hours=1))
    billing.set_payment_method(account, "pm_card_chargeCustomerFail:pastdue", now=start + timedelta(days=3))
    scheduler.run(_current(account).current_period_end - timedelta(hours=24))  # REN-1; the renewal fails (DUN-1)
    return account, None


@_customer("suspended", "Suspended For Payment Co", 45)
def suspended_for_non_payment(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    _properties(account, ["Portfolio"], now=start + timedelta(hours=1))
    billing.set_payment_method(account, "pm_card_chargeCustomerFail:suspended", now=start + timedelta(days=2))
    first_failure = _current(account).current_period_end - timedelta(hours=24)  # REN-1
    scheduler.run(first_failure)
    for days in (1, 3, 5, 7):  # DUN-2: every retry fails; the last one suspends (DUN-3)
        scheduler.run(first_failure + timedelta(days=days, minutes=1))
    return account, None


@_customer("policy", "Policy Breach Ltd", 9)
def suspended_for_policy(account, start, today, staff_user):
    billing.subscribe(account, "personal", "monthly", now=start)
    _properties(account, ["Deals site"], now=start + timedelta(hours=1))
    _sessions(account, 300, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(days=1, hours=1))
    staff.suspend_account(account, reason="Demo: spam reported on a tracked site", actor=staff_user,
                          now=today - timedelta(days=1))
    return account, None


def _two_periods_ending_in_12_hours(today: datetime) -> datetime:
    """The start of a monthly series whose second period ends 12 hours after `today` (D-1 clamps a
    31st to the month's length: the nearest start whose second end is within the next day)."""
    target = today + timedelta(hours=12)
    guess = pricing.calendar_shift(target, UTC, months=-2)
    starts = [guess + timedelta(days=shift) for shift in range(-3, 4)]
    return min(starts, key=lambda start: abs(pricing.period_end(start, "monthly", 1, UTC) - target))


@_customer("renewed", "Renewed Yesterday Co", _two_periods_ending_in_12_hours)
def renewal_paid_ahead(account, start, today, staff_user):
    """Two months of Personal, the second renewal charged 24 hours before the period ends (REN-1),
    12 hours ago; last month's sessions went over the quota: an overage invoice of the 1st (USE-3)."""
    billing.subscribe(account, "personal", "monthly", now=start)
    _properties(account, ["Shop", "Blog"], now=start + timedelta(hours=1))
    this_month = _month_start(today)
    last_month = _month_start(this_month - timedelta(days=1))
    _sessions(account, 10_750, last_month + timedelta(hours=1), this_month - timedelta(hours=1))  # quota 10,000
    first_end = pricing.period_end(start, "monthly", 0, UTC)
    second_end = pricing.period_end(start, "monthly", 1, UTC)
    for moment in sorted([first_end - timedelta(hours=24),  # REN-1: each renewal 24 hours before the end
                          first_end + timedelta(minutes=1),  # the second period starts
                          this_month + timedelta(minutes=5),  # USE-3: last month's overage invoice
                          second_end - timedelta(hours=24)]):
        scheduler.run(moment)
    if today - this_month > timedelta(hours=2):
        _sessions(account, 700, this_month + timedelta(hours=1), today - timedelta(hours=1))
    return account, None


@_customer("refunded", "Refunded Trial Co", 20)
def free_after_refund(account, start, today, staff_user):
    billing.start_trial(account, "personal", now=start)
    _properties(account, ["Side project"], now=start + timedelta(minutes=5))
    scheduler.run(start + timedelta(days=14, minutes=1))  # TRI-3: the conversion charge
    invoice = account.invoices.get(kind="trial_conversion")
    request = billing.request_refund(invoice, message="We never installed it.", now=start + timedelta(days=15))
    staff.decide_refund(request, approve=True, reason="Demo: no usage during the trial", actor=staff_user,
                        now=start + timedelta(days=16))
    return account, None


@_customer("custom", "Custom Plan Corp", 6)
def custom_plan(account, start, today, staff_user):
    """Sales agreed a plan for 25 properties, without a trial (CAT-3)."""
    staff.create_custom_plan(account, base_plan_code="advanced", code="custom-corp-pro", name="Custom Corp Pro",
                             monthly_price=Decimal("49.00"), yearly_price=None, limit_properties=25, trial_days=0,
                             actor=staff_user, now=start)
    quote = billing.change_plan(_current(account), "custom-corp-pro", "monthly", now=start)
    _properties(account, [f"Region {n}" for n in range(1, 13)], now=start + timedelta(hours=1))
    _sessions(account, 2200, max(start + timedelta(hours=2), _month_start(today)), today - timedelta(hours=1))
    return account, quote


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
    ("renewed", "Renewal paid in the last 24 hours; last month's overage invoiced", renewal_paid_ahead),
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
