"""Issue 28 item 4: a Content-Security-Policy on every page with no inline script unless nonced,
the API docs for staff only and served without a CDN, and billing pages kept out of caches."""

import re

import pytest
from django.test import Client

from subscriptions import billing
from tests.factories import AccountFactory, UserFactory
from tests.subscriptions.conftest import at

pytestmark = pytest.mark.django_db

SCRIPT = re.compile(r"<script\b([^>]*)>", re.I)


@pytest.fixture
def owner_client(catalog):
    user = UserFactory()
    account = AccountFactory(owner=user)
    billing.set_payment_method(account, "pm_card_visa", now=at("2026-01-01"))
    billing.subscribe(account, "personal", now=at("2026-01-01"))
    client = Client()
    client.force_login(user)
    return client, account


@pytest.fixture
def staff_client(db):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def policy(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {part.split()[0]: part for part in (p.strip() for p in header.split(";")) if part}


def assert_scripts_allowed(response):
    """Every <script> either loads a file or carries the response's nonce (JSON data blocks aside)."""
    html = response.content.decode()
    directives = policy(response)
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]
    for attrs in SCRIPT.findall(html):
        if "src=" in attrs or 'type="application/json"' in attrs:
            continue
        nonce = re.search(r'nonce="([^"]+)"', attrs)
        assert nonce and f"'nonce-{nonce[1]}'" in directives["script-src"], attrs
    for src in re.findall(r'<script[^>]*\bsrc="([^"]+)"', html):
        assert src.startswith("/static/"), src  # no CDN


def test_csp_every_page_carries_a_policy_that_allows_only_own_and_nonced_scripts(client, owner_client, staff_client):
    """Issue 28 item 4: public pages, the customer's billing pages and the admin all carry the policy;
    the sign-up page's time-zone script runs under its nonce."""
    owner, account = owner_client
    invoice = account.invoices.exclude(number__isnull=True).first()
    pages = [(client, "/login/"), (client, "/signup/"), (client, "/password/reset/"),
             (owner, "/billing/"), (owner, "/billing/plans/"), (owner, "/billing/payment-method/"),
             (owner, "/billing/invoices/"), (owner, f"/billing/invoices/{invoice.pk}/"),
             (owner, "/account/properties/"),
             (staff_client, "/admin/"), (staff_client, "/admin/revenue/"), (staff_client, "/api/v1/docs")]
    for who, path in pages:
        response = who.get(path)
        assert response.status_code == 200, path
        directives = policy(response)
        assert directives["default-src"] == "default-src 'self'", path
        assert directives["frame-ancestors"] == "frame-ancestors 'none'" and "object-src" in directives, path
        assert_scripts_allowed(response)
    signup = client.get("/signup/")
    assert re.search(r'<script nonce="[^"]+">', signup.content.decode())


def test_csp_api_docs_are_for_staff_and_load_no_cdn(client, staff_client):
    """Issue 28 item 4: /api/v1/docs sends visitors to the staff login; staff get Swagger UI from
    django-ninja's own static files; the OpenAPI JSON stays public."""
    anonymous = client.get("/api/v1/docs")
    assert anonymous.status_code == 302 and anonymous.url.startswith("/admin/login/")
    docs = staff_client.get("/api/v1/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_billing_pages_are_private_no_store(client, owner_client):
    """Issue 28 item 4: billing pages answer `Cache-Control: private, no-store` (as PDFs did)."""
    owner, account = owner_client
    invoice = account.invoices.exclude(number__isnull=True).first()
    for path in ("/billing/", "/billing/plans/", "/billing/invoices/", f"/billing/invoices/{invoice.pk}/",
                 "/billing/payment-method/", "/account/properties/"):
        response = owner.get(path)
        assert response.status_code == 200 and response["Cache-Control"] == "private, no-store", path
