import secrets

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.timezone import now as tz_now
from django_countries.fields import CountryField

from core import zones


class AccountStatus(models.TextChoices):
    ACTIVE = "active", "Active"  # properties may track
    SUSPENDED = "suspended", "Suspended"  # tracking stops (SUS-1); see suspension_reason


class SuspensionReason(models.TextChoices):
    NON_PAYMENT = "non_payment", "Non-payment"  # last dunning retry failed (DUN-3)
    POLICY_VIOLATION = "policy_violation", "Policy violation"  # staff action (SUS-2)
    CANCELLED_TRIAL = "cancelled_trial", "Cancelled trial"  # TRI-4


class Account(models.Model):
    """A customer business. Billing details appear on invoices issued after they change (INV-4)."""

    name = models.CharField(max_length=200)
    company = models.CharField(max_length=200, blank=True)
    address = models.TextField(blank=True)
    country = CountryField(blank=True, help_text="ISO 3166-1 alpha-2 code.")
    vat_id = models.CharField("VAT ID", max_length=30, blank=True,
                              help_text="Compact, checked for its country's format and check digit (TAX-4).")
    # The optional live check (VAT_VIES_CHECK): when VIES last confirmed the VAT ID, and its consultation number.
    vat_id_checked_at = models.DateTimeField("VAT ID confirmed by VIES at", null=True, blank=True)
    vat_id_consultation = models.CharField("VIES consultation number", max_length=60, blank=True)
    billing_email = models.EmailField(
        blank=True, help_text="PAY-5: invoices and receipts also go to this address (e.g. the accounts department).")
    timezone = models.CharField(
        max_length=64, default=zones.DEFAULT,
        help_text="Billing time zone, an IANA name the owner chooses (D-5); each subscription takes it from its "
                  "next period.")
    status = models.CharField(max_length=20, choices=AccountStatus, default=AccountStatus.ACTIVE)
    suspension_reason = models.CharField(max_length=20, choices=SuspensionReason, blank=True)
    suspension_note = models.TextField(blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    trial_used_at = models.DateTimeField(null=True, blank=True, help_text="TRI-2: one trial ever.")
    usage_started_at = models.DateTimeField(null=True, blank=True, help_text="USE-5.")
    identity_email = models.CharField(
        max_length=254, blank=True, db_index=True, help_text="The owner's normalised e-mail (TRI-2)."
    )
    gateway_customer_id = models.CharField(max_length=100, blank=True)
    email_usage_alerts = models.BooleanField(default=True)  # NOT-2: non-billing kind
    email_product_news = models.BooleanField(default=True)  # NOT-2: non-billing kind
    created_at = models.DateTimeField(default=tz_now)

    class Meta:
        indexes = [models.Index(fields=["name"]), models.Index(fields=["status"])]
        permissions = [("suspend_account", "Can suspend and lift suspensions for a policy violation")]

    def __str__(self):
        return self.name

    @property
    def zone(self):
        """The billing time zone the owner chose (D-5): the one place an account's zone is read.
        Dates a customer reads are dates of this zone; a subscription's periods follow it from
        their next period (`Subscription.zone` is the calendar of the current one)."""
        return zones.zone(self.timezone)

    @property
    def is_suspended(self) -> bool:
        return self.status == AccountStatus.SUSPENDED

    @property
    def owner(self):
        membership = next(
            (m for m in self.memberships.all() if m.role == Role.OWNER), None
        )
        return membership.user if membership else None

    @property
    def email(self) -> str:
        """The owner's e-mail (dj-stripe and the gateways use it for the customer)."""
        owner = self.owner
        return owner.email if owner else ""

    @property
    def subscription(self):
        """The current subscription (`is_current`, one per account). Older rows are history."""
        return self.subscriptions.select_related("plan", "scheduled_plan").current_of(self)

    def billing_recipients(self):
        """Billing e-mail goes to the owner and billing-role users (NOT-1); invoices and receipts also
        to `billing_email` (PAY-5: `notifications.services.recipients_for` adds it)."""
        return [
            m.user
            for m in self.memberships.select_related("user").filter(role__in=[Role.OWNER, Role.BILLING])
            if m.user.email and m.user.is_active
        ]


class Role(models.TextChoices):
    OWNER = "owner", "Owner"  # everything, the only role that cancels (ACC-1, CAN-1)
    BILLING = "billing", "Billing"  # plan changes, payment method, invoices; not cancel
    MEMBER = "member", "Member"  # reads usage only


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role)
    created_at = models.DateTimeField(default=tz_now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "account"], name="membership_unique"),
            models.UniqueConstraint(
                fields=["account"], condition=models.Q(role="owner"), name="membership_one_owner"
            ),
        ]

    def __str__(self):
        return f"{self.user} ({self.role}) @ {self.account}"

    def can(self, action: str) -> bool:
        return action in ROLE_PERMISSIONS[self.role]


