"""A small 14-month ledger built through the public engine, for the revenue figures (ACC-5).

Ten accounts from 2026-01-05 to 2027-03-10 10:00 UTC ("now"); the billing run runs every day at
12:00 UTC and customers act at 09:00 (staff at 10:00), so no change sits on a month boundary.
Catalog: the demo catalog (CAT-2) plus "metered" ($9.00/month, 300 sessions, $2.00 per 1,000
over), so overage is cheap to report.

  A  trial Personal monthly 2026-01-05, converts 01-19 (periods from the 19th); upgrades to
     Advanced monthly 04-08 (UPG-2); buys 2 extra properties 06-02 (ADD-1); switches to Advanced
     yearly 09-10 (UPG-3, the extra properties kept).
  B  subscribes to Personal monthly 2026-02-14; its card fails from 05-01: the renewal of 05-13
     fails (past due), retries of 05-14 and 05-16 fail, a new card on 05-17 pays it (DUN-4);
     cancels 08-20 (ends at the period end 09-14, CAN-2); subscribes again 11-03.
  C  trial Advanced monthly 2026-03-02 with a card that always fails: the conversion of 03-16
     fails, the four retries fail, suspended 03-23 (DUN-3); a good card 04-06 voids the open
     invoice and charges a new period from 04-06; downgrade to Personal scheduled 07-01,
     effective at the period end 07-06 (DWN-1).
  D  subscribes to Metered monthly 2026-09-20; 800 sessions in October (invoiced 11-01) and 1,300
     in January 2027 (invoiced 02-01).
  E  trial Advanced yearly 2026-05-05, converts 05-19 ($278.04 for 2026-05-19 to 2027-05-19); a
     Billing manager downgrades it to Personal yearly at once on 08-05 (DWN-4, a credit note).
  F  trial Personal monthly 2026-10-01, converts 10-15; asks for the refund 10-20, approved 10-21
     (REF-2: refunded, back to Free).
  G  trial Personal monthly 2027-03-01, switched to Advanced 03-05 (TRI-6): still in trial now.
  H  trial Personal monthly 2026-12-03, cancelled 12-05 (TRI-4); the trial end 12-17 moves it to Free.
  I  subscribes to Personal monthly 2026-06-10; its card runs out of funds 12-20: the renewal of
     2027-01-09 fails, the retry of 01-10 fails, the bank accepts the card again on 01-11 and the
     retry of 01-12 pays it (DUN-2).
  K  subscribes to Personal monthly 2026-12-08; its card runs out of funds 2027-03-01: the renewal
     of 03-07 fails, the retry of 03-08 fails; still in dunning now.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from accounts.groups import BILLING_MANAGERS, ensure_staff_groups
from accounts.services import property_add
from invoices.models import Invoice, InvoiceKind, SandboxCard
from subscriptions import billing, scheduler, staff
from tests.factories import AccountFactory, PlanFactory, UserFactory
from usage.ingest import usage_ingest

START = datetime(2026, 1, 5, tzinfo=UTC)
NOW = datetime(2027, 3, 10, 10, 0, tzinfo=UTC)
NAMES = "ABCDEFGHIK"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def current(account):
    return account.subscriptions.select_related("plan").order_by("-id").first()


def report_sessions(account, count: int, day: str) -> None:
    """`count` sessions on `day` (UTC), through the usage API's ingest (USE-1)."""
    prop = account.properties.live().first() or property_add(account=account, name="Site", domain=f"{account.pk}.test",
                                                             now=at(day))
    moment = at(day) + timedelta(hours=8)
    for offset in range(0, count, 1000):
        events = [{"id": f"{account.pk}-{day}-{i}", "tracking_tag": prop.tracking_tag, "type": "session",
                   "timestamp": (moment + timedelta(seconds=i)).isoformat()}
                  for i in range(offset, min(count, offset + 1000))]
        usage_ingest(events, now=moment + timedelta(hours=2))


