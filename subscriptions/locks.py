"""Row locks, always in one order: account → subscription → invoice → payment, and by primary key
within a kind (Saleor's lock_objects.py). Every engine function that changes money or state starts
with one of these helpers, and nothing else in the engine takes a row lock on these tables, so two
transactions never wait for each other in opposite orders (a deadlock on PostgreSQL). Rows outside
the hierarchy (a refund or restore request, a credit note, the invoice-number counter) are locked
after it, as leaves.

Locks are FOR NO KEY UPDATE: they serialise writers of the row but do not block a transaction that
inserts a row referring to it (PostgreSQL's foreign-key check takes FOR KEY SHARE on the parent), so
the billing run can insert an invoice for an account whose owner is changing plans meanwhile.
SQLite has no row locks: a write transaction there holds the whole database (BEGIN IMMEDIATE).
The account's lock is `accounts.locks.account_lock` (below the engine, for every app), used here as
the first step and importable from here as before.
"""

from dataclasses import dataclass

from accounts.locks import account_claim, account_lock
from core import sql
from invoices.models import Invoice, Payment, RefundRequest

from .errors import InvalidChange
from .models import RestoreRequest, Subscription


def _for_update(queryset, **options):
    return queryset.select_for_update(no_key=True, **options)


def subscription_lock(subscription_id: int) -> Subscription:
    """Lock the subscription's account, then the subscription; return it read after the locks
    (with its plan, scheduled plan and account)."""
    account_id = Subscription.objects.values_list("account_id", flat=True).get(pk=subscription_id)
    account_lock(account_id)
    return (_for_update(Subscription.objects, of=("self",))
            .select_related("plan", "account", "scheduled_plan").get(pk=subscription_id))


def subscription_lock_current(subscription) -> Subscription:
    """`subscription_lock`, refused when the row is no longer the account's current subscription
    (the customer acted on a page that is out of date)."""
    sub = subscription_lock(subscription.pk)
    if not sub.is_current:
        raise InvalidChange("Your subscription has changed in the meantime. Reload the page and try again.")
    return sub


def account_subscription_lock(account) -> Subscription:
    """Lock the account and its current subscription."""
    current = Subscription.objects.current().filter(account=account).values_list("pk", flat=True).first()
    if current is None:
        raise InvalidChange("This account has no subscription.")
    return subscription_lock_current(Subscription(pk=current))


def invoices_lock(queryset) -> list[Invoice]:
    """Lock these invoices, by primary key. The caller holds their account (and subscription)."""
    return list(_for_update(queryset, of=("self",)).order_by("pk"))


@dataclass(frozen=True)
class PaymentLocks:
    """The rows a payment's outcome changes, locked in order."""

    subscription: Subscription | None
    invoice: Invoice
    payment: Payment


def payment_lock(payment_id: int) -> PaymentLocks:
    """Lock the payment's account, its invoice's subscription, the invoice and the payment."""
    account_id, invoice_id, subscription_id = (Payment.objects.filter(pk=payment_id)
                                                .values_list("account_id", "invoice_id", "invoice__subscription_id")
                                                .get())
    account_lock(account_id)
    sub = None
    if subscription_id is not None:
        sub = (_for_update(Subscription.objects, of=("self",)).select_related("plan", "account", "scheduled_plan")
               .get(pk=subscription_id))
    invoice = _for_update(Invoice.objects, of=("self",)).select_related("account").get(pk=invoice_id)
    payment = _for_update(Payment.objects, of=("self",)).select_related("payment_method").get(pk=payment_id)
    return PaymentLocks(sub, invoice, payment)


def invoice_lock(invoice_id: int) -> Invoice:
    """Lock the invoice's account, its subscription (if any) and the invoice."""
    account_id, subscription_id = Invoice.objects.values_list("account_id", "subscription_id").get(pk=invoice_id)
    account_lock(account_id)
    if subscription_id is not None:
        _for_update(Subscription.objects, of=("self",)).get(pk=subscription_id)
    return _for_update(Invoice.objects, of=("self",)).select_related("account", "subscription").get(pk=invoice_id)


def payments_lock(queryset) -> list[Payment]:
    """Lock these payments, by primary key. The caller holds their invoice."""
    return list(_for_update(queryset, of=("self",)).order_by("pk"))


def subscription_claim(pk: int, due):
    """The billing run's claim of one due subscription: its account and the subscription, both
    skipped when another worker (or a customer's request) holds them, and only while it is still
    due (`due`, a queryset of due subscriptions). None: someone else has it, or it is done."""
    account_id = due.filter(pk=pk).values_list("account_id", flat=True).first()
    if account_id is None:
        return None
    if account_claim(account_id) is None:
        return None
    return (_for_update(due, skip_locked=True, of=("self",))
            .select_related("plan", "account", "scheduled_plan").filter(pk=pk).first())


def subscriptions_claim(due, related=("plan", "account", "scheduled_plan"), fields=()) -> list[Subscription]:
    """The set-wise claim of due subscriptions (renewals and roll-overs of a batch), skipping rows
    another worker holds. It takes no account locks: the batch writes only new rows that refer to
    the accounts (their foreign-key checks do not conflict with a NO KEY UPDATE lock) and never
    changes an account row; anything that would goes through `subscription_claim`, one by one.
    `related`: the rows loaded with each subscription (none: the caller attaches what it needs);
    `fields`: only these columns (a batch of full rows costs more to decode than to lock)."""
    claimed = _for_update(due, skip_locked=True, of=("self",))
    if related:
        claimed = claimed.select_related(*related)
    if fields:
        claimed = claimed.only(*fields)
    return list(claimed.order_by("pk"))


def subscriptions_claim_values(due, fields) -> list[tuple]:
    """`subscriptions_claim` returning each claimed row as a tuple of `fields`, in primary-key
    order: the billing run's renewals, for which building 500 model instances a batch cost more
    than the claim itself (issue 17); read in binary (`core.sql.values_of`)."""
    return sql.values_of(_for_update(due, skip_locked=True, of=("self",)).order_by("pk").values_list(*fields))


def subscriptions_lock_statuses(ids) -> dict[int, str]:
    """Lock these subscriptions by primary key, waiting for them, without their accounts, and
    return their statuses (no model instance): for the billing run's set-wise steps, which never
    write an account row (see `subscriptions_claim`)."""
    return dict(_for_update(Subscription.objects.filter(pk__any=list(ids)), of=("self",))
                .order_by("pk").values_list("pk", "status"))


def refund_request_lock(pk: int):
    """A refund request, locked as a leaf after its invoice (`invoice_lock`)."""
    return _for_update(RefundRequest.objects, of=("self",)).get(pk=pk)


def restore_request_lock(pk: int):
    """A restore-days request, locked as a leaf after its subscription."""
    return _for_update(RestoreRequest.objects, of=("self",)).get(pk=pk)
