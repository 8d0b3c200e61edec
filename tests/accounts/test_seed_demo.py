import pytest
from django.core.management import CommandError, call_command

from accounts.models import Account
from plans.models import Plan

pytestmark = pytest.mark.django_db


def test_seed_demo_creates_catalog_staff_and_owner_and_prints_the_logins(settings, capsys):
    """CAT-2: seed_demo loads the demo catalog (free, personal, advanced) and an owner of Acme Inc. on Free with one
    property, prints the staff and owner logins, and can run twice."""
    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")  # idempotent
    out = capsys.readouterr().out
    assert "admin@prorata.localhost" in out and "owner@acme.localhost" in out
    assert set(Plan.objects.filter(public=True).values_list("code", flat=True)) == {"free", "personal", "advanced"}
    account = Account.objects.get(name="Acme Inc.")
    assert account.owner.email == "owner@acme.localhost" and account.properties.count() == 1
    assert account.subscription.plan.code == "free"


def test_pay4_seed_demo_creates_a_customer_in_every_account_state_and_prints_the_logins(settings, capsys):
    """Issue 14: a newcomer sees every screen on the first run: twelve demo customers, each in one
    account state, with their logins printed; running it again adds nothing."""
    from backoffice.demo import BUILDERS, PASSWORD

    settings.DEBUG = True
    call_command("seed_demo")
    call_command("seed_demo")
    out = capsys.readouterr().out
    for key, title, _builder in BUILDERS:
        assert f"{key}@demo.prorata.localhost" in out and title in out, key
        assert Account.objects.filter(memberships__user__username=f"{key}@demo.prorata.localhost").count() == 1
    assert PASSWORD in out
    statuses = {account.name: account.subscription.status for account in Account.objects.all()}
    assert statuses["Past Due Ltd"] == "past_due" and statuses["Trialing Ltd"] == "trialing"


def test_seed_demo_refuses_to_run_without_debug(settings):
    """Safety: seed_demo (known passwords) refuses to run unless DEBUG is on, and creates nothing."""
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG=true"):
        call_command("seed_demo")
    assert not Account.objects.exists()
