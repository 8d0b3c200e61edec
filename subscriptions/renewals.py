"""Renewals (REN-1..3) and period roll-overs (DWN-2, DWN-3, CAN-2, ADD-2, ADD-3). The billing run
renews a chunk of due subscriptions set-wise, in a fixed number of statements, not ~40 per
subscription; what is not plain goes through the one-by-one `renew` and `rollover` below.

The same three steps as one renewal (`renew`), each for the whole chunk:

1. claim (`SELECT … FOR UPDATE SKIP LOCKED`, or the run lock on SQLite), skip the periods already
   invoiced (the `dedupe_key`), issue the invoices (numbers taken last, in one step), the audit
   rows and the `unknown` payments, and commit;
2. charge, outside any transaction (`charge_many` where the gateway has it);
3. record the succeeded charges, mark their invoices paid and announce the receipts through the
   events outbox, in one transaction.

What is not plain goes through the one-by-one path, which knows every case: an account holding
credit (DWN-4 applies it), no payment method (DUN-1), a zero total, a declined or unknown charge
(dunning, PAY-2), a subscription past due by the time the charge succeeded. A chunk whose insert
hits another worker's invoice (IntegrityError on the dedupe key) is redone one by one.

Roll-overs at the period end (`rollover_chunk`) are set-wise when nothing changes but the period:
no cancellation, no scheduled plan, cycle or add-on change, and no more active properties than the
plan allows; the rest (CAN-2, DWN-3, ADD-2, ADD-3) go through `rollover`.
"""


import logging
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, F

from accounts.audit import actor_label, audit, audit_row
from accounts.models import Account, AuditEvent, Property, PropertyStatus
from accounts.services import pause_excess
from core import events
from core.money import ZERO
from core.sql import update_from_values
from invoices import batch, tax_rates
from invoices import services as ledger
from invoices.models import Invoice, InvoiceKind, InvoiceStatus
from plans.models import Plan

from . import charges, lifecycle, terms
from .locks import subscription_claim, subscriptions_claim, subscriptions_claim_values, subscriptions_lock_statuses
from .models import Status, Subscription
from .selectors import due_renewals, due_rollovers
from .statement import Statement

log = logging.getLogger(__name__)


# --- one by one: every case ---------------------------------------------------------------------


def renew(pk, now) -> bool:
    """REN-1: the renewal invoice for the next period, charged 24 hours before the period ends."""
    with transaction.atomic():
        sub = subscription_claim(pk, due_renewals(now))
        if sub is None:
            return False
        upcoming = terms.next_terms(sub)
        key = terms.renewal_key(sub, upcoming.start)
        Subscription.objects.filter(pk=sub.pk).update(renewal_invoiced_for=F("current_period_end"))
        if Invoice.objects.filter(dedupe_key=key).exists():
            return False
        payment = charges.invoice_issue_and_begin(sub, InvoiceKind.RENEWAL, upcoming.lines(),
                                                  (upcoming.start, upcoming.end), key, now)
    charges.payment_send_and_settle(payment, now)
    return True


