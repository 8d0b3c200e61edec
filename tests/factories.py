"""factory-boy factories. AccountFactory creates its owner membership and a Free subscription."""

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from accounts.models import Account, Membership, Property, Role, normalise_email
from plans.models import Plan


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}@example.com")
    email = factory.SelfAttribute("username")
    password = factory.django.Password("password-123")


class PlanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Plan
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"plan{n}")
    name = factory.LazyAttribute(lambda o: o.code.title())
    rank = 1
    currency = "USD"
    monthly_price = Decimal("14.00")
    yearly_price = Decimal("134.40")
    limit_properties = 3
    limit_sessions = 10000
    limit_integrations = None
    overage_per_1000 = Decimal("2.00")
    extra_property_monthly = None
    trial_days = 14
    public = True


def free_plan() -> Plan:
    return PlanFactory(
        code="free", name="Free", rank=0, monthly_price=Decimal("0.00"), yearly_price=None,
        limit_properties=1, limit_sessions=1000, limit_integrations=1, overage_per_1000=None, trial_days=0,
    )


class AccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Account
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Account {n}")

    @factory.post_generation
    def owner(self, create, extracted, **kwargs):
        if not create:
            return
        user = extracted or UserFactory()
        Membership.objects.create(user=user, account=self, role=Role.OWNER)
        self.identity_email = normalise_email(user.email)
        self.save(update_fields=["identity_email"])

    @factory.post_generation
    def subscription(self, create, extracted, **kwargs):
        """Every account starts on Free, as sign-up does. Pass subscription=False to skip."""
        if not create or extracted is False:
            return
        from subscriptions import billing

        free_plan()
        billing.start_free(self)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    account = factory.SubFactory(AccountFactory)
    role = Role.MEMBER


class PropertyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Property

    account = factory.SubFactory(AccountFactory)
    name = factory.Sequence(lambda n: f"Site {n}")
    domain = factory.Sequence(lambda n: f"site{n}.example.com")


def subscription_replace(account, plan, **fields):
    """A new current subscription of `account` on `plan`, in place of its current one (the
    shortcut tests take for what `lifecycle`'s start functions do: one current per account)."""
    from subscriptions.models import Subscription

    Subscription.objects.filter(account=account, is_current=True).update(is_current=False)
    return Subscription.objects.create(account=account, plan=plan, **fields)
