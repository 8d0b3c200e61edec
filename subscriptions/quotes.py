"""Quotes (PAY-3): what a plan change or an extra-properties purchase does and costs, computed
without changing anything. `billing` recomputes the same quote under its locks and applies it;
the billing page shows it for the customer to confirm.
"""

import copy
import dataclasses
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

from core.money import ZERO, format_money
from core.words import counted
from invoices import services as ledger
from invoices import tax_rates
from invoices.selectors import last_paid_invoice
from invoices.totals import invoice_totals
from plans.models import Cycle, Plan

from . import lifecycle, pricing, terms
from .changes import ChangeKind, PendingChange
from .errors import InvalidChange, LimitExceeded, NotEligible, QuoteChanged
from .models import Status, Subscription
from .pricing import Quote, QuoteLine
from .statement import ISO, account_statement, credit_balance


@dataclass(frozen=True)
class Change:
    """What a plan change will do and cost: its kind (one vocabulary: `changes.ChangeKind`), the
    quote, the plan and cycle it moves to, and what is charged now."""

    kind: ChangeKind
    quote: Quote
    plan: Plan
    cycle: str
    lines: tuple = ()
    period: tuple | None = None  # (start, end) of what is charged
    credit: QuoteLine | None = None
    spans: tuple | None = None  # (start, end) of each line when they differ (an invoiced next period: REN-1)

    def ledger_lines(self) -> list:
        """The lines to invoice, each with the span it charges (PAY-4)."""
        spans = self.spans or [self.period] * len(self.lines)
        return [ledger.Line.from_quote(line, *span) for line, span in zip(self.lines, spans, strict=True)]

    def pending(self, sub: Subscription, now) -> PendingChange:
        """The typed change `lifecycle.change_apply` applies to `sub`, and a charged change's invoice
        holds until it is paid: a new period starts where the charged span does, on the calendar
        it was quoted on (the account's zone, PAY-4)."""
        return PendingChange(self.kind, plan=self.plan.code, cycle=self.cycle,
                             start=self.period[0] if self.period else now, timezone=sub.account.timezone,
                             from_plan=sub.plan.code, from_cycle=sub.cycle,
                             period_start=terms.iso(sub.current_period_start),
                             forfeited_days=self.quote.forfeited_days, from_subscription=sub.pk)


def check_expected(quote: Quote, expected_amount) -> None:
    """PAY-3: refuse when the amount due now is not the one the customer confirmed."""
    if expected_amount is not None and quote.amount_due != expected_amount:
        raise QuoteChanged(f"The amount has changed since you saw it: {format_money(quote.amount_due, quote.currency)} "
                           f"instead of {format_money(expected_amount, quote.currency)}. Nothing was charged.", quote)


def with_tax(quote: Quote, account, now) -> Quote:
    """TAX-2, PAY-3: the quote with the tax its invoice will add: a tax line with its formula (and the
    legal mention) under the lines charged now, and `amount_due` the tax-inclusive amount charged
    (`invoices.totals`, as the invoice computes it). No tax line when no tax applies (a seller
    outside the EU)."""
    totals = tax_rates.totals_for(tax_rates.decision_for(account, now), [line.amount for line in quote.lines])
    quote = dataclasses.replace(quote, totals=totals)
    added = tax_rates.quote_tax(totals, quote.currency)
    if added is None:
        return quote
    if not any(line.amount for line in quote.lines):  # nothing charged now (a trial): only what comes later
        return dataclasses.replace(quote, at_period_end=f"{quote.at_period_end} {added.period_end}".strip())
    return dataclasses.replace(quote, amount_due=totals.gross, at_period_end=f"{quote.at_period_end} "
                               f"{added.period_end}".strip(), lines=quote.lines + tuple(QuoteLine(*line)
                                                                                        for line in added.lines))


def first_period(plan: Plan, cycle: str, now, account) -> tuple[QuoteLine, tuple]:
    """REN-4, UPG-6: a first full period of (plan, cycle) that starts now, on the calendar of the
    account's billing time zone (D-1): its line and bounds."""
    price = terms.plan_price(plan, cycle)
    start, end = pricing.period_bounds(now, cycle, 0, account.zone)
    line = QuoteLine(f"{plan.name} ({cycle}), {terms.span(start, end, account.zone)}", price,
                     f"full {terms.cycle_unit(cycle)} = {format_money(price, plan.currency)}")
    return line, (start, end)


