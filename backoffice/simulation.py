"""A deterministic fast-forward of many accounts through the engine, then the ledger invariants.

Accounts start trials, subscribe, upgrade, downgrade, cancel and resume, buy extra properties,
add properties, report usage through the usage API's ingest service, run out of card funds and fix
their cards; `scheduler.run` is called for every simulated hour. Everything goes through the public
API, as customers and the scheduler would. Same seed, same history.
"""

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db.models import Count, F, Q, Sum

from accounts.models import Account, AccountStatus
from accounts.services import AccountError, property_add
from invoices.models import CreditNote, Invoice, InvoiceStatus, Payment, PaymentStatus, SandboxCharge
from plans.models import Plan
from plans.services import DEMO_CATALOG, catalog_load_file
from subscriptions import billing, scheduler
from subscriptions.models import Status
from usage.ingest import usage_ingest

START = datetime(2026, 1, 1, tzinfo=UTC)
CARDS_OK = "pm_card_visa:{}"  # each account its own card (TRI-2 matches cards by fingerprint)
CARD_BROKE = "pm_card_chargeDeclinedInsufficientFunds:{}"


@dataclass
class SimulationResult:
    accounts: int
    days: int
    seed: int
    actions: dict = field(default_factory=dict)
    refused: dict = field(default_factory=dict)
    runs: int = 0
    invariants: dict = field(default_factory=dict)  # name -> list of violations (empty = holds)

    @property
    def ok(self) -> bool:
        return all(not v for v in self.invariants.values())

    def __str__(self) -> str:
        lines = [f"Simulated {self.accounts} accounts over {self.days} days (seed {self.seed}): "
                 f"{self.runs} billing runs"]
        lines += [f"  {name:<22} {n}" for name, n in sorted(self.actions.items())]
        if self.refused:
            lines.append("  refused by the engine (as designed): "
                         + ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items())))
        lines.append("Ledger invariants:")
        for name, violations in self.invariants.items():
            lines.append(f"  [{'ok' if not violations else 'FAIL'}] {name}"
                         + (f": {len(violations)} violation(s), e.g. {violations[:3]}" if violations else ""))
        return "\n".join(lines)


def _setup_catalog() -> None:
    catalog_load_file(DEMO_CATALOG)
    # A metered plan with a small quota so that overage invoices happen in the simulation.
    Plan.objects.update_or_create(code="metered", defaults={
        "name": "Metered", "rank": 1, "currency": "USD", "monthly_price": Decimal("9.00"),
        "yearly_price": Decimal("90.00"), "limit_properties": 3, "limit_sessions": 300,
        "overage_per_1000": Decimal("2.00"), "trial_days": 14, "public": True})