def rollover(pk, now) -> bool:
    """At the period end: cancellations and downgrades take effect, the next period starts."""
    with transaction.atomic():
        sub = subscription_claim(pk, due_rollovers(now))
        if sub is None:
            return False
        account = sub.account
        before = terms.snapshot(sub)
        if terms.cancellation_due(sub):  # CAN-2: the subscription ends; the account moves to Free
            free = lifecycle.subscription_move_to_free(sub, now=now)
            paused = list(account.properties.live().filter(status="paused").values_list("name", flat=True))
            audit(account=account, actor=None, action="cancellation.effective", obj=sub, before=before,
                  after=terms.snapshot(free), now=now)
            events.emit("cancellation.effective", account.pk, now=now, subscription_id=sub.pk, plan=sub.plan.code,
                        paused_properties=paused)
            return True
        if sub.scheduled_plan_id and sub.scheduled_plan.is_free:  # DWN-1 to Free
            to_free(sub, now)
            return True
        upcoming = terms.next_terms(sub)
        invoice = Invoice.objects.filter(dedupe_key=terms.renewal_key(sub, upcoming.start)).first()
        if invoice is None or invoice.status == InvoiceStatus.VOID:
            return False  # the renewal step has not run for it yet; next run
        from_plan = sub.plan
        sub.plan, sub.cycle, sub.anchor_at, sub.period_index = (upcoming.plan, upcoming.cycle, upcoming.anchor,
                                                                upcoming.index)
        sub.current_period_start, sub.current_period_end = upcoming.start, upcoming.end
        sub.timezone, sub.next_timezone = upcoming.timezone, ""  # D-5: the owner's zone from this period
        sub.current_price = terms.plan_price(upcoming.plan, upcoming.cycle)
        sub.extra_properties, sub.scheduled_extra_properties = upcoming.extra_properties, None
        sub.scheduled_plan, sub.scheduled_cycle = None, ""
        sub.save()
        paused = pause_excess(account, upcoming.property_limit, now=now)  # DWN-3 at effect time: pause, never delete
        audit(account=account, actor=None, action="period.started", obj=sub, before=before,
              after=terms.snapshot(sub), now=now)
        if from_plan.pk != upcoming.plan.pk or before["cycle"] != upcoming.cycle:
            events.emit("downgrade.applied", account.pk, now=now, subscription_id=sub.pk, from_plan=from_plan.code,
                        to_plan=upcoming.plan.code, paused_properties=[p.name for p in paused])
        return True


def to_free(sub, now) -> None:
    """DWN-1 to Free at the period (or trial) end: the subscription ends, the account is on Free
    with its excess properties paused (DWN-3)."""
    before = terms.snapshot(sub)
    free = lifecycle.subscription_move_to_free(sub, now=now)
    audit(account=sub.account, actor=None, action="downgrade.applied", obj=free, before=before,
          after=terms.snapshot(free), now=now)
    paused = list(sub.account.properties.live().filter(status="paused"))
    events.emit("downgrade.applied", sub.account_id, now=now, subscription_id=sub.pk, from_plan=sub.plan.code,
                to_plan="free", paused_properties=[p.name for p in paused])


ONE_BY_ONE = {"renewals": renew, "rollovers": rollover}


# --- set-wise: the plain cases of a chunk -------------------------------------------------------


def renew_chunk(ids: list[int], now, report) -> None:
    """Renew the due subscriptions among `ids`; counts and failures go to `report`."""
    size = settings.BILLING_RUN_BATCH  # subscriptions per transaction: bounds the time rows stay locked
    for offset in range(0, len(ids), size):
        part = ids[offset:offset + size]
        try:
            pairs, one_by_one = _issue(part, now)
        except IntegrityError:  # another worker invoiced one of these first: let the claims sort it out
            pairs, one_by_one = [], part
        report.add("renewals", len(pairs))
        _collect(pairs, now, report)
        _each("renewals", one_by_one, now, report)


def rollover_chunk(ids: list[int], now, report) -> None:
    """Start the next period of the due subscriptions among `ids` (see the module's docstring)."""
    size = settings.BILLING_RUN_BATCH
    for offset in range(0, len(ids), size):
        rolled, one_by_one = _roll(ids[offset:offset + size], now)
        report.add("rollovers", rolled)
        _each("rollovers", one_by_one, now, report)


def _each(step, ids, now, report) -> None:
    for pk in ids:
        try:
            if ONE_BY_ONE[step](pk, now):
                report.add(step)
        except Exception as exc:  # one bad subscription never stops the run; it is reported
            log.exception("billing run: %s failed for subscription %s", step, pk)
            report.failures.append((step, pk, f"{type(exc).__name__}: {exc}"))