def _day(sub_or_account, moment) -> str:
    """A date in a quote's sentences: on the current period's calendar for a subscription's dates,
    on the account's for a new series."""
    if isinstance(sub_or_account, Subscription):
        return f"{terms.period_date(sub_or_account, moment):%Y-%m-%d}"
    return f"{terms.local_date(sub_or_account, moment):%Y-%m-%d}"


def _limit(value) -> str:
    return "unlimited" if value is None else f"{value:,}"


def limit_cuts(sub: Subscription, plan: Plan) -> tuple[str, ...]:
    """The limits a change to `plan` lowers, in words ("Your property limit goes from 25 to 10."):
    stated on the plans page's offer and in the quote, whatever the price does (a custom plan's 25
    properties against a public plan's 10). Extra properties are kept where `plan` offers them."""
    if sub.plan.is_free and not plan.is_free:
        return ()
    cuts = []
    pairs = (("property limit", sub.property_limit, plan.property_limit(sub.extra_properties)),
             ("sessions per month", sub.plan.limit_sessions, plan.limit_sessions),
             ("integrations", sub.plan.limit_integrations, plan.limit_integrations))
    for what, have, then in pairs:
        if then is not None and (have is None or then < have):
            cuts.append(f"Your {what} goes from {_limit(have)} to {_limit(then)}." if what == "property limit"
                        else f"Your {what} go from {_limit(have)} to {_limit(then)}.")
    return tuple(cuts)


def _cleared(sub: Subscription, what: str) -> tuple[str, ...]:
    """UPG-5 (and a downgrade replacing the one scheduled): the pending change this one clears."""
    if sub.status != Status.ACTIVE:
        return ()
    if sub.cancel_at_period_end:
        return (f"This {what} clears your cancellation: your subscription no longer ends on "
                f"{_day(sub, terms.paid_until(sub))} and renews.",)
    if sub.scheduled_plan_id:
        target = "Free" if sub.scheduled_plan.is_free else f"{sub.scheduled_plan.name} ({sub.scheduled_cycle})"
        return (f"This {what} clears your scheduled change to {target} on {_day(sub, sub.current_period_end)}.",)
    return ()


def plan_change(sub: Subscription, plan: Plan, cycle: str, now) -> Change:
    """What changing `sub` to (plan, cycle) at `now` does and costs (PAY-3); changes nothing.
    The cases are tabled in docs/billing-engine.md. The quote states the next automatic charge as
    the account statement works it out for the subscription as it would be after the change (PAY-4)."""
    ahead = terms.invoiced_ahead(sub)
    change = _plan_change(sub, plan, cycle, now, ahead)
    quote = change.quote
    notes = limit_cuts(sub, plan) if change.kind != ChangeKind.START_TRIAL else ()
    if change.kind in (ChangeKind.UPGRADE, ChangeKind.SCHEDULE, ChangeKind.DOWNGRADE_NOW) and not (
            plan.is_free and sub.cancel_at_period_end):
        notes += _cleared(sub, "upgrade" if change.kind == ChangeKind.UPGRADE else "change")
    if notes:
        quote = dataclasses.replace(quote, notes=quote.notes + notes)
    quote, used = with_credit(quote, sub.account)
    after = _rolled_into_invoiced_period(_after_change(sub, change, now), ahead)
    credit = (change.credit.amount if change.credit else ZERO) - used
    return dataclasses.replace(change, quote=_with_next_charge(quote, sub.account, after, now, credit))


def with_credit(quote: Quote, account) -> tuple[Quote, Decimal]:
    """INV-5, PAY-3: the account's credit that the invoice charged now will use (the ledger's
    `credit_apply` takes it, oldest note first, up to the amount with tax: `InvoiceTotals.with_credit`),
    as a line of the quote, so "Charged now" is what the card is charged. Returns the quote and the
    credit it uses."""
    if quote.amount_due <= 0:
        return quote, ZERO
    balance = credit_balance(account, quote.currency)
    totals = (quote.totals or invoice_totals([quote.amount_due])).with_credit(balance)
    used = totals.credit_applied
    if used <= 0:
        return quote, ZERO
    line = QuoteLine("Your credit", -used, f"{format_money(balance, quote.currency)} of credit on your account"
                     + ("" if used == balance else f", {format_money(used, quote.currency)} used"))
    return dataclasses.replace(quote, amount_due=totals.amount_due, lines=quote.lines + (line,), totals=totals), used


