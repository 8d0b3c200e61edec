"""Small things testers saw in the back office (issue 14): records named usefully in breadcrumbs
and lists, dj-stripe's mirror of Stripe hidden from staff and read-only for superusers (ACC-2),
the custom-plan form's "Start from" that really fills the fields (CAT-3), and trial evidence that
lists only the properties that existed during the trial (REF-2)."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib.auth.models import Permission
from django.db import models
from django.urls import reverse

from accounts.models import Property
from backoffice.admin.invoices import StripeMirrorAdmin
from plans.models import Plan
from subscriptions import billing
from tests.factories import PropertyFactory

from .conftest import at, client_for, messages_of

pytestmark = pytest.mark.django_db

PROJECT_APPS = ("accounts", "plans", "subscriptions", "invoices", "notifications", "api", "metrics", "core")


def test_every_record_has_a_readable_name_for_breadcrumbs_and_lists():
    """The admin never shows "RefundRequest object (1)": every model of ours names itself."""
    unnamed = [model._meta.label for model in apps.get_models()
               if model._meta.app_label in PROJECT_APPS and model.__str__ is models.Model.__str__]
    assert unnamed == []


def test_ref5_the_refund_request_page_names_the_request_in_its_breadcrumb(converted, support_client, clock):
    request = billing.request_refund(converted, now=at("2026-04-20"))
    with clock("2026-04-21"):
        html = support_client.get(reverse("admin:invoices_refundrequest_change", args=[request.pk])).content.decode()
    breadcrumbs = html.split('<div class="breadcrumbs">')[1].split("</div>")[0]
    assert f"Refund request #{request.pk} (pending review)" in breadcrumbs
    assert "object (" not in html


def test_acc2_support_staff_never_see_dj_stripe_even_with_a_permission_for_it(support, support_client):
    html = support_client.get(reverse("admin:index")).content.decode()
    assert "djstripe" not in html and "Dj-Stripe" not in html and "dj-stripe" not in html.lower()
    support.user_permissions.add(*Permission.objects.filter(content_type__app_label="djstripe",
                                                            codename__startswith="view_"))
    client = client_for(support)  # fresh permission cache
    assert "/admin/djstripe/" not in client.get(reverse("admin:index")).content.decode()
    assert client.get(reverse("admin:djstripe_customer_changelist")).status_code == 403


def test_acc2_superusers_read_dj_stripe_but_add_only_the_stripe_setup(superuser):
    client = client_for(superuser)
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:djstripe_customer_changelist") in index
    assert reverse("admin:djstripe_customer_add") not in index  # no "Add" beside the mirrored objects
    assert client.get(reverse("admin:djstripe_customer_changelist")).status_code == 200
    assert client.get(reverse("admin:djstripe_customer_add")).status_code == 403
    assert client.get(reverse("admin:djstripe_charge_add")).status_code == 403
    # docs/stripe.md's setup: API keys and webhook endpoints are still added here.
    assert client.get(reverse("admin:djstripe_apikey_add")).status_code == 200
    assert client.get(reverse("admin:djstripe_webhookendpoint_add")).status_code == 200


def test_acc2_every_dj_stripe_admin_is_guarded():
    """Infrastructure: a dj-stripe model registered later than the guard would escape it."""
    from django.contrib import admin

    stripe_admins = [model_admin for model, model_admin in admin.site._registry.items()
                     if model._meta.app_label == "djstripe"]
    assert len(stripe_admins) > 30 and all(isinstance(a, StripeMirrorAdmin) for a in stripe_admins)


def test_cat3_start_from_fills_the_fields_from_the_chosen_plan(account, manager_client, catalog, clock):
    url = reverse("admin:accounts_account_custom_plan", args=[account.pk])
    with clock("2026-04-10"):
        page = manager_client.get(url).content.decode()
        assert 'name="prefill" value="Copy the chosen plan&#x27;s prices and limits"' in page
        response = manager_client.post(url, {"base_plan": "personal", "prefill": "1", "code": "", "name": "",
                                             "monthly_price": "99.00", "trial_days": "0"})
    html = response.content.decode()
    assert response.status_code == 200 and not Plan.objects.filter(account=account).exists()
    assert any("filled from Personal" in m for m in messages_of(response))
    assert 'name="monthly_price" value="14.00"' in html and 'name="yearly_price" value="134.40"' in html
    assert 'name="limit_properties" value="3"' in html and 'name="limit_sessions" value="10000"' in html
    assert f'name="code" value="personal-{account.pk}"' in html
    assert '<option value="personal" selected>' in html
    with clock("2026-04-10"):
        response = manager_client.post(url, {"base_plan": "advanced", "prefill": "1"})
    assert 'name="monthly_price" value="29.00"' in response.content.decode()


def test_ref2_trial_evidence_lists_only_properties_that_existed_during_the_trial(converted, support_client, clock):
    account = converted.account
    PropertyFactory(account=account, name="Shop", domain="shop.acme.test", created_at=at("2026-04-02"))
    gone = PropertyFactory(account=account, name="Old", domain="old.acme.test", created_at=at("2026-03-01"))
    Property.objects.filter(pk=gone.pk).update(deleted_at=at("2026-04-10"))  # deleted during the trial: evidence
    PropertyFactory(account=account, name="Later", domain="later.acme.test", created_at=at("2026-05-02"))
    PropertyFactory(account=account, name="Later too", domain="later2.acme.test", created_at=at("2026-05-03"))
    request = billing.request_refund(converted, now=at("2026-05-04"))
    with clock("2026-05-05"):
        html = support_client.get(reverse("admin:invoices_refundrequest_change", args=[request.pk])).content.decode()
    table = html.split('id="evidence-properties"')[1].split("</table>")[0]
    assert "shop.acme.test" in table and "old.acme.test" in table and "deleted 2026-04-10" in table
    assert "later.acme.test" not in table and "later2.acme.test" not in table
    assert "2 properties added after the trial ended are not listed" in html
    assert Decimal("14.00") == converted.total
