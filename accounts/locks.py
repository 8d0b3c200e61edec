"""The account's row lock: the first step of the one lock order (account → subscription → invoice
→ payment, `subscriptions.locks`). It lives here, below the engine, so that the accounts' own
services, the ledger's webhook receivers and the notifications lock an account the same way the
engine does, and nothing else takes a lock on an account row.

FOR NO KEY UPDATE: it serialises writers of the account row but does not block a transaction that
inserts a row referring to it (PostgreSQL's foreign-key check takes FOR KEY SHARE on the parent),
so a customer's request never waits for the billing run's invoice inserts, nor the run for it.
SQLite has no row locks: a write transaction there holds the whole database (BEGIN IMMEDIATE).
"""

from .models import Account


def account_lock(account_id: int) -> Account:
    """Lock the account row and return it, read after the lock."""
    return Account.objects.select_for_update(no_key=True).get(pk=account_id)


def account_claim(account_id: int) -> Account | None:
    """Lock the account row unless another transaction holds it (SKIP LOCKED): the billing run's
    claim, which leaves a busy account to the next run. None: someone else has it."""
    return Account.objects.select_for_update(no_key=True, skip_locked=True).filter(pk=account_id).first()