def _after_change(sub: Subscription, change: Change, now) -> Subscription:
    """An unsaved copy of `sub` as the change leaves it: what lifecycle will write (`change_apply`)."""
    after = copy.copy(sub)
    after.pk = None  # not the stored row: the statement looks up no invoice of it
    return lifecycle.change_apply(after, change.pending(sub, now), change.plan, now=now)


def _rolled_into_invoiced_period(after: Subscription, ahead) -> Subscription:
    """The copy as the next rollover leaves it, when the next period is already invoiced (REN-1):
    the next charge a quote states is then the renewal after that period."""
    if ahead is not None:
        after.anchor_at, after.period_index = ahead.anchor, ahead.index
        after.current_period_start, after.current_period_end = ahead.start, ahead.end
        after.timezone, after.next_timezone = ahead.timezone, ""
    return after


def _with_next_charge(quote: Quote, account, after: Subscription, now, credit_added=ZERO) -> Quote:
    statement = account_statement(account, now, subscription=after, credit_added=credit_added)
    return dataclasses.replace(quote, next_charge=statement.next_charge,
                               next_charge_text=statement.next_charge_words(dates=ISO))


def _plan_change(sub: Subscription, plan: Plan, cycle: str, now, ahead) -> Change:
    """The case of the table in docs/billing-engine.md, each quoted by its own function."""
    if cycle not in Cycle.values:
        raise InvalidChange(f"Unknown billing cycle {cycle!r}: choose monthly or yearly.")
    # From Free or from an ended subscription: a trial if eligible, else pay now (UPG-6).
    if sub.status == Status.CANCELED or (sub.plan.is_free and sub.status == Status.ACTIVE):
        return _from_free(sub, plan, cycle, now)
    if sub.status == Status.TRIALING:
        return _trial_plan_change(sub, plan, cycle, now)
    terms.paid_status_guard(sub)
    direction = terms.is_upgrade(sub, plan, cycle)
    if direction is None:
        raise InvalidChange("That is your current plan.")
    if ahead is not None and (not direction or cycle != sub.cycle):
        raise NotEligible(terms.invoiced_ahead_refusal(sub, ahead))
    if direction and cycle == sub.cycle:
        return _upgrade_same_cycle(sub, plan, cycle, now, ahead)
    if direction:
        return _upgrade_to_yearly(sub, plan, cycle, now)
    return _downgrade(sub, plan, cycle, now)


def _from_free(sub: Subscription, plan: Plan, cycle: str, now) -> Change:
    """UPG-6: from Free (or an ended subscription) to a paid plan: a trial if eligible (TRI-1,
    TRI-2), else the first full period, starting now (REN-4)."""
    account, currency = sub.account, plan.currency
    if plan.is_free:
        if sub.status == Status.CANCELED and sub.trial_end and sub.trial_end > now:
            raise InvalidChange("To keep your trial, reactivate it; to use Free, wait for the trial's end date.")
        raise InvalidChange("You are already on the Free plan.")
    terms.paid_status_guard(sub)
    price = terms.plan_price(plan, cycle)
    problem = terms.fit_problem(account, plan)
    if problem:
        raise LimitExceeded(problem.replace("to downgrade", "to subscribe to this plan"))
    if plan.trial_days and terms.trial_eligible(account):
        trial_end = terms.trial_end_at(account, plan, now)
        quote = Quote(
            kind="new", amount_due=ZERO, effective_at=now, currency=currency,
            lines=(QuoteLine(f"{plan.trial_days}-day free trial of {plan.name}", ZERO,
                             f"free until {_day(account, trial_end)}"),),
            at_period_end=(f"Your trial ends on {_day(account, trial_end)}; then {plan.name} is charged "
                           f"{format_money(price, currency)} per {cycle[:-2] if cycle == 'monthly' else 'year'}, "
                           "unless you cancel before."),
        )
        return Change(ChangeKind.START_TRIAL, with_tax(quote, account, now), plan, cycle)
    line, (start, end) = first_period(plan, cycle, now, account)
    notes = ()
    refusal = terms.trial_refusal(account) if plan.trial_days else None
    if refusal:
        notes = (refusal[0],)
    elif plan.trial_days and ledger.default_payment_method(account) is None:
        notes = ("Add a payment method to start a free trial instead.",)
    quote = Quote(kind="new", amount_due=price, effective_at=now, currency=currency, lines=(line,), notes=notes,
                  at_period_end=f"Renews on {_day(account, end)} at {format_money(price, currency)}.")
    return Change(ChangeKind.SUBSCRIBE, with_tax(quote, account, now), plan, cycle, lines=(line,),
                  period=(start, end))


