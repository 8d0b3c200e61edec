from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.timezone import now as tz_now

from core import zones
from plans.models import Cycle


class Status(models.TextChoices):
    TRIALING = "trialing", "Trialing"  # free trial running (TRI-1)
    ACTIVE = "active", "Active"  # paid up, or on the Free plan
    PAST_DUE = "past_due", "Past due"  # a renewal charge failed; retries running (DUN-1)
    SUSPENDED = "suspended", "Suspended"  # last retry failed (DUN-3)
    CANCELED = "canceled", "Cancelled"  # ended; a cancelled trial may be reactivated (TRI-5)


class CancelReason(models.TextChoices):
    """Why the owner cancelled (CAN-5), optional. The codes are Stripe's `cancellation_details.feedback`
    values, so an export or a later move to Stripe Billing maps them one to one."""

    TOO_EXPENSIVE = "too_expensive", "It is too expensive"
    MISSING_FEATURES = "missing_features", "Features I need are missing"
    SWITCHED_SERVICE = "switched_service", "I am switching to another service"
    UNUSED = "unused", "I do not use it enough"
    CUSTOMER_SERVICE = "customer_service", "Customer service was not good enough"
    TOO_COMPLEX = "too_complex", "It is too hard to use"
    LOW_QUALITY = "low_quality", "The quality was not good enough"
    OTHER = "other", "Another reason"


class SubscriptionQuerySet(models.QuerySet):
    def current(self):
        """The current subscriptions: at most one per account (`one_current_per_account`)."""
        return self.filter(is_current=True)

    def current_of(self, account) -> "Subscription | None":
        """The account's current subscription (an account or its id), or None before sign-up ends."""
        return self.current().filter(account=account).first()


class Subscription(models.Model):
    """An account's plan over time. The current one is marked `is_current` (one per account, a
    database constraint); `lifecycle.subscription_end` unmarks it when a new one replaces it, and
    the older rows are history.

    Periods are derived from `anchor_at` (D-1): period n ends at the anchor moved n + 1 months
    (years for yearly) on the calendar of a billing time zone, at the anchor's local wall-clock
    time (`pricing.calendar_shift`). `period_index` is the n of the current period.

    `timezone` is the zone whose calendar the current period was computed and is counted on; the
    next period takes the account's zone (`terms.next_zone`), so an owner's change applies from
    the next period. `next_timezone` holds the zone of a next period that was already invoiced
    when the owner changed zones, so that it keeps the bounds its invoice states.
    """

    account = models.ForeignKey("accounts.Account", on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey("plans.Plan", on_delete=models.PROTECT, related_name="+")
    cycle = models.CharField(max_length=10, choices=Cycle, default=Cycle.MONTHLY)
    status = models.CharField(max_length=10, choices=Status, default=Status.ACTIVE)
    anchor_at = models.DateTimeField(null=True, blank=True)
    period_index = models.PositiveIntegerField(default=0)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC",
                                help_text="The billing time zone of the current period's calendar (D-1, D-2).")
    next_timezone = models.CharField(max_length=64, blank=True,
                                     help_text="The zone of an already invoiced next period, kept when the owner "
                                               "changed zones since (D-5); empty: the account's.")
    current_price = models.DecimalField(
        max_digits=12, decimal_places=2, default=0, help_text="What the current period's plan cost."
    )
    trial_start = models.DateTimeField(null=True, blank=True)
    trial_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    cancel_reason_code = models.CharField("cancellation reason", max_length=20, choices=CancelReason, blank=True,
                                          help_text="CAN-5: the reason the owner picked; empty when none was given.")
    cancel_reason = models.TextField("cancellation comment", blank=True,
                                     help_text="CAN-5: the owner's own words, optional; only staff read them.")
    canceled_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    scheduled_plan = models.ForeignKey(
        "plans.Plan", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    scheduled_cycle = models.CharField(max_length=10, choices=Cycle, blank=True)
    extra_properties = models.PositiveIntegerField(default=0)
    scheduled_extra_properties = models.PositiveIntegerField(null=True, blank=True)
    # Dunning (DUN-1..3): when the first charge of the open invoice failed, and the next retry.
    past_due_since = models.DateTimeField(null=True, blank=True)
    retry_count = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    # Set while an immediate charge for this subscription is in flight (PAY-2), so a second
    # change cannot start until the first one's outcome is known.
    charge_in_flight = models.ForeignKey(
        "invoices.Payment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    trial_reminded_at = models.DateTimeField(null=True, blank=True)  # TRI-7: 3 days before
    renewal_reminded_for = models.DateTimeField(null=True, blank=True)  # REN-5: the period end reminded of
    # REN-3: the period end whose renewal invoice exists, so that the run stops selecting the
    # subscription until the next period (the invoice's dedupe key stays the guarantee).
    renewal_invoiced_for = models.DateTimeField(null=True, blank=True)
    # The account's current subscription. A new row is current; `lifecycle.subscription_end` unmarks
    # the one it replaces first, so the constraint below never sees two.
    is_current = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=tz_now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        constraints = [
            # One current subscription per account is a database fact, not "the newest row".
            models.UniqueConstraint(fields=["account"], condition=models.Q(is_current=True),
                                    name="one_current_per_account"),
        ]
        indexes = [
            models.Index(fields=["status", "current_period_end"]),
            models.Index(fields=["status", "trial_end"]),
            models.Index(fields=["status", "next_retry_at"]),
            models.Index(fields=["account", "-id"]),
        ]
        permissions = [
            ("downgrade_now", "Can downgrade at once with a credit note"),
            ("extend_period", "Can extend a period"),
        ]

    def __str__(self):
        return f"{self.account} — {self.plan} ({self.cycle}, {self.status})"

    @property
    def zone(self):
        """The calendar of the current period (D-1, D-2): its dates, the days proration counts."""
        return zones.zone(self.timezone)

    @property
    def is_trialing(self) -> bool:
        return self.status == Status.TRIALING

    @property
    def is_paid(self) -> bool:
        return not self.plan.is_free

    @property
    def property_limit(self) -> int | None:
        """Properties allowed now: the plan's limit plus the extra properties bought (ADD-1)."""
        return self.plan.property_limit(self.extra_properties)

    @property
    def has_pending_change(self) -> bool:
        return bool(
            self.cancel_at_period_end or self.scheduled_plan_id or self.scheduled_extra_properties is not None
        )


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending review"  # waiting for staff (the words a refund request uses)
    APPROVED = "approved", "Approved"  # staff approved
    REJECTED = "rejected", "Rejected"  # staff rejected, with a reason


class RestoreRequest(models.Model):
    """UPG-3: the owner asks for the monthly days forfeited by a monthly→yearly upgrade."""

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="restore_requests")
    invoice = models.OneToOneField("invoices.Invoice", on_delete=models.PROTECT, related_name="restore_request")
    days = models.PositiveIntegerField()
    upgraded_on = models.DateField()
    status = models.CharField(max_length=10, choices=RequestStatus, default=RequestStatus.PENDING)
    requested_at = models.DateTimeField(default=timezone.now)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decision_reason = models.TextField(blank=True)

    class Meta:
        permissions = [("decide_restore", "Can decide restore-days requests")]

    def __str__(self):
        return f"Restore {self.days} days for {self.subscription.account}"


class BillingRunLock(models.Model):
    """One row per lock name. On SQLite the billing run takes it so two runs never overlap
    (REN-3); PostgreSQL claims rows with SELECT … FOR UPDATE SKIP LOCKED instead."""

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.name