def _roll(ids, now):
    """Returns how many rolled over here and the ids to roll over one by one."""
    with transaction.atomic():
        subs = subscriptions_claim(due_rollovers(now).filter(pk__any=ids))
        upcoming = {sub.pk: terms.next_terms(sub) for sub in subs}
        plain, one_by_one = [], []
        for sub in subs:  # only the period changes: anything else is rolled over one by one
            if (sub.cancel_at_period_end or sub.scheduled_plan_id or sub.scheduled_cycle
                    or upcoming[sub.pk].extra_properties != sub.extra_properties):
                one_by_one.append(sub.pk)
            else:
                plain.append(sub)
        keys = {sub.pk: terms.renewal_key(sub, upcoming[sub.pk].start) for sub in plain}
        invoiced = set(Invoice.objects.filter(dedupe_key__any=keys.values()).exclude(status=InvoiceStatus.VOID)
                       .values_list("dedupe_key", flat=True))
        plain = [sub for sub in plain if keys[sub.pk] in invoiced]  # not renewed yet: a later run
        active = dict(Property.objects.live().filter(account_id__any=[sub.account_id for sub in plain],
                                                     status=PropertyStatus.ACTIVE)
                      .values("account_id").annotate(n=Count("id")).values_list("account_id", "n"))
        over = {sub.pk for sub in plain if (limit := sub.property_limit) is not None
                and active.get(sub.account_id, 0) > limit}
        one_by_one += sorted(over)
        plain = [sub for sub in plain if sub.pk not in over]
        rows, audits = [], []
        for sub in plain:
            before = terms.snapshot(sub)
            nxt = upcoming[sub.pk]
            sub.anchor_at, sub.period_index = nxt.anchor, nxt.index
            sub.current_period_start, sub.current_period_end = nxt.start, nxt.end
            sub.current_price, sub.scheduled_extra_properties = terms.plan_price(nxt.plan, nxt.cycle), None
            sub.timezone, sub.next_timezone = nxt.timezone, ""
            rows.append((sub.pk, nxt.anchor, nxt.index, nxt.start, nxt.end, sub.current_price, nxt.timezone))
            audits.append(audit_row(account=sub.account, actor=None, action="period.started", obj=sub,
                                    before=before, after=terms.snapshot(sub), now=now))
        update_from_values(Subscription, {"anchor_at": "datetime", "period_index": "int",
                                          "current_period_start": "datetime", "current_period_end": "datetime",
                                          "current_price": "decimal", "timezone": "text"}, rows,
                           constants={"scheduled_extra_properties": None, "next_timezone": "", "updated_at": now})
        AuditEvent.objects.bulk_create(audits)
    return len(plain), one_by_one


# The columns of a claimed subscription that the set-wise renewal reads (`terms.next_terms_of`,
# `terms.renewal_key_of`, the checks below), claimed as rows: decoding whole rows, and then building
# model instances of them, cost more than locking them (issue 17). The account's time zone comes
# with the claim, joined (the accounts are not locked): the next period's calendar is the owner's
# zone (`terms.next_zone_of`, D-5).
RENEWAL_FIELDS = ("id", "account_id", "plan_id", "scheduled_plan_id", "cycle", "scheduled_cycle", "extra_properties",
                  "scheduled_extra_properties", "anchor_at", "period_index", "current_period_end", "next_timezone",
                  "account__timezone")


class _Claimed(NamedTuple):  # a claimed subscription's RENEWAL_FIELDS
    pk: int
    account_id: int
    plan_id: int
    scheduled_plan_id: int | None
    cycle: str
    scheduled_cycle: str
    extra_properties: int
    scheduled_extra_properties: int | None
    anchor_at: object
    period_index: int
    current_period_end: object
    next_timezone: str
    account_timezone: str


class _Renewed(NamedTuple):  # what the receipt of a set-wise renewal states of what comes next (NOT-4)
    upcoming: terms.NextTerms  # the period just invoiced
    account: Account  # unsaved, for the calendar of the dates a customer reads (`Account.zone`)
    customer: tuple[str, str]  # country and VAT ID, as the batch read them (TAX-3)


