"""The demo customers (backoffice/demo.py, `seed_demo`) tell a history that could have happened
(issue 23): every renewal charged 24 hours before its period ends (REN-1; one was charged 6 hours
after its period began), no trial before its account existed, properties and sessions counted
through the usage API (USE-1), and one overage invoiced on the 1st (USE-3)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from accounts.models import AuditEvent, UsageMonth
from backoffice import demo
from invoices.models import Invoice
from subscriptions.models import Subscription
from tests.factories import UserFactory

from .conftest import at

TODAY = at("2026-06-15T12:00")


@pytest.fixture
def states(catalog, django_capture_on_commit_callbacks):
    staff_user = UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True)
    with django_capture_on_commit_callbacks(execute=True):
        built = demo.build_states(TODAY, staff_user)
    return {state.key: state for state in built}


def test_ren1_every_demo_renewal_is_charged_24_hours_before_its_period(states):
    renewals = Invoice.objects.filter(kind="renewal", account__in=[s.account for s in states.values()])
    assert renewals.count() >= 4
    for invoice in renewals:
        assert invoice.period_start - invoice.issued_at == timedelta(hours=24), (invoice.account, invoice.issued_at)
    renewed = states["renewed"].account
    latest = renewed.invoices.filter(kind="renewal").order_by("-issued_at").first()
    assert latest.issued_at == TODAY - timedelta(hours=12) and latest.status == "paid"


def test_tri1_no_demo_trial_or_subscription_before_its_account_existed(states):
    for key, state in states.items():
        account = state.account
        account.refresh_from_db()
        assert account.trial_used_at is None or account.trial_used_at >= account.created_at, key
        first = Subscription.objects.filter(account=account).order_by("created_at").first()
        assert first.created_at >= account.created_at, key
        assert not AuditEvent.objects.filter(account=account, created_at__lt=account.created_at).exists(), key
        assert not Subscription.objects.filter(account=account, trial_start__lt=account.created_at).exists(), key


def test_use1_the_demo_accounts_have_properties_and_sessions_and_one_overage_invoice(states):
    this_month = TODAY.date().replace(day=1)
    for key, state in states.items():
        assert state.account.properties.live().exists(), key
    counted = {key for key, state in states.items()
               if UsageMonth.objects.filter(account=state.account, month=this_month, sessions__gt=0).exists()}
    assert counted >= {"trialing", "monthly", "yearly", "downgrading", "cancelling", "credit", "pastdue", "renewed",
                       "custom"}
    (overage,) = Invoice.objects.filter(kind="overage")
    assert overage.account == states["renewed"].account and overage.status == "paid"
    assert overage.issued_at == at("2026-06-01T00:05") and overage.total > 0
    client = Client()
    client.force_login(get_user_model().objects.get(username=states["renewed"].email))
    page = client.get(reverse("billing:usage"), {"month": "2026-05"}).content.decode()
    assert "10,750" in page and overage.number in page
