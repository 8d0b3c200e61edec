"""The append-only audit log (ACC-3): every state change, by a customer, staff or the scheduler,
with actor, time and before/after values. Rows are inserted, never updated (AuditEvent.save)."""


from core.clock import clock

from .models import AuditEvent


def audit(*, account, actor, action, obj, before=None, after=None, reason="", now=None) -> AuditEvent:
    """Append an audit row (ACC-3). `actor` None means the system (scheduler, webhooks)."""
    event = audit_row(account=account, actor=actor, action=action, obj=obj, before=before, after=after,
                      reason=reason, now=now)
    event.save()
    return event


def audit_row(*, account, actor, action, obj, before=None, after=None, reason="", now=None) -> AuditEvent:
    """An unsaved audit row, for `AuditEvent.objects.bulk_create` on set-wise paths."""
    return AuditEvent(
        account=account,
        actor=actor,
        actor_label=actor_label(actor),
        action=action,
        object_type=type(obj).__name__,
        object_id=str(obj.pk),
        before=before or {},
        after=after or {},
        reason=reason,
        created_at=clock(now),
    )


def iso(value) -> str | None:
    """An instant as the audit log writes it (ISO 8601), or None."""
    return value.isoformat() if value else None


def subscription_snapshot(sub) -> dict:
    """The audited state of a subscription (ACC-3 before/after); the revenue figures replay these
    (metrics.movements), so a key once written keeps its meaning."""
    return {
        "plan": sub.plan.code, "cycle": sub.cycle, "status": sub.status, "price": str(sub.current_price),
        "period_start": iso(sub.current_period_start), "period_end": iso(sub.current_period_end),
        "trial_end": iso(sub.trial_end), "timezone": sub.timezone,
        "cancel_at_period_end": sub.cancel_at_period_end,
        "scheduled_plan": sub.scheduled_plan.code if sub.scheduled_plan_id else None,
        "scheduled_cycle": sub.scheduled_cycle or None, "extra_properties": sub.extra_properties,
        "scheduled_extra_properties": sub.scheduled_extra_properties,
    }


def actor_label(actor) -> str:
    if actor is None:
        return "system"
    role = "staff" if actor.is_staff else "customer"
    return f"{actor.get_username()} ({role})"