def _trial_plan_change(sub: Subscription, plan: Plan, cycle: str, now) -> Change:
    """TRI-6: switch the trial's plan, no charge, same end date (to Free: at the trial's end)."""
    currency = plan.currency
    if plan.is_free:
        quote = Quote(kind="downgrade", amount_due=ZERO, effective_at=sub.trial_end, currency=currency,
                      at_period_end=f"Your trial ends on {_day(sub, sub.trial_end)}; then you move to Free "
                                    "and nothing is charged.")
        return Change(ChangeKind.SCHEDULE, quote, plan, cycle)
    terms.plan_price(plan, cycle)
    if plan.pk == sub.plan_id and cycle == sub.cycle:
        raise InvalidChange("That is your current plan.")
    problem = terms.fit_problem(sub.account, plan)
    if problem:
        raise LimitExceeded(problem)
    quote = Quote(kind="trial_change", amount_due=ZERO, effective_at=now, currency=currency,
                  lines=(QuoteLine(f"Trial switched to {plan.name}", ZERO, "no charge during the trial"),),
                  at_period_end=f"Your trial still ends on {_day(sub, sub.trial_end)}; then {plan.name} is "
                                f"charged {format_money(terms.plan_price(plan, cycle), currency)}.")
    return Change(ChangeKind.TRIAL_CHANGE, quote, plan, cycle)


def _upgrade_same_cycle(sub: Subscription, plan: Plan, cycle: str, now, ahead) -> Change:
    """UPG-2: same cycle, anchor kept, pay the difference for the days left (and, when the next
    period is already bought, REN-1, the difference for that period too)."""
    currency, new_price = plan.currency, terms.plan_price(plan, cycle)
    line = pricing.upgrade_difference_line(sub.current_price, new_price, terms.current_period(sub),
                                           terms.period_date(sub, now), currency, old_name=sub.plan.name,
                                           new_name=plan.name)
    lines, spans, renews = [line], [(now, sub.current_period_end)], sub.current_period_end
    paid = terms.plan_price(ahead.plan, ahead.cycle) if ahead is not None else None
    if paid is not None and new_price > paid:  # REN-1: the next period is already bought at its price
        if not line.amount:  # its last day: nothing of the current period is left to charge
            lines, spans = [], []
        lines.append(pricing.upgrade_difference_line(paid, new_price, terms.ahead_period(ahead),
                                                     terms.ahead_period(ahead).start, currency,
                                                     old_name=ahead.plan.name, new_name=plan.name))
        spans.append((ahead.start, ahead.end))
    renews_on = _day(sub, renews)
    if ahead is not None:
        renews, renews_on = ahead.end, f"{terms.ahead_period(ahead).end:%Y-%m-%d}"
    renewal = terms.period_price(plan, cycle, sub.extra_properties)
    quote = Quote(kind="upgrade", amount_due=sum((ln.amount for ln in lines), ZERO), effective_at=now,
                  currency=currency, lines=tuple(lines),
                  at_period_end=f"Renews on {renews_on} at {format_money(renewal, currency)}.")
    # PAY-4: each prorated line charges its span (to the period end; the invoiced next period), and says so.
    return Change(ChangeKind.UPGRADE, with_tax(quote, sub.account, now), plan, cycle, lines=tuple(lines),
                  period=(now, renews), spans=tuple(spans))


