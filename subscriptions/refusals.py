"""Who may ask for what, and why not, in the customer's words: the fit of a plan (DWN-3), plan
changes while money is owed or the account is suspended (UPG-7, SUS-2), trials (TRI-2, TRI-5),
refunds of a trial's charge (REF-2, REF-3, REF-6) and forfeited days (UPG-3); with the reads of the
ledger each refusal needs (the payments of an invoice, when it was charged, later paid changes).
"""

from datetime import date, datetime, timedelta

from django.conf import settings

from accounts.models import Account, AccountFlag, FlagKind, SuspensionReason
from core.clock import clock
from core.words import counted
from invoices import services as ledger
from invoices.models import (
    CreditNoteKind,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    Payment,
    PaymentStatus,
    RefundRequest,
    RefundRequestStatus,
)
from plans.models import Cycle, Plan

from . import pricing
from .changes import ChangeKind, PendingChange
from .errors import NotEligible
from .models import RestoreRequest, Status, Subscription
from .periods import local_date, period_date

# --- limits (DWN-3) and who may change what (UPG-7, SUS-2) ----------------------------------------


def fit_problem(account, plan: Plan, extra_properties: int = 0) -> str | None:
    """Why the account does not fit `plan` with these extra properties, in DWN-3's words, or None."""
    allowed = plan.property_limit(extra_properties)
    if allowed is not None:
        have = account.properties.live().count()
        if have > allowed:
            remove = have - allowed
            return (f"{plan.name} allows {counted(allowed, 'property')}; you have {have}. "
                    f"Delete {counted(remove, 'property')} to downgrade.")
    if plan.limit_integrations is not None:
        have = account.integrations.filter(disconnected_at__isnull=True).count()
        if have > plan.limit_integrations:
            remove = have - plan.limit_integrations
            return (f"{plan.name} allows {plan.limit_integrations} integration"
                    f"{'' if plan.limit_integrations == 1 else 's'}; you have {have}. "
                    f"Disconnect {remove} integration{'' if remove == 1 else 's'} to downgrade.")
    return None


def paid_status_guard(sub: Subscription) -> None:
    """UPG-7 and SUS-2: no plan change while money is owed or the account is suspended."""
    account = sub.account
    if sub.status in (Status.PAST_DUE, Status.SUSPENDED) or (
        account.is_suspended and account.suspension_reason == SuspensionReason.NON_PAYMENT
    ):
        raise NotEligible("Your last payment failed. Update your payment method and pay the open invoice "
                          "before changing plans.")
    if account.is_suspended and account.suspension_reason == SuspensionReason.POLICY_VIOLATION:
        raise NotEligible("Your account is suspended for a policy violation. Contact support.")


# --- trials (TRI-2, TRI-5) --------------------------------------------------------------------------


def trial_refusal(account) -> tuple[str, Account | None] | None:
    """TRI-2: why the account may not start a trial (and the matching account), or None."""
    if account.trial_used_at:
        return "This account has already had a free trial. You can still subscribe without a trial.", None
    others = Account.objects.exclude(pk=account.pk).filter(trial_used_at__isnull=False)
    if account.identity_email:
        match = others.filter(identity_email=account.identity_email).first()
        if match:
            return ("A free trial was already used with this e-mail address. "
                    "You can still subscribe without a trial.", match)
    method = ledger.default_payment_method(account)
    if method is not None:
        match = others.filter(payment_methods__fingerprint=method.fingerprint).first()
        if match:
            return "A free trial was already used with this card. You can still subscribe without a trial.", match
    return None


def trial_eligible(account) -> bool:
    return trial_refusal(account) is None and ledger.default_payment_method(account) is not None


def trial_reactivable_until(sub: Subscription | None, now: datetime) -> datetime | None:
    """TRI-5: a cancelled trial can be reactivated until its original end date."""
    if (sub is not None and sub.status == Status.CANCELED and sub.trial_start and sub.trial_end
            and not sub.current_price and not sub.ended_at and sub.trial_end > now):
        return sub.trial_end
    return None


# --- refund requests (REF-2, REF-3, REF-6) --------------------------------------------------------------


def refundable_payments(invoice: Invoice) -> list[Payment]:
    return [p for p in Payment.objects.filter(invoice=invoice, status=PaymentStatus.SUCCEEDED).order_by("id")
            if p.amount > p.refunded_amount]


def charged_at(invoice: Invoice) -> datetime | None:
    if invoice.paid_at:
        return invoice.paid_at
    payment = (Payment.objects.filter(invoice=invoice, status=PaymentStatus.SUCCEEDED)
               .order_by("settled_at").first())
    return payment.settled_at if payment else None


# REF-6: paid changes and purchases, which show the product was used.
USE_SHOWN_BY = (InvoiceKind.UPGRADE, InvoiceKind.ADD_ON, InvoiceKind.SUBSCRIPTION, InvoiceKind.REACTIVATION)


def paid_change_after(invoice) -> Invoice | None:
    """REF-6: the first paid plan change or purchase of the account after the trial conversion
    `invoice` was charged, or None."""
    charged = charged_at(invoice)
    if charged is None:
        return None
    return (Invoice.objects.filter(account_id=invoice.account_id, kind__in=USE_SHOWN_BY, status=InvoiceStatus.PAID,
                                   paid_at__gt=charged).order_by("paid_at", "id").first())


