"""ACC-2: staff work in the admin in two groups; everyone else is kept out."""

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import reverse

from accounts.groups import BILLING_MANAGERS, SUPPORT, ensure_staff_groups
from tests.factories import UserFactory

from .conftest import at, client_for, staff_member

pytestmark = pytest.mark.django_db


def codenames(group):
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_acc2_groups_have_their_permissions_and_setup_is_idempotent(groups):
    support, managers = codenames(groups[SUPPORT]), codenames(groups[BILLING_MANAGERS])
    assert {"accounts.suspend_account", "invoices.review_refund", "subscriptions.decide_restore"} <= support
    assert {"invoices.view_invoice", "invoices.view_creditnote", "accounts.view_auditevent",
            "notifications.view_emaillog", "subscriptions.view_subscription"} <= support
    assert not support & {"invoices.approve_refund", "invoices.refund_invoice", "subscriptions.downgrade_now",
                          "subscriptions.extend_period", "plans.create_custom_plan"}
    assert {"invoices.approve_refund", "invoices.refund_invoice", "subscriptions.downgrade_now",
            "subscriptions.extend_period", "plans.create_custom_plan", "invoices.view_invoice"} <= managers
    assert not {p for p in support | managers if p.split(".")[1].startswith(("add_", "change_", "delete_"))}
    before = {name: codenames(group) for name, group in groups.items()}
    ensure_staff_groups()
    assert Group.objects.filter(name__in=[SUPPORT, BILLING_MANAGERS]).count() == 2
    assert {name: codenames(Group.objects.get(name=name)) for name in before} == before


def test_acc2_a_user_without_staff_status_cannot_reach_the_admin(account):
    owner = account.owner
    client = client_for(owner)
    for url in ("/admin/", "/admin/invoices/invoice/", f"/admin/accounts/account/{account.pk}/change/",
                f"/admin/accounts/account/{account.pk}/suspend/", "/admin/accounts/account/trial-abuse/"):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith("/admin/login/"), url
    anonymous = client_for(UserFactory(username="nobody@else.test", is_active=False))
    assert anonymous.get("/admin/").status_code == 302


def test_acc2_staff_without_a_group_sees_nothing(account):
    client = client_for(staff_member("new@prorata.test"))
    assert client.get("/admin/invoices/invoice/").status_code == 403
    assert client.get(reverse("admin:accounts_account_suspend", args=[account.pk])).status_code == 403


def test_acc2_support_reads_every_back_office_list(support_client, clock):
    with clock("2026-04-10"):
        for model in admin.site._registry:
            if model._meta.app_label not in ("accounts", "plans", "subscriptions", "invoices", "notifications"):
                continue
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
            assert support_client.get(url).status_code == 200, url


def test_acc2_every_model_of_the_back_office_apps_has_an_admin():
    for label in ("accounts", "plans", "subscriptions", "invoices"):
        for model in apps.get_app_config(label).get_models():
            assert admin.site.is_registered(model), model


def test_acc2_billing_manager_buttons_differ_from_support(account, support_client, manager_client, clock):
    from subscriptions import billing

    billing.subscribe(account, "personal", now=at("2026-04-01"))
    page = reverse("admin:accounts_account_change", args=[account.pk])
    with clock("2026-04-10"):
        support_page = support_client.get(page).content.decode()
        manager_page = manager_client.get(page).content.decode()
    assert ">Suspend<" in support_page and "Downgrade now" not in support_page
    assert "Refund an invoice" not in support_page and "Custom plan" not in support_page
    assert "Downgrade now" in manager_page and "Extend period" in manager_page and "Refund an invoice" in manager_page
    assert ">Suspend<" not in manager_page
