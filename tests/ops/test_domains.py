"""Issue 28 item 5: a property's domain is a host name only, lower-cased, international names in
punycode; the issue's examples are refused with the reason and nothing is stored."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from accounts.domains import DomainError, domain_clean
from accounts.models import Property
from tests.factories import AccountFactory, UserFactory

pytestmark = pytest.mark.django_db

REFUSED = {  # the issue's examples, and the words the owner reads
    "..": "empty part between dots",
    "😀.com": "emoji and symbols are not",
    "evil\u202emoc.com": "text-direction marks",  # a right-to-left override
    "x.com/path?q=1": "no path, query",
    "<svg/onload=alert(1)>.com": "only the host name",
}


@pytest.fixture
def owner_client(client, catalog):
    user = UserFactory()
    account = AccountFactory(owner=user)
    client.force_login(user)
    return client, account


@pytest.mark.parametrize("typed", list(REFUSED))
def test_cat1_property_domain_refuses_the_issues_examples_with_a_clear_error(owner_client, typed):
    """Issue 28 item 5: each example is refused on the properties page with its reason; nothing is stored."""
    client, account = owner_client
    response = client.post(reverse("accounts:property_add"), {"name": "Site", "domain": typed})
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert len(said) == 1 and REFUSED[typed] in said[0], said
    assert not Property.objects.filter(account=account).exists()


@pytest.mark.parametrize(("typed", "stored"), [
    ("  https://Shop.Example.COM/ ", "shop.example.com"),
    ("Bücher.Example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
])
def test_cat1_property_domain_is_stored_lower_cased_and_in_punycode(owner_client, typed, stored):
    """Issue 28 item 5: a valid host name is stored lower-cased, its international form as punycode."""
    client, account = owner_client
    client.post(reverse("accounts:property_add"), {"name": "Site", "domain": typed})
    assert list(Property.objects.filter(account=account).values_list("domain", flat=True)) == [stored]


@pytest.mark.parametrize("typed", ["a..com", "localhost", "192.168.1.1", "ex ample.com", "a_b.com", "x.com:8080",
                                   "user@x.com", "-x.com", "x" * 64 + ".com", "\u200bx.com", "x.\ncom"])
def test_cat1_domain_clean_refuses_other_non_host_names(typed):
    """Issue 28 item 5: the service's check (also used by seed data and the API) refuses these."""
    with pytest.raises(DomainError):
        domain_clean(typed)