def _upgrade_to_yearly(sub: Subscription, plan: Plan, cycle: str, now) -> Change:
    """UPG-3: monthly -> yearly starts a new yearly period today; the monthly days left are
    forfeited. The yearly series is new: it is counted on the account's zone from today (D-5)."""
    account, currency, new_price = sub.account, plan.currency, terms.plan_price(plan, cycle)
    start, end = pricing.period_bounds(now, Cycle.YEARLY, 0, account.zone)
    _, forfeited, _ = pricing.day_split(terms.current_period(sub), terms.period_date(sub, now))
    lines = [QuoteLine(f"{plan.name} (yearly), {terms.span(start, end, account.zone)}", new_price,
                       f"full year = {format_money(new_price, currency)}")]
    addon = terms.addon_price(plan, Cycle.YEARLY, sub.extra_properties)
    if addon:
        unit = format_money(plan.extra_property_monthly * 12, currency)
        lines.append(QuoteLine(f"{counted(sub.extra_properties, 'extra property')} for the year", addon,
                               f"{sub.extra_properties} × {unit} = {format_money(addon, currency)}"))
    restore_by = pricing.restore_deadline(terms.local_date(account, start), settings.BILLING_RESTORE_WORKING_DAYS)
    notice = (f"The {forfeited} unused days of your monthly period are forfeited. You can ask for them to be "
              f"added to your yearly period until {restore_by:%A %Y-%m-%d} "
              f"({settings.BILLING_RESTORE_WORKING_DAYS} working days).")
    quote = Quote(kind="upgrade", amount_due=sum((ln.amount for ln in lines), ZERO), effective_at=now,
                  currency=currency, lines=tuple(lines), notes=(notice,) if forfeited else (),
                  forfeited_days=forfeited,
                  at_period_end=f"Renews on {_day(account, end)} at "
                                f"{format_money(terms.period_price(plan, cycle, sub.extra_properties), currency)}.")
    return Change(ChangeKind.UPGRADE, with_tax(quote, account, now), plan, cycle, lines=tuple(lines),
                  period=(start, end))


def _downgrade(sub: Subscription, plan: Plan, cycle: str, now) -> Change:
    """DWN-1..4: refused unless the account fits (DWN-3); at once with the unused difference as
    credit (DWN-4, `BILLING_DOWNGRADE_TIMING=immediate`, same cycle), else at the period end."""
    currency = plan.currency
    keep_extra = sub.extra_properties if plan.extra_property_monthly is not None else 0
    problem = terms.fit_problem(sub.account, plan, keep_extra)
    if problem:
        raise LimitExceeded(problem)
    if settings.BILLING_DOWNGRADE_TIMING == "immediate" and cycle == sub.cycle and not plan.is_free:
        credit = pricing.unused_credit_line(sub.current_price, terms.plan_price(plan, cycle), terms.current_period(sub),
                                            terms.period_date(sub, now), currency)
        quote = Quote(kind="downgrade", amount_due=ZERO, effective_at=now, currency=currency, lines=(credit,),
                      at_period_end=f"Renews on {_day(sub, sub.current_period_end)} at "
                                    f"{format_money(terms.period_price(plan, cycle, keep_extra), currency)}, "
                                    "less your credit.")
        tax_note = tax_rates.credit_tax_note(last_paid_invoice(sub), credit.amount)  # TAX-2: reversed in proportion
        if tax_note:
            quote = dataclasses.replace(quote, notes=quote.notes + (tax_note,))
        return Change(ChangeKind.DOWNGRADE_NOW, quote, plan, cycle, credit=credit)
    target = "Free" if plan.is_free else f"{plan.name} ({cycle})"
    then = ("nothing is charged" if plan.is_free
            else f"it renews at {format_money(terms.period_price(plan, cycle, keep_extra), currency)}")
    notes = ()
    if sub.extra_properties and not keep_extra:  # ADD-3: the add-on ends with the plan that offers it
        notes = (f"Your {counted(sub.extra_properties, 'extra property')} "
                 f"end{'s' if sub.extra_properties == 1 else ''} then: {'Free' if plan.is_free else plan.name} "
                 "does not offer extra properties.",)
    quote = Quote(kind="downgrade", amount_due=ZERO, effective_at=sub.current_period_end, currency=currency,
                  notes=notes,
                  at_period_end=f"You keep {sub.plan.name} until {_day(sub, sub.current_period_end)}; "
                                f"then you move to {target} and {then}. No refund for the current period.")
    return Change(ChangeKind.SCHEDULE, quote, plan, cycle)