# ACC-1: what each role may do on the billing page.
ROLE_PERMISSIONS = {
    Role.OWNER: {"view_usage", "view_billing", "change_plan", "payment_method", "invoices", "cancel",
                 "manage_properties", "billing_details", "email_settings", "requests"},
    Role.BILLING: {"view_usage", "view_billing", "change_plan", "payment_method", "invoices",
                   "billing_details", "email_settings"},
    Role.MEMBER: {"view_usage"},
}


def normalise_email(email: str) -> str:
    """TRI-2: lower case; for gmail.com, dots and a +tag in the local part are removed."""
    local, _, domain = email.strip().lower().partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.split("+", 1)[0].replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if domain else local


def new_tracking_tag() -> str:
    return "PR-" + secrets.token_urlsafe(12)


class PropertyStatus(models.TextChoices):
    ACTIVE = "active", "Active"  # tracks
    PAUSED = "paused", "Paused"  # over the plan's limit after a downgrade (DWN-3, CAN-2)


class PropertyQuerySet(models.QuerySet):
    def live(self):
        """Not deleted by the owner. The system never deletes a property."""
        return self.filter(deleted_at__isnull=True)


class Property(models.Model):
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="properties")
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253)
    tracking_tag = models.CharField(max_length=40, unique=True, default=new_tracking_tag, editable=False)
    status = models.CharField(max_length=10, choices=PropertyStatus, default=PropertyStatus.ACTIVE)
    first_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=tz_now)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="Deleted by the owner; kept as trial-usage evidence."
    )

    objects = PropertyQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "properties"
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["account", "deleted_at"])]

    def __str__(self):
        return f"{self.name} ({self.domain})"


class Integration(models.Model):
    """A connected conversion source (counts against the plan's integration limit)."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="integrations")
    kind = models.CharField(max_length=50)
    name = models.CharField(max_length=200, blank=True)
    connected_at = models.DateTimeField(default=tz_now)
    disconnected_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"{self.kind} ({self.account})"


class UsageEvent(models.Model):
    """One reported billable session, kept to refuse replays (USE-1)."""

    event_id = models.CharField(max_length=100, unique=True)
    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="+")
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=tz_now)

    class Meta:
        indexes = [models.Index(fields=["occurred_at"], name="usage_event_occurred")]  # the hourly prune

    def __str__(self):
        return f"Event {self.event_id} at {self.occurred_at:%Y-%m-%d %H:%M}"


class UsageDay(models.Model):
    """Sessions per property per UTC day."""

    property = models.ForeignKey(Property, on_delete=models.CASCADE, related_name="usage_days")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_days")
    day = models.DateField()
    sessions = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["property", "day"], name="usage_day_unique")]
        indexes = [models.Index(fields=["account", "day"])]

    def __str__(self):
        return f"{self.day:%Y-%m-%d}: {self.sessions:,} sessions"


class UsageMonth(models.Model):
    """Counted sessions per account per calendar month (UTC): the quota and overage input (USE-1,
    USE-3). `month` is the first day of the month. Hard-capped plans stop counting at the quota."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="usage_months")
    month = models.DateField()
    sessions = models.PositiveBigIntegerField(default=0)
    sessions_included = models.PositiveBigIntegerField(null=True, blank=True)
    # The count the month's overage invoices were made for (USE-3): sessions reported later, up to
    # 35 days after the month, are billed on the next overage invoice. None: nothing invoiced yet.
    sessions_billed = models.PositiveBigIntegerField(null=True, blank=True)
    alert_80_at = models.DateTimeField(null=True, blank=True)  # USE-6, once per month
    alert_100_at = models.DateTimeField(null=True, blank=True)  # USE-6, once per month

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "month"], name="usage_month_unique")]

    def __str__(self):
        quota = "unlimited" if self.sessions_included is None else f"{self.sessions_included:,}"
        return f"{self.month:%Y-%m}: {self.sessions:,} sessions of {quota}"


class LoginEvent(models.Model):
    """Logins: part of the trial-usage evidence staff review (REF-2)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    account = models.ForeignKey(Account, null=True, on_delete=models.CASCADE, related_name="logins")
    at = models.DateTimeField(default=tz_now)
    ip = models.GenericIPAddressField(null=True, blank=True)

    def __str__(self):
        return f"Login at {self.at:%Y-%m-%d %H:%M}"


class FlagKind(models.TextChoices):
    TRIAL_ABUSE = "trial_abuse", "Possible trial abuse"  # TRI-2
    DISPUTE = "dispute", "Payment dispute"  # a chargeback was opened


class AccountFlag(models.Model):
    """Something staff should look at. Flags never change billing by themselves."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="flags")
    kind = models.CharField(max_length=20, choices=FlagKind)
    detail = models.TextField(blank=True)
    matched_account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=tz_now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "resolved_at"])]

    def __str__(self):
        return f"{self.get_kind_display()} (flag #{self.pk})"


class AuditEvent(models.Model):
    """Append-only record of every state change (ACC-3): rows are inserted, never updated."""

    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, help_text="Who, as text: 'system' for the scheduler.")
    action = models.CharField(max_length=80)
    object_type = models.CharField(max_length=80)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(default=tz_now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["account", "-created_at"]), models.Index(fields=["action"])]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_label}: {self.action}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("Audit events are append-only.")
