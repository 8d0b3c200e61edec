"""Reads for the back office: the trial-usage evidence staff review beside a refund request
(REF-2, USE-5) and the identity matches behind possible trial abuse (TRI-2)."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db.models import Exists, OuterRef, Q, Sum

from accounts.models import Account, AccountFlag, FlagKind, Integration, LoginEvent, Property, UsageDay
from invoices.models import PaymentMethod
from subscriptions.models import Subscription

MAX_LOGINS_SHOWN = 50


@dataclass(frozen=True)
class Match:
    """Another account that had a trial and shares an identity with this one (TRI-2)."""

    account: Account
    how: str  # "owner e-mail" | "card"
    detail: str


@dataclass(frozen=True)
class PropertyEvidence:
    property: Property
    first_event_at: datetime | None
    first_event_in_trial: bool
    sessions_in_trial: int


@dataclass
class TrialEvidence:
    trial_start: datetime | None
    trial_end: datetime | None
    properties: list[PropertyEvidence] = field(default_factory=list)  # those that existed during the trial
    properties_added_later: int = 0  # created after the trial ended: not evidence of trial usage
    sessions_by_day: list[tuple[date, int]] = field(default_factory=list)
    integrations: list[Integration] = field(default_factory=list)
    logins: list[LoginEvent] = field(default_factory=list)
    login_count: int = 0
    previous_trials: list = field(default_factory=list)
    matches: list[Match] = field(default_factory=list)
    flags: list[AccountFlag] = field(default_factory=list)

    @property
    def total_sessions(self) -> int:
        return sum(n for _, n in self.sessions_by_day)

    @property
    def active_days(self) -> int:
        return sum(1 for _, n in self.sessions_by_day if n)

    @property
    def used(self) -> bool:
        """REF-2's question: was the product used during the trial (sessions or a first event)?"""
        return self.total_sessions > 0 or any(p.first_event_in_trial for p in self.properties)

    @property
    def summary(self) -> str:
        if not self.trial_start:
            return "No trial was found for this charge."
        if not self.used:
            return "No usage during the trial: no property sent an event and no session was counted."
        return (f"Usage during the trial: {self.total_sessions:,} sessions on {self.active_days} "
                f"day{'s' if self.active_days != 1 else ''}; staff decide and give a reason.")


def _in(moment, start, end) -> bool:
    return bool(moment and start and end and start <= moment < end)


def trial_evidence(account: Account, subscription) -> TrialEvidence:
    """What the account did during the trial that `subscription` started with."""

    start = subscription.trial_start if subscription else None
    end = subscription.trial_end if subscription else None
    evidence = TrialEvidence(start, end)
    evidence.matches = identity_matches([account]).get(account.pk, [])
    evidence.flags = list(AccountFlag.objects.filter(account=account).select_related("matched_account")
                          .order_by("-created_at"))
    evidence.previous_trials = list(
        Subscription.objects.filter(account=account, trial_start__isnull=False).exclude(pk=subscription.pk)
        .select_related("plan").order_by("trial_start")
    ) if subscription else []
    if not start or not end:
        return evidence
    first_day, last_day = start.date(), end.date()  # UsageDay rows are UTC days
    per_property = dict(
        UsageDay.objects.filter(account=account, day__gte=first_day, day__lte=last_day)
        .values_list("property_id").annotate(total=Sum("sessions")).values_list("property_id", "total")
    )
    per_day = dict(
        UsageDay.objects.filter(account=account, day__gte=first_day, day__lte=last_day)
        .values_list("day").annotate(total=Sum("sessions")).values_list("day", "total")
    )
    day, days = first_day, []
    while day <= last_day:
        days.append((day, int(per_day.get(day) or 0)))
        day += timedelta(days=1)
    evidence.sessions_by_day = days
    # Every property that existed during the trial, deleted ones too: a property deleted since is
    # still evidence (USE-5). One created after the trial ended (or deleted before it began) is not
    # listed, unless it has events or sessions in the trial: evidence is never hidden.
    evidence.properties = []
    for p in Property.objects.filter(account=account).order_by("created_at", "id"):
        item = PropertyEvidence(p, p.first_event_at, _in(p.first_event_at, start, end),
                                int(per_property.get(p.pk) or 0))
        existed = p.created_at < end and (p.deleted_at is None or p.deleted_at >= start)
        if existed or item.first_event_in_trial or item.sessions_in_trial:
            evidence.properties.append(item)
        elif p.created_at >= end:
            evidence.properties_added_later += 1
    evidence.integrations = list(
        Integration.objects.filter(account=account, connected_at__lt=end)
        .filter(Q(disconnected_at__isnull=True) | Q(disconnected_at__gte=start)).order_by("connected_at")
    )
    logins = LoginEvent.objects.filter(account=account, at__gte=start, at__lt=end).select_related("user")
    evidence.login_count = logins.count()
    evidence.logins = list(logins.order_by("at")[:MAX_LOGINS_SHOWN])
    return evidence