def addon_change(sub: Subscription, quantity: int, now) -> tuple[Quote, list]:
    """The quote for `quantity` extra properties (ADD-1, ADD-2), and the invoice lines charged now,
    each with its span (none when fewer are scheduled for the period end), with the next charge as
    it will be (PAY-4)."""
    ahead = terms.invoiced_ahead(sub)
    quote, lines = _addon_change(sub, quantity, now, ahead)
    quote, used = with_credit(quote, sub.account)
    after = copy.copy(sub)
    after.pk = None  # not the stored row: the statement looks up no invoice of it
    kind = ChangeKind.ADD_ON if lines else ChangeKind.ADD_ON_SCHEDULED
    after = _rolled_into_invoiced_period(lifecycle.change_apply(after, PendingChange(kind, quantity=quantity), None,
                                                                now=now), ahead)
    return _with_next_charge(quote, sub.account, after, now, -used), lines


def _addon_change(sub: Subscription, quantity: int, now, ahead) -> tuple[Quote, list]:
    plan = sub.plan
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0 or quantity > 1000:
        raise InvalidChange("Choose a number of extra properties between 0 and 1,000.")
    if plan.extra_property_monthly is None:
        raise InvalidChange(f"{plan.name} does not offer extra properties.")
    if sub.status == Status.TRIALING:
        raise NotEligible("Extra properties can be bought once your trial has converted to a paid plan.")
    if sub.status != Status.ACTIVE:
        terms.paid_status_guard(sub)
        raise InvalidChange("There is no active subscription to add properties to.")
    terms.paid_status_guard(sub)
    currency = plan.currency
    if quantity == sub.extra_properties and sub.scheduled_extra_properties is None:
        raise InvalidChange(f"You already have {counted(quantity, 'extra property')}.")
    if quantity > sub.extra_properties:  # ADD-1: at once, prorated like UPG-2
        line = pricing.addon_line(quantity - sub.extra_properties, plan.extra_property_monthly, sub.cycle,
                                  terms.current_period(sub), terms.period_date(sub, now), currency)
        charged, renews_on = [(line, (now, sub.current_period_end))], _day(sub, sub.current_period_end)
        if ahead is not None:  # REN-1: the next period is already bought with its number of extra properties
            if ahead.plan.extra_property_monthly is not None and quantity > ahead.extra_properties:
                period = terms.ahead_period(ahead)
                if not line.amount:  # its last day: nothing of the current period is left to charge
                    charged = []
                charged.append((pricing.addon_line(quantity - ahead.extra_properties,
                                                   ahead.plan.extra_property_monthly, ahead.cycle, period,
                                                   period.start, currency), (ahead.start, ahead.end)))
            renews_on = f"{terms.ahead_period(ahead).end:%Y-%m-%d}"
        lines = tuple(line for line, _ in charged)
        quote = Quote(kind="add_on", amount_due=sum((ln.amount for ln in lines), ZERO), effective_at=now,
                      currency=currency, lines=lines,
                      at_period_end=f"Renews on {renews_on} with {counted(quantity, 'extra property')} "
                                    f"at {format_money(terms.period_price(plan, sub.cycle, quantity), currency)}.")
        # PAY-4: each line charges its span, and says so.
        return with_tax(quote, sub.account, now), [ledger.Line.from_quote(line, *span) for line, span in charged]
    if ahead is not None:
        raise NotEligible(terms.invoiced_ahead_refusal(sub, ahead))
    # ADD-2: fewer extra properties from the period end, no refund, only if the properties fit.
    allowed = plan.property_limit(quantity)
    have = sub.account.properties.live().count()
    if allowed is not None and have > allowed:
        remove = have - allowed
        raise LimitExceeded(f"{plan.name} with {counted(quantity, 'extra property')} allows "
                            f"{counted(allowed, 'property')}; you have {have}. Delete {counted(remove, 'property')} "
                            "first.")
    quote = Quote(kind="add_on", amount_due=ZERO, effective_at=sub.current_period_end, currency=currency,
                  at_period_end=f"From {_day(sub, sub.current_period_end)} you have "
                                f"{counted(quantity, 'extra property')}; no refund for the current period.")
    return quote, []