def _issue(ids, now):
    """Step 1. Returns the (attempt, subscription id, renewed) triples to collect and the ids to renew one by one.
    No model instance per row: the claimed subscriptions are rows, the batch's few plans are shared."""
    with transaction.atomic():
        subs = [_Claimed(*row) for row in subscriptions_claim_values(due_renewals(now).filter(pk__any=ids),
                                                                      RENEWAL_FIELDS)]
        plans = {plan.pk: plan for plan in Plan.objects.filter(pk__any={sub.plan_id for sub in subs} | {
            sub.scheduled_plan_id for sub in subs if sub.scheduled_plan_id})}
        upcoming = {sub.pk: terms.next_terms_of(
            plans[sub.plan_id], plans[sub.scheduled_plan_id] if sub.scheduled_plan_id else None, sub.cycle,
            sub.scheduled_cycle, sub.extra_properties, sub.scheduled_extra_properties, sub.anchor_at, sub.period_index,
            sub.current_period_end, terms.next_zone_of(sub.next_timezone, sub.account_timezone))
            for sub in subs}
        keys = {sub.pk: terms.renewal_key_of(sub.pk, upcoming[sub.pk].start) for sub in subs}
        # Already invoiced (REN-3), credit (DWN-4), the card (DUN-1), tax details: one read for the batch.
        facts = dict(zip((sub.pk for sub in subs), batch.issue_facts([(sub.account_id, keys[sub.pk]) for sub in subs]),
                         strict=True))
        done_before = [sub.pk for sub in subs if facts[sub.pk].invoiced]
        drafts, plain, renewed, one_by_one = [], [], [], []
        for sub in subs:
            fact = facts[sub.pk]
            if fact.invoiced:
                continue
            nxt = upcoming[sub.pk]
            lines = nxt.lines()
            total = sum(line.amount for line in lines)
            if fact.has_credit or fact.payment_method_id is None or total <= 0:
                one_by_one.append(sub.pk)
                continue
            plain.append(sub.pk)
            renewed.append(_Renewed(nxt, Account(pk=sub.account_id, timezone=sub.account_timezone),
                                    (fact.country, fact.vat_id)))
            drafts.append(batch.Draft(sub.account_id, sub.pk, InvoiceKind.RENEWAL, lines, plans[sub.plan_id].currency,
                                       nxt.start, nxt.end, keys[sub.pk], fact.payment_method_id,
                                       fact.payment_method_gateway_id, fact.customer_id,
                                       customer=(fact.country, fact.vat_id)))
        Subscription.objects.filter(pk__any=done_before + plain).update(
            renewal_invoiced_for=F("current_period_end"))  # not selected again until the next period
        # Last: the numbers, whose counter stays locked from there to the commit (INV-1).
        attempts = batch.invoices_issue_many(drafts, now=now, audit_actor=actor_label(None))
    return list(zip(attempts, plain, renewed, strict=True)), one_by_one


def receipts_next_charge(paid: list[_Renewed], now) -> list[str]:
    """What the account statement says of the next charge once each of these renewals is paid (NOT-4,
    PAY-4): the period after the one just invoiced, on the same plan, cycle and calendar (REN-1:
    paid ahead), with no credit (an account holding credit is renewed one by one) and the customer's
    tax on that charge's day. The statement's own sentence, without reading each account again: the
    tax decisions are taken for the customers of each charge day at once (one read of the rates)."""
    following = [terms.following_terms(renewed.upcoming) for renewed in paid]
    at = [upcoming.start - terms.renewal_lead() for upcoming in following]
    by_day: dict = {}
    for n, moment in enumerate(at):
        by_day.setdefault(tax_rates.tax_day(moment), []).append(n)
    decisions = {}
    for numbers in by_day.values():
        decisions.update(tax_rates.decisions_for({n: paid[n].customer for n in numbers}, at[numbers[0]]))
    sentences = []
    for n, (renewed, upcoming) in enumerate(zip(paid, following, strict=True)):
        charge = terms.next_charge_of(upcoming, credit=ZERO, at=at[n], decision=decisions[n])
        sentences.append(Statement(account=renewed.account, subscription=None, now=now, currency=charge.currency,
                                   next_charge=charge).next_charge_sentence)
    return sentences