def build_ledger(catalog) -> dict:
    """Build the ledger; returns the accounts by letter (and the manager as "manager")."""
    PlanFactory(code="metered", name="Metered", rank=1, monthly_price=Decimal("9.00"), yearly_price=Decimal("90.00"),
                limit_properties=3, limit_sessions=300, overage_per_1000=Decimal("2.00"), trial_days=14)
    manager = UserFactory(username="manager@prorata.test", is_staff=True)
    manager.groups.add(ensure_staff_groups()[BILLING_MANAGERS])
    acct = {name: AccountFactory(name=f"Account {name}", subscription=False) for name in NAMES}
    for account in acct.values():  # signed up on the Free plan before the first day of the ledger
        billing.start_free(account, now=START - timedelta(days=1))

    def card(name, token, when):
        return lambda: billing.set_payment_method(acct[name], f"{token}:{name.lower()}{when[:7]}", now=at(when))

    def trial(name, plan, cycle="monthly", token="pm_card_visa"):
        def go(when):
            billing.set_payment_method(acct[name], f"{token}:{name.lower()}", now=at(when))
            billing.start_trial(acct[name], plan, cycle, now=at(when))
        return go

    def subscribe(name, plan):
        def go(when):
            if not acct[name].payment_methods.filter(is_default=True).exists():
                billing.set_payment_method(acct[name], f"pm_card_visa:{name.lower()}", now=at(when))
            billing.subscribe(acct[name], plan, "monthly", now=at(when))
        return go

    def bank_accepts_again(name):
        # The bank lifts the decline (funds added): the same card, now charged successfully.
        return lambda: SandboxCard.objects.filter(customer__endswith=f"_{acct[name].pk}").update(
            token=f"pm_card_visa:{name.lower()}-funded")

    def refund(name, asked, decided):
        def go():
            invoice = Invoice.objects.get(account=acct[name], kind=InvoiceKind.TRIAL_CONVERSION)
            request = billing.request_refund(invoice, message="We never used it.", actor=acct[name].owner,
                                             now=at(asked))
            staff.decide_refund(request, approve=True, reason="No usage during the trial.", actor=manager,
                                now=at(decided))
        return go

    actions = [
        ("2026-01-05T09:00", lambda: trial("A", "personal")("2026-01-05T09:00")),
        ("2026-02-14T09:00", lambda: subscribe("B", "personal")("2026-02-14T09:00")),
        ("2026-03-02T09:00", lambda: trial("C", "advanced", token="pm_card_chargeCustomerFail")("2026-03-02T09:00")),
        ("2026-04-06T09:00", card("C", "pm_card_visa", "2026-04-06T09:00")),
        ("2026-04-08T09:00", lambda: billing.change_plan(current(acct["A"]), "advanced", "monthly",
                                                         now=at("2026-04-08T09:00"))),
        ("2026-05-01T09:00", card("B", "pm_card_chargeCustomerFail", "2026-05-01T09:00")),
        ("2026-05-05T09:00", lambda: trial("E", "advanced", "yearly")("2026-05-05T09:00")),
        ("2026-05-17T09:00", card("B", "pm_card_visa", "2026-05-17T09:00")),
        ("2026-06-02T09:00", lambda: billing.set_extra_properties(current(acct["A"]), 2, now=at("2026-06-02T09:00"))),
        ("2026-06-10T09:00", lambda: subscribe("I", "personal")("2026-06-10T09:00")),
        ("2026-07-01T09:00", lambda: billing.change_plan(current(acct["C"]), "personal", "monthly",
                                                         now=at("2026-07-01T09:00"))),
        ("2026-08-05T10:00", lambda: staff.downgrade_now(current(acct["E"]), "personal", reason="Asked by phone",
                                                         actor=manager, now=at("2026-08-05T10:00"))),
        ("2026-08-20T09:00", lambda: billing.cancel(current(acct["B"]), reason="Too expensive",
                                                    now=at("2026-08-20T09:00"))),
        ("2026-09-10T09:00", lambda: billing.change_plan(current(acct["A"]), "advanced", "yearly",
                                                         now=at("2026-09-10T09:00"))),
        ("2026-09-20T09:00", lambda: subscribe("D", "metered")("2026-09-20T09:00")),
        ("2026-10-01T09:00", lambda: trial("F", "personal")("2026-10-01T09:00")),
        ("2026-10-15T15:00", lambda: report_sessions(acct["D"], 800, "2026-10-15")),
        ("2026-10-21T10:00", refund("F", "2026-10-20T10:00", "2026-10-21T10:00")),
        ("2026-11-03T09:00", lambda: subscribe("B", "personal")("2026-11-03T09:00")),
        ("2026-12-03T09:00", lambda: trial("H", "personal")("2026-12-03T09:00")),
        ("2026-12-05T09:00", lambda: billing.cancel(current(acct["H"]), now=at("2026-12-05T09:00"))),
        ("2026-12-08T09:00", lambda: subscribe("K", "personal")("2026-12-08T09:00")),
        ("2026-12-20T09:00", card("I", "pm_card_chargeDeclinedInsufficientFunds", "2026-12-20T09:00")),
        ("2027-01-11T09:00", bank_accepts_again("I")),
        ("2027-01-20T15:00", lambda: report_sessions(acct["D"], 1300, "2027-01-20")),
        ("2027-03-01T09:00", lambda: trial("G", "personal")("2027-03-01T09:00")),
        ("2027-03-01T09:30", card("K", "pm_card_chargeDeclinedInsufficientFunds", "2027-03-01T09:30")),
        ("2027-03-05T09:00", lambda: billing.change_plan(current(acct["G"]), "advanced", "monthly",
                                                         now=at("2027-03-05T09:00"))),
    ]
    steps = [(at(when), action) for when, action in actions]
    day = START.replace(hour=12)
    while day < NOW:
        steps.append((day, (lambda moment: lambda: scheduler.run(moment))(day)))
        day += timedelta(days=1)
    for _moment, action in sorted(steps, key=lambda step: step[0]):
        action()
    return {**acct, "manager": manager}
