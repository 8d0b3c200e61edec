"""Trial-abuse flags can be resolved by Support, which lifts REF-3's automatic refusal."""

import pytest
from django.urls import reverse

from accounts.groups import ensure_staff_groups
from accounts.models import AccountFlag, AuditEvent, FlagKind
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_ref3_support_resolves_a_false_trial_abuse_flag_from_the_admin(client, catalog):
    ensure_staff_groups()
    from django.contrib.auth.models import Group

    staff = UserFactory(username="support@prorata.test", is_staff=True)
    staff.groups.add(Group.objects.get(name="Support"))
    account, other = AccountFactory(), AccountFactory()
    flag = AccountFlag.objects.create(account=account, kind=FlagKind.TRIAL_ABUSE, matched_account=other)
    client.force_login(staff)
    response = client.post(reverse("admin:accounts_accountflag_changelist"),
                           {"action": "resolve_flags", "_selected_action": [flag.pk]}, follow=True)
    assert response.status_code == 200
    flag.refresh_from_db()
    assert flag.resolved_at is not None
    event = AuditEvent.objects.get(action="account.flag_resolved")
    assert event.actor == staff and "no abuse" in event.reason


def test_ref3_a_user_without_the_permission_cannot_resolve_flags(client, catalog):
    staff = UserFactory(username="nobody@prorata.test", is_staff=True)
    account = AccountFactory()
    flag = AccountFlag.objects.create(account=account, kind=FlagKind.TRIAL_ABUSE)
    client.force_login(staff)
    client.post(reverse("admin:accounts_accountflag_changelist"),
                {"action": "resolve_flags", "_selected_action": [flag.pk]})
    flag.refresh_from_db()
    assert flag.resolved_at is None


def test_ref3_a_resolved_flag_no_longer_refuses_refund_requests(catalog):
    from accounts.services import flag_resolve
    from invoices.models import Invoice
    from subscriptions import billing, scheduler
    from tests.subscriptions.conftest import at

    account = AccountFactory()
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-04-01"))
    billing.start_trial(account, "personal", now=at("2026-04-01"))
    scheduler.run(at("2026-04-15"))
    invoice = Invoice.objects.get(kind="trial_conversion")
    flag = AccountFlag.objects.create(account=account, kind=FlagKind.TRIAL_ABUSE)
    with pytest.raises(billing.NotEligible, match="flagged for review"):
        billing.request_refund(invoice, now=at("2026-04-16"))
    flag_resolve(flag, actor=None, reason="Checked: a different person", now=at("2026-04-16"))
    request = billing.request_refund(invoice, now=at("2026-04-17"))
    assert request.status == "pending"
