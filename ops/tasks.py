"""django-q2 entry points of the ops app (the schedule is `ledger.ensure_schedule`)."""

from .ledger import ledger_check


def scheduled_ledger_check() -> str:
    """OPS-2: the nightly ledger check; a breach is recorded, e-mailed, and fails the task."""
    record = ledger_check()
    if not record.ok:
        raise RuntimeError(f"ledger check #{record.pk}: {len(record.breaches)} breach(es); see the admin")
    return str(record)
