from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models


class Cycle(models.TextChoices):
    MONTHLY = "monthly", "Monthly"  # one calendar month from the anchor (D-1)
    YEARLY = "yearly", "Yearly"  # one calendar year (D-1)


money = {"max_digits": 12, "decimal_places": 2, "validators": [MinValueValidator(Decimal("0"))]}


class Plan(models.Model):
    """A catalog entry (CAT-1). Empty limits mean unlimited; an empty overage price means a hard
    cap; an empty extra-property price means the add-on is not offered."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    rank = models.PositiveIntegerField(help_text="Tier order: a higher rank is an upgrade.")
    currency = models.CharField(max_length=3, default="USD")
    monthly_price = models.DecimalField(null=True, blank=True, **money)
    yearly_price = models.DecimalField(null=True, blank=True, **money)
    limit_properties = models.PositiveIntegerField(null=True, blank=True)
    limit_sessions = models.PositiveIntegerField(
        null=True, blank=True, help_text="Included billable sessions per calendar month."
    )
    limit_integrations = models.PositiveIntegerField(null=True, blank=True)
    overage_per_1000 = models.DecimalField(null=True, blank=True, **money)
    extra_property_monthly = models.DecimalField(null=True, blank=True, **money)
    trial_days = models.PositiveIntegerField(default=0)
    public = models.BooleanField(default=True)
    account = models.ForeignKey(
        "accounts.Account",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="custom_plans",
        help_text="Set for a custom plan offered to this account only (CAT-3).",
    )
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rank", "code"]
        permissions = [("create_custom_plan", "Can create custom plans for one account")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(public=False) | models.Q(account__isnull=True),
                name="plan_custom_is_private",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_free(self) -> bool:
        return not self.monthly_price and not self.yearly_price

    @property
    def hard_capped(self) -> bool:
        return self.overage_per_1000 is None

    def price_for(self, cycle: str) -> Decimal | None:
        return self.monthly_price if cycle == Cycle.MONTHLY else self.yearly_price

    def offers(self, cycle: str) -> bool:
        return self.price_for(cycle) is not None

    def property_limit(self, extra_properties: int = 0) -> int | None:
        """The properties an account on this plan may have: the plan's limit plus the extra
        properties bought, where the plan offers them (ADD-1). None is unlimited. The one
        computation of the limit: pages, quotes, the fit check (DWN-3) and the API call it.

        Advanced (10) with 2 extra properties -> 12; Personal (3, no add-on) with 2 -> 3.
        """
        if self.limit_properties is None:
            return None
        return self.limit_properties + (extra_properties if self.extra_property_monthly is not None else 0)

    def limits(self, extra_properties: int = 0) -> dict:
        return {
            "properties": self.property_limit(extra_properties),
            "sessions": self.limit_sessions,
            "integrations": self.limit_integrations,
        }