def simulate(accounts: int, days: int, seed: int = 1, *, start: datetime = START,
             runs_per_day: int = 24) -> SimulationResult:
    """`accounts` customers acting at random for `days` days, with the billing run `runs_per_day`
    times a day (every hour by default, as the schedule does every 15 minutes; any divisor of 24
    keeps each run within REN-1's 24 hours of lead, so nothing is renewed late)."""
    if runs_per_day < 1 or 24 % runs_per_day:
        raise ValueError("runs_per_day must divide 24")
    rng = random.Random(seed)
    _setup_catalog()
    result = SimulationResult(accounts, days, seed)
    ids = []
    for i in range(accounts):
        _user, account = billing.sign_up(email=f"sim{seed}-{i}@example.com", password="simulation-password-1",
                                          account_name=f"Sim {i}", now=start)
        ids.append(account.pk)
    event_seq = 0
    for day in range(days):
        today = start + timedelta(days=day)
        for account_id in ids:
            moment = today + timedelta(hours=rng.randint(9, 17), minutes=rng.randint(0, 59))
            event_seq = _act(rng, account_id, moment, result, event_seq)
        for hour in range(0, 24, 24 // runs_per_day):
            report = scheduler.run(today + timedelta(hours=hour))
            result.runs += 1
            for step, ref, message in report.failures:
                result.refused[f"run:{step}"] = result.refused.get(f"run:{step}", 0) + 1
                raise AssertionError(f"billing run failed at {today + timedelta(hours=hour)}: {step} #{ref}: {message}")
    result.invariants = check_invariants()
    return result


def _count(result, key):
    result.actions[key] = result.actions.get(key, 0) + 1


def _act(rng: random.Random, account_id: int, now: datetime, result: SimulationResult, seq: int) -> int:
    """One customer's day: maybe one action, and some usage."""
    account = Account.objects.get(pk=account_id)
    sub = account.subscription
    roll = rng.random()
    try:
        if sub.status in (Status.PAST_DUE, Status.SUSPENDED):
            if roll < 0.3:
                _count(result, "fix_card")
                billing.set_payment_method(account, CARDS_OK.format(account.pk), now=now)
        elif sub.plan.is_free and sub.status == Status.ACTIVE:
            if roll < 0.03:
                _count(result, "start_trial")
                billing.set_payment_method(account, CARDS_OK.format(account.pk), now=now)
                billing.change_plan(sub, rng.choice(["personal", "advanced", "metered"]),
                                    rng.choice(["monthly", "monthly", "yearly"]), now=now)
            elif roll < 0.04:
                _count(result, "subscribe")
                billing.set_payment_method(account, CARDS_OK.format(account.pk), now=now)
                billing.subscribe(account, rng.choice(["personal", "metered"]), now=now)
        elif sub.status == Status.TRIALING:
            if roll < 0.02:
                _count(result, "trial_change")
                billing.change_plan(sub, rng.choice(["personal", "advanced"]), sub.cycle, now=now)
            elif roll < 0.035:
                _count(result, "cancel_trial")
                billing.cancel(sub, reason="simulated", now=now)
        elif sub.status == Status.CANCELED and sub.trial_end and sub.trial_end > now and roll < 0.3:
            _count(result, "reactivate_trial")
            billing.resume(sub, now=now)
        elif sub.status == Status.ACTIVE and sub.is_paid:
            # Monthly churn of a few percent, as in a healthy SaaS business.
            if roll < 0.006:
                _count(result, "upgrade")  # to Advanced, or Advanced monthly -> yearly
                cycle = "yearly" if sub.plan.code == "advanced" else sub.cycle
                billing.change_plan(sub, "advanced", cycle, now=now)
            elif roll < 0.011:
                _count(result, "downgrade")
                billing.change_plan(sub, rng.choice(["personal", "metered", "free"]), "monthly", now=now)
            elif roll < 0.014:
                _count(result, "cancel")
                billing.cancel(sub, reason="simulated", now=now)
            elif roll < 0.06 and sub.has_pending_change:
                _count(result, "resume")
                billing.resume(sub, now=now)
            elif 0.06 <= roll < 0.07 and sub.plan.extra_property_monthly is not None:
                _count(result, "extra_properties")
                billing.set_extra_properties(sub, rng.randint(0, 3), now=now)
            elif 0.07 <= roll < 0.076:
                _count(result, "card_runs_dry")
                billing.set_payment_method(account, CARD_BROKE.format(account.pk), now=now)
        if rng.random() < 0.05:
            _count(result, "add_property")
            property_add(account=account, name=f"Site {seq}", domain=f"site{seq}.example.com", now=now)
    except (billing.BillingError, AccountError) as exc:
        key = type(exc).__name__
        result.refused[key] = result.refused.get(key, 0) + 1
    return _usage(rng, account, now, seq + 1)


def _usage(rng, account, now, seq) -> int:
    """Report today's sessions through the usage API's ingest service (USE-1)."""

    props = list(account.properties.live().filter(status="active").values_list("tracking_tag", flat=True))
    if not props or rng.random() < 0.5:
        return seq
    events = []
    for _ in range(rng.randint(1, 40)):
        seq += 1
        events.append({"id": f"sim-{account.pk}-{seq}", "tracking_tag": rng.choice(props), "type": "session",
                       "timestamp": (now - timedelta(minutes=rng.randint(0, 600))).isoformat()})
    usage_ingest(events, now=now)
    return seq


def check_invariants() -> dict[str, list]:
    """The ledger's invariants; each maps to the violations found (empty = holds)."""
    issued = Invoice.objects.exclude(status__in=[InvoiceStatus.DRAFT])
    found = {}
    # 1. Every paid period has exactly one paid renewal invoice.
    periods = (issued.filter(kind__in=["renewal", "trial_conversion", "subscription", "reactivation"],
                             status=InvoiceStatus.PAID)
               .values("subscription_id", "period_start").annotate(n=Count("id")).filter(n__gt=1))
    found["one invoice per period"] = [(p["subscription_id"], str(p["period_start"])) for p in periods]
    # 2. No payment is charged twice: one gateway charge per attempt, never more paid than owed.
    keys = list(Payment.objects.values_list("idempotency_key", flat=True))
    charges = SandboxCharge.objects.filter(idempotency_key__in=keys).values("idempotency_key").annotate(n=Count("id"))
    twice = [c["idempotency_key"] for c in charges if c["n"] > 1]
    overpaid = list(issued.annotate(
        paid=Sum("payments__amount", filter=Q(payments__status=PaymentStatus.SUCCEEDED))
    ).filter(paid__gt=F("total")).values_list("number", flat=True))
    unrecorded = SandboxCharge.objects.filter(succeeded=True).exclude(idempotency_key__in=keys).count()
    found["no payment charged twice"] = twice + overpaid + ([f"{unrecorded} unrecorded charges"] if unrecorded else [])
    # 3. Invoice numbers have no gaps within a year.
    gaps = []
    numbers = {}
    for number in Invoice.objects.filter(number__isnull=False).values_list("number", flat=True):
        year, seq = number.split("-")
        numbers.setdefault(year, []).append(int(seq))
    for year, seqs in numbers.items():
        seqs.sort()
        if seqs != list(range(1, len(seqs) + 1)):
            gaps.append(year)
    found["invoice numbers gapless"] = gaps
    # 4. Every credit note's remaining amount is between 0 and its amount.
    found["credit notes in range"] = list(CreditNote.objects.filter(
        Q(remaining__lt=0) | Q(remaining__gt=F("amount"))).values_list("number", flat=True))
    # 5. No active account lacks a paid or trialing subscription (Free counts as paid-up at $0).
    lacking = []
    for account in Account.objects.filter(status=AccountStatus.ACTIVE):
        sub = account.subscription
        if sub is None or sub.status in (Status.CANCELED, Status.SUSPENDED):
            lacking.append(account.pk)
        elif sub.status == Status.ACTIVE and sub.is_paid and not issued.filter(
            subscription_id=sub.pk, status=InvoiceStatus.PAID,
            period_start__lte=sub.current_period_start, period_end__gte=sub.current_period_end,
        ).exists():
            lacking.append(account.pk)
    found["active accounts paid up"] = lacking
    return found