def _collect(triples, now, report) -> None:
    """Steps 2 and 3 for (attempt, subscription id, renewed) triples."""
    if not triples:
        return
    pairs = [(attempt, sub_id) for attempt, sub_id, _renewed in triples]
    renewed_of = {attempt.payment_id: renewed for attempt, _sub_id, renewed in triples}
    attempts = [attempt for attempt, _sub_id in pairs]
    try:
        results = batch.payments_send_many(attempts)
    except Exception:  # e.g. a gateway error on the batch: send them one at a time
        log.exception("billing run: batch charge failed; charging one at a time")
        results = [_send_one(attempt, sub_id, report) for attempt, sub_id in pairs]
    succeeded = [(attempt, result) for attempt, result in zip(attempts, results, strict=True)
                 if result is not None and result.succeeded]
    sub_of = {attempt.payment_id: sub_id for attempt, sub_id in pairs}
    # NOT-4: what each receipt states comes next, worked out before the transaction that locks the rows.
    next_charge_of = dict(zip((attempt.payment_id for attempt, _r in succeeded), receipts_next_charge(
        [renewed_of[attempt.payment_id] for attempt, _r in succeeded], now), strict=True))
    with transaction.atomic():
        # Lock order (subscriptions.locks): the subscriptions, then the invoices, then the payments
        # (`payments_record_succeeded` updates them in that order); the accounts are not written.
        statuses = subscriptions_lock_statuses(sub_of[attempt.payment_id] for attempt, _r in succeeded)
        receipts, facts = [], []
        for attempt in batch.payments_record_succeeded(succeeded, now=now):
            sub_id = sub_of[attempt.payment_id]
            if statuses[sub_id] == Status.PAST_DUE:  # paid up while past due: the one-by-one outcome (and its receipt)
                sub = Subscription.objects.select_related("plan", "account").get(pk=sub_id)
                invoice = Invoice.objects.select_related("account").get(pk=attempt.invoice_id)
                lifecycle.dunning_collected(invoice, attempt.payment(), sub, now)
            else:
                receipts.append((attempt.account_id, {"invoice_id": attempt.invoice_id,
                                                      "payment_id": attempt.payment_id, "amount": str(attempt.amount)}))
                facts.append({"next_charge_sentence": next_charge_of[attempt.payment_id]})
        events.emit_many("payment.succeeded", receipts, now=now, facts=facts)
    for (attempt, sub_id), result in zip(pairs, results, strict=True):
        if result is None:  # no answer: ask the gateway about the key, as `payment_send` does (PAY-2)
            result = ledger.payment_lookup(attempt.payment(), unseen_means_not_sent=False)
            if result is None:
                continue  # still unknown: the next run settles it
        elif result.succeeded:
            continue
        try:
            charges.payment_settle(attempt.payment(), result, now=now)  # a decline starts dunning (DUN-1)
        except Exception as exc:
            log.exception("billing run: settling payment %s failed", attempt.payment_id)
            report.failures.append(("renewals", sub_id, f"{type(exc).__name__}: {exc}"))


def _send_one(attempt, sub_id, report):
    try:
        return ledger.payment_send(attempt.payment())
    except Exception as exc:
        report.failures.append(("renewals", sub_id, f"{type(exc).__name__}: {exc}"))
        return None


CHUNK_HANDLERS = {"renewals": renew_chunk, "rollovers": rollover_chunk}  # scheduler.run_chunk's set-wise steps
