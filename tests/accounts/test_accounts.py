import pytest
from django.core import mail
from django.urls import reverse

from accounts import services
from accounts.models import Account, AuditEvent, LoginEvent, Membership, Property, PropertyStatus, Role
from tests.factories import AccountFactory, MembershipFactory, PropertyFactory, UserFactory
from tests.signup import sign_up

pytestmark = pytest.mark.django_db


def test_acc1_sign_up_creates_user_account_on_free_and_owner_membership(client, catalog):
    response = sign_up(client, account_name="Globex", email="Hank@Globex.example", password="a-long-password-1")
    assert response.status_code == 302
    account = Account.objects.get(name="Globex")
    membership = Membership.objects.get(account=account)
    assert membership.role == Role.OWNER and membership.user.email == "hank@globex.example"
    assert account.subscription.plan.code == "free" and account.subscription.status == "active"
    assert AuditEvent.objects.filter(account=account, action="account.signed_up").exists()
    page = client.get(reverse("billing:overview"))
    assert page.status_code == 200 and b"Globex" in page.content


def test_acc1_sign_up_refuses_a_duplicate_email_and_a_weak_password(client, catalog):
    """A second sign-up with a known address creates nothing: the address gets the "you already have an
    account" e-mail, not a link (issue 28: the page does not say so)."""
    sign_up(client, account_name="A", email="a@example.com", password="a-long-password-1")
    client.logout()
    dup = client.post(
        reverse("signup"), {"account_name": "B", "email": "A@example.com", "password": "a-long-password-1"}
    )
    assert dup.status_code == 200 and b"Check your e-mail" in dup.content
    assert "already have an account" in mail.outbox[-1].body and "/signup/confirm/" not in mail.outbox[-1].body
    weak = client.post(reverse("signup"), {"account_name": "C", "email": "c@example.com", "password": "12345678"})
    assert weak.status_code == 200 and b"too common" in weak.content
    assert Account.objects.count() == 1


def test_login_records_a_login_event_and_shows_account_and_properties(client, catalog):
    """REF-2: a login is recorded as a LoginEvent of its account (trial-refund evidence); the overview and the
    properties page then show the account and its properties."""
    user = UserFactory()
    account = AccountFactory(owner=user)
    PropertyFactory(account=account, name="Main site")
    assert client.login(username=user.username, password="password-123")
    response = client.post(reverse("login"), {"username": user.username, "password": "password-123"})
    assert response.status_code == 302
    assert LoginEvent.objects.filter(user=user, account=account).exists()
    page = client.get(reverse("billing:overview"))
    assert page.status_code == 200 and account.name.encode() in page.content
    assert b"Main site" in client.get(reverse("accounts:properties")).content


def test_cat1_property_limit_is_enforced_with_a_clear_message(client, catalog):
    user = UserFactory()
    account = AccountFactory(owner=user)  # Free: 1 property
    client.force_login(user)
    client.post(reverse("accounts:property_add"), {"name": "One", "domain": "one.example.com"})
    response = client.post(reverse("accounts:property_add"), {"name": "Two", "domain": "two.example.com"},
                           follow=True)
    assert account.properties.live().count() == 1
    assert b"Your Free plan allows 1 property; you have 1." in response.content


def test_property_delete_asks_for_confirmation_and_keeps_the_row(client, catalog):
    """Deleting a property asks for confirmation first, then only marks it deleted: the row is kept (deleted_at set) and
    leaves the live list."""
    user = UserFactory()
    account = AccountFactory(owner=user)
    prop = PropertyFactory(account=account)
    client.force_login(user)
    confirm = client.get(reverse("accounts:property_delete", args=[prop.pk]))
    assert confirm.status_code == 200 and b"Delete property" in confirm.content
    assert Property.objects.live().filter(pk=prop.pk).exists()
    client.post(reverse("accounts:property_delete", args=[prop.pk]))
    prop.refresh_from_db()
    assert prop.deleted_at is not None
    assert not Property.objects.live().filter(pk=prop.pk).exists()


def test_property_of_another_account_is_a_404(client, catalog):
    """ACC-1: a user has no access to another account's property: its delete page is a 404 on GET and on POST."""
    user = UserFactory()
    AccountFactory(owner=user)
    other = PropertyFactory()
    client.force_login(user)
    assert client.get(reverse("accounts:property_delete", args=[other.pk])).status_code == 404
    assert client.post(reverse("accounts:property_delete", args=[other.pk])).status_code == 404


@pytest.mark.parametrize(("role", "status"), [(Role.MEMBER, 403), (Role.BILLING, 403)])
def test_acc1_only_the_owner_manages_properties(client, catalog, role, status):
    account = AccountFactory()
    membership = MembershipFactory(account=account, role=role)
    client.force_login(membership.user)
    assert client.get(reverse("accounts:properties")).status_code == 200
    response = client.post(reverse("accounts:property_add"), {"name": "X", "domain": "x.example.com"})
    assert response.status_code == status
    assert account.properties.count() == 0


def test_acc1_pages_require_login(client):
    for name in ("billing:overview", "accounts:properties"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and reverse("login") in response["Location"]


def test_dwn3_pause_excess_pauses_newest_and_unpause_resumes_oldest_first(catalog):
    account = AccountFactory()
    props = [PropertyFactory(account=account) for _ in range(3)]
    paused = services.pause_excess(account, 1)
    assert [p.pk for p in paused] == [props[1].pk, props[2].pk]
    assert Property.objects.get(pk=props[0].pk).status == PropertyStatus.ACTIVE
    services.property_delete(prop=Property.objects.get(pk=props[0].pk))
    statuses = {p.pk: p.status for p in Property.objects.filter(pk__in=[p.pk for p in props[1:]])}
    assert statuses == {props[1].pk: PropertyStatus.ACTIVE, props[2].pk: PropertyStatus.PAUSED}