def refund_refusal(invoice, now=None) -> str | None:
    """Why the owner may not ask for a refund of `invoice` now (REF-2, REF-3), or None."""
    now = clock(now)
    account = invoice.account
    if invoice.kind != InvoiceKind.TRIAL_CONVERSION:
        return "Only the charge made when your free trial ended can be refunded; other payments are final."
    if invoice.status != InvoiceStatus.PAID or not Payment.objects.filter(
        invoice=invoice, status=PaymentStatus.SUCCEEDED
    ).exists():
        return "This invoice was not paid by card, so there is nothing to refund."
    refunded = invoice.credit_notes.filter(kind=CreditNoteKind.REFUND).exists() or Payment.objects.filter(
        invoice=invoice, refunded_amount__gt=0
    ).exists()
    if refunded:
        return "This charge was already refunded."
    earlier = (RefundRequest.objects.filter(invoice=invoice).exclude(status=RefundRequestStatus.REFUSED)
               .order_by("requested_at", "id").first())
    if earlier is not None:
        return (f"A refund of this charge was already requested on {local_date(account, earlier.requested_at)} "
                f"({earlier.get_status_display().lower()}).")
    used = paid_change_after(invoice)
    if used is not None:
        return (f"You changed your subscription after the trial ({used.get_kind_display().lower()}, invoice "
                f"{used.number} of {local_date(account, used.paid_at):%Y-%m-%d}), which shows the product was used, "
                "so the trial charge can no longer be refunded.")
    if AccountFlag.objects.filter(account=account, kind=FlagKind.TRIAL_ABUSE, resolved_at__isnull=True).exists():
        return ("This account is flagged for review of its free trial, so the refund cannot be requested here. "
                "Please contact support.")
    charged_on = local_date(account, charged_at(invoice))
    last_day = charged_on + timedelta(days=settings.BILLING_REFUND_WINDOW_DAYS)
    if local_date(account, now) > last_day:
        return (f"A refund can be requested within {settings.BILLING_REFUND_WINDOW_DAYS} days of the charge. "
                f"This charge was made on {charged_on:%Y-%m-%d}, so the last day to ask was {last_day:%Y-%m-%d}.")
    return None


# --- restoring forfeited days (UPG-3) ----------------------------------------------------------------


def upgrade_invoice(sub: Subscription) -> Invoice | None:
    """The paid monthly -> yearly upgrade invoice of `sub`, newest first."""
    for invoice in (Invoice.objects.filter(subscription=sub, kind=InvoiceKind.UPGRADE, status=InvoiceStatus.PAID)
                    .order_by("-issued_at", "-id")[:20]):
        change = PendingChange.from_json(invoice.pending_change)
        if change is not None and change.kind == ChangeKind.UPGRADE and (change.from_cycle, change.cycle) == (
            Cycle.MONTHLY, Cycle.YEARLY
        ):
            return invoice
    return None


def forfeited_days(invoice: Invoice) -> int:
    """UPG-3: the monthly days a monthly -> yearly upgrade gave up, as its pending change records them."""
    change = PendingChange.from_json(invoice.pending_change)
    return change.forfeited_days if change is not None else 0


def upgraded_on(sub: Subscription, invoice: Invoice) -> date:
    """The day of the monthly -> yearly upgrade on the yearly period's calendar (UPG-3)."""
    change = PendingChange.from_json(invoice.pending_change)
    moment = change.start if change is not None and change.start else (invoice.paid_at or invoice.issued_at)
    return period_date(sub, moment)


def restore_refusal(subscription, now=None) -> str | None:
    """Why the owner may not ask now for the days a monthly -> yearly upgrade forfeited, or None."""
    now = clock(now)
    sub = Subscription.objects.select_related("account", "plan").get(pk=subscription.pk)
    invoice = upgrade_invoice(sub)
    if invoice is None:
        return "Days can be restored only after an upgrade from a monthly to a yearly plan."
    if not sub.is_current or sub.status == Status.CANCELED or sub.cycle != Cycle.YEARLY:
        return "The yearly subscription this upgrade started is no longer current, so no days can be added to it."
    days = forfeited_days(invoice)
    if days <= 0:
        return "No days of your monthly period were forfeited by this upgrade."
    existing = RestoreRequest.objects.filter(invoice=invoice).first()
    if existing is not None:
        return (f"You already asked for these {existing.days} days on "
                f"{local_date(sub.account, existing.requested_at):%Y-%m-%d} ({existing.get_status_display().lower()}).")
    working_days = settings.BILLING_RESTORE_WORKING_DAYS
    upgraded = upgraded_on(sub, invoice)
    today = period_date(sub, now)
    if not pricing.restore_window_open(upgraded, today, working_days):
        deadline = pricing.restore_deadline(upgraded, working_days)
        return (f"Forfeited days can be restored only within {working_days} working days of the upgrade. You "
                f"upgraded on {upgraded:%A %Y-%m-%d}, so the last day to ask was {deadline:%A %Y-%m-%d}.")
    return None