def identity_matches(accounts) -> dict[int, list[Match]]:
    """For each account, the *other* accounts that had a trial and share its normalised owner
    e-mail or one of its card fingerprints (TRI-2). Three queries, whatever the number of accounts."""

    accounts = list(accounts)
    found: dict[int, list[Match]] = defaultdict(list)
    emails = {a.identity_email for a in accounts if a.identity_email}
    if emails:
        by_email = defaultdict(list)
        for other in Account.objects.filter(identity_email__in=emails, trial_used_at__isnull=False).order_by("id"):
            by_email[other.identity_email].append(other)
        for account in accounts:
            for other in by_email.get(account.identity_email, []):
                if other.pk != account.pk:
                    found[account.pk].append(Match(other, "owner e-mail", account.identity_email))
    own_cards = defaultdict(set)
    for account_id, fingerprint in PaymentMethod.objects.filter(
        account__in=[a.pk for a in accounts]
    ).exclude(fingerprint="").values_list("account_id", "fingerprint"):
        own_cards[account_id].add(fingerprint)
    fingerprints = set().union(*own_cards.values()) if own_cards else set()
    if fingerprints:
        by_card = defaultdict(dict)
        for method in (PaymentMethod.objects.filter(fingerprint__in=fingerprints, account__trial_used_at__isnull=False)
                       .select_related("account").order_by("account_id")):
            by_card[method.fingerprint][method.account_id] = method
        for account in accounts:
            seen = set()
            for fingerprint in sorted(own_cards.get(account.pk, ())):
                for other_id, method in by_card.get(fingerprint, {}).items():
                    if other_id != account.pk and other_id not in seen:
                        seen.add(other_id)
                        found[account.pk].append(Match(method.account, "card",
                                                       f"{method.brand.title()} •••• {method.last4}"))
    return dict(found)


def trial_abuse_candidates():
    """Accounts whose owner e-mail or card matches another account that had a trial, or that carry an
    open trial-abuse flag (TRI-2), newest first."""

    trialled = Account.objects.filter(trial_used_at__isnull=False)
    same_email = trialled.filter(identity_email=OuterRef("identity_email")).exclude(pk=OuterRef("pk"))
    own_fingerprints = PaymentMethod.objects.filter(account_id=OuterRef(OuterRef("pk"))).values("fingerprint")
    same_card = (PaymentMethod.objects.filter(account__trial_used_at__isnull=False, fingerprint__in=own_fingerprints)
                 .exclude(account_id=OuterRef("pk")).exclude(fingerprint=""))
    flagged = AccountFlag.objects.filter(account_id=OuterRef("pk"), kind=FlagKind.TRIAL_ABUSE,
                                         resolved_at__isnull=True)
    return (Account.objects.filter(Exists(flagged) | (~Q(identity_email="") & Exists(same_email)) | Exists(same_card))
            .order_by("-id"))
