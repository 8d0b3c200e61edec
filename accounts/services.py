"""Writes for accounts, memberships and properties. Views and commands call these."""

from django.contrib.auth import get_user_model
from django.db import transaction

from core import zones
from core.clock import clock

from .audit import audit
from .domains import DomainError, domain_clean
from .locks import account_lock
from .models import Account, Membership, Property, PropertyStatus, Role, normalise_email


class AccountError(Exception):
    """A refused request; the message is fit to show the user."""


@transaction.atomic
def account_create(*, email: str, password: str, account_name: str, timezone: str = "", now=None):
    """Create a user, an account and the owner membership. Sign-up (subscriptions.billing.sign_up)
    puts the account on the Free plan in the same transaction. The billing time zone starts as
    `timezone` when it is one an owner may choose (D-5), else UTC."""
    User = get_user_model()
    email = email.strip().lower()
    if User.objects.filter(username__iexact=email).exists():
        raise AccountError("An account with this e-mail address already exists. Log in instead.")
    user = User.objects.create_user(username=email, email=email, password=password)
    account = Account.objects.create(
        name=account_name.strip() or email, identity_email=normalise_email(email),
        timezone=zones.current_name(timezone) if zones.is_zone(zones.current_name(timezone)) else zones.DEFAULT,
        created_at=clock(now),
    )
    Membership.objects.create(user=user, account=account, role=Role.OWNER)
    audit(account=account, actor=user, action="account.signed_up", obj=account, after={"name": account.name})
    return user, account


def property_limit(account) -> int | None:
    """The properties the account may have now (Subscription.property_limit); None is unlimited."""
    subscription = account.subscription
    return None if subscription is None else subscription.property_limit


@transaction.atomic
def property_add(*, account: Account, name: str, domain: str, actor=None, now=None) -> Property:
    """Add a property; the plan's property limit is enforced here (CAT-1)."""
    account_lock(account.pk)  # serialise adds for one account
    limit = property_limit(account)
    count = account.properties.live().count()
    subscription = account.subscription
    if limit is not None and count >= limit:
        raise AccountError(
            f"Your {subscription.plan.name} plan allows {limit} "
            f"propert{'y' if limit == 1 else 'ies'}; you have {count}. "
            "Upgrade your plan or delete a property to add another."
        )
    try:
        domain = domain_clean(domain)
    except DomainError as exc:
        raise AccountError(str(exc)) from None
    prop = Property.objects.create(account=account, name=name.strip() or domain, domain=domain,
                                   created_at=clock(now))
    audit(account=account, actor=actor, action="property.added", obj=prop,
          after={"name": prop.name, "domain": prop.domain})
    return prop


@transaction.atomic
def property_delete(*, prop: Property, actor=None, now=None) -> None:
    """The owner deletes a property. The row is kept (deleted_at) as trial-usage evidence."""
    if prop.deleted_at:
        return
    before = {"status": prop.status}
    prop.deleted_at = clock(now)
    prop.save(update_fields=["deleted_at"])
    audit(account=prop.account, actor=actor, action="property.deleted", obj=prop, before=before,
          after={"deleted_at": prop.deleted_at.isoformat()})
    unpause_within_limit(prop.account, actor=actor, now=now)


def unpause_within_limit(account: Account, *, actor=None, now=None) -> list[Property]:
    """Resume paused properties, oldest first, while the plan's limit allows (DWN-3)."""
    limit = property_limit(account)
    live = list(account.properties.live().order_by("created_at", "id"))
    active = sum(1 for p in live if p.status == PropertyStatus.ACTIVE)
    resumed = []
    for prop in live:
        if prop.status != PropertyStatus.PAUSED:
            continue
        if limit is not None and active >= limit:
            break
        prop.status = PropertyStatus.ACTIVE
        prop.save(update_fields=["status"])
        active += 1
        resumed.append(prop)
        audit(account=account, actor=actor, action="property.resumed", obj=prop,
              before={"status": "paused"}, after={"status": "active"}, now=now)
    return resumed


def pause_excess(account: Account, limit: int | None, *, now=None) -> list[Property]:
    """Pause the newest properties beyond `limit` (DWN-3, CAN-2): never delete them."""
    if limit is None:
        return []
    live = list(account.properties.live().filter(status=PropertyStatus.ACTIVE).order_by("created_at", "id"))
    excess = live[limit:]
    for prop in excess:
        prop.status = PropertyStatus.PAUSED
        prop.save(update_fields=["status"])
        audit(account=account, actor=None, action="property.paused", obj=prop,
              before={"status": "active"}, after={"status": "paused"},
              reason=f"Over the plan's limit of {limit}", now=now)
    return excess


@transaction.atomic
def flag_resolve(flag, *, actor, reason: str, now=None):
    """Staff close a flag (e.g. a trial-abuse match that is a false positive), so that it stops
    refusing refund requests (REF-3). Audited; the flag row is kept."""
    if not reason.strip():
        raise AccountError("Give a reason for resolving the flag.")
    if flag.resolved_at:
        return flag
    flag.resolved_at = clock(now)
    flag.save(update_fields=["resolved_at"])
    audit(account=flag.account, actor=actor, action="account.flag_resolved", obj=flag,
          before={"kind": flag.kind, "resolved_at": None}, after={"resolved_at": flag.resolved_at.isoformat()},
          reason=reason, now=now)
    return flag
