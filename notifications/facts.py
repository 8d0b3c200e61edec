"""What an e-mail states about the account, fixed when its event happens (NOT-4).

`core.events.emit` calls `event_facts` (registered in NotificationsConfig.ready) inside the
transaction of the change it announces, so the facts are the account's state as that change left
it: the billing time zone its dates are written in, the card on file, the plan's name and price,
the next charge as the account statement says it at that moment (the billing page's own
sentence), the credit left. They are stored, JSON-safe and already formatted, with the outbox row;
`kinds.event_context` renders the e-mail from them and from the issued invoice or credit note
(fixed at issue, INV-6), never from the account as it is at delivery.

The billing run's set-wise receipts give their next charge themselves (`emit_many(facts=…)`):
the accounts and cards of a batch are read here in two statements, and no statement is worked out
per receipt inside the run's transaction.
"""

from __future__ import annotations

from django.conf import settings

from accounts.models import Account
from core.events import Event
from core.seller import seller
from invoices.models import CreditNote, Invoice, PaymentMethod
from plans.models import Plan
from subscriptions.models import RestoreRequest, Subscription
from subscriptions.statement import account_statement

from .kinds import CYCLE_UNITS, PLAN_KEYS, human_date, local_day, money

# Facts a set-wise caller may give instead of the statement (see `emit_many`).
NEXT_CHARGE = "next_charge_sentence"


def event_facts(events: list[Event]) -> list[dict]:
    """Each event's facts (see the module's docstring); read in the emitting transaction."""
    accounts = {row["id"]: row for row in Account.objects.filter(pk__any=list({e.account_id for e in events}))
                .values("id", "name", "timezone")}
    cards = {account_id: f"{brand.title()} ending in {last4}" for account_id, brand, last4 in
             PaymentMethod.objects.filter(account_id__any=list(accounts), is_default=True, detached_at__isnull=True)
             .values_list("account_id", "brand", "last4")}
    support = seller().support_email
    facts = []
    for event in events:
        account = accounts.get(event.account_id)
        if account is None:
            facts.append({})
            continue
        taken = {"zone": account["timezone"], "account_name": account["name"], "support_email": support,
                 "card": cards.get(event.account_id, "")}
        if NEXT_CHARGE not in event.facts:
            taken.update(account_facts(event))
        facts.append(taken)
    return facts


def account_facts(event: Event) -> dict:
    """The subscription, plan, credit and statement facts of one event, as they are now."""
    data = event.data
    account = Account.objects.get(pk=event.account_id)
    zone = account.zone
    invoice = Invoice.objects.filter(pk=data["invoice_id"]).first() if data.get("invoice_id") else None
    note = CreditNote.objects.filter(pk=data["credit_note_id"]).first() if data.get("credit_note_id") else None
    subscription = Subscription.objects.select_related("plan").filter(pk=data["subscription_id"]).first() \
        if data.get("subscription_id") else None
    if subscription is None and data.get("restore_request_id"):
        request = RestoreRequest.objects.select_related("subscription__plan").filter(
            pk=data["restore_request_id"]).first()
        subscription = request.subscription if request else None
    if subscription is None and invoice is not None and invoice.subscription_id:
        subscription = Subscription.objects.select_related("plan").get(pk=invoice.subscription_id)
    if subscription is None:
        subscription = account.subscription
    currency = (note.currency if note else None) or (invoice.currency if invoice else None) or (
        subscription.plan.currency if subscription else settings.BILLING_DEFAULT_CURRENCY)
    plan = subscription.plan if subscription else None
    cycle = subscription.cycle if subscription else "monthly"
    price = plan.price_for(cycle) if plan else None
    facts: dict = {
        "currency": currency,
        "plan": plan.name if plan else "",
        "price": money(price, currency) if price is not None else "",
        "cycle_unit": CYCLE_UNITS.get(cycle, cycle),
        "hard_capped": bool(plan and plan.hard_capped),
        "overage_price": money(plan.overage_per_1000, currency) if plan and not plan.hard_capped else "",
        "trial_end": human_date(local_day(subscription.trial_end, zone)) if subscription else "",
        # DUN-2: which failure of the dunning cycle this was (the engine counts from 0 after the first).
        "attempt_number": subscription.retry_count + 1 if subscription is not None else 1,
        "plan_names": {code: name for code, name in Plan.objects.filter(
            code__in=[data[key] for key in PLAN_KEYS if data.get(key)]).values_list("code", "name")},
    }
    if invoice is not None:
        facts["invoice_due"] = money(invoice.amount_due, invoice.currency)
    if note is not None:
        facts["credit_available"] = money(note.remaining, note.currency)
    if data.get("to_plan"):
        target = Plan.objects.filter(code=data["to_plan"]).first()
        to_cycle = data.get("to_cycle") or data.get("cycle") or cycle
        to_price = target.price_for(to_cycle) if target else None
        facts["to_price"] = money(to_price, currency) if to_price is not None else ""
        facts["to_cycle_unit"] = CYCLE_UNITS.get(to_cycle, to_cycle)
        facts["to_limit"] = target.limit_properties if target else None
    # PAY-4: what happens next is the account statement's at the event, the billing page's own sentence.
    statement = account_statement(account, event.occurred_at)
    facts[NEXT_CHARGE] = statement.next_charge_sentence
    if statement.on_new_card is not None:
        upcoming = statement.on_new_card.upcoming
        facts["reactivation_amount"] = money(statement.on_new_card.total, statement.currency)
        facts["reactivation_what"] = f"{upcoming.plan.name}, {upcoming.cycle}"
    return facts
