"""The changelists are made for large tables: a fixed number of queries per page whatever the number
of rows, no full count, and one search box for account name, owner e-mail, invoice number and
tracking tag. (Timings with a million invoices: bench/admin_lists.py, docs/performance.md.)"""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import Property
from invoices.models import Invoice, InvoiceKind, InvoiceStatus
from subscriptions.models import Subscription
from tests.factories import AccountFactory, PropertyFactory, UserFactory

from .conftest import at

pytestmark = pytest.mark.django_db

# Session, user, the user's permissions (2), the current-account context processor, the capped count
# and the page itself, plus the plan filter's choices on subscriptions. It must not grow with rows.
QUERY_BUDGET = 9


def make_rows(n: int):
    accounts = [AccountFactory(name=f"Customer {i:03d}", owner=UserFactory(username=f"owner{i:03d}@example.test"))
                for i in range(n)]
    Invoice.objects.bulk_create(
        Invoice(account=a, subscription=a.subscriptions.first(), number=f"2025-{i + 1:06d}",
                kind=InvoiceKind.RENEWAL, status=InvoiceStatus.PAID, total=Decimal("14.00"),
                amount_paid=Decimal("14.00"), subtotal=Decimal("14.00"), issued_at=at("2026-04-01"),
                paid_at=at("2026-04-01"), created_at=at("2026-04-01"))
        for i, a in enumerate(accounts)
    )
    return accounts


LISTS = [
    "/admin/invoices/invoice/",
    "/admin/invoices/invoice/?status__exact=paid&kind__exact=renewal",
    "/admin/invoices/invoice/?q=Customer",
    "/admin/subscriptions/subscription/",
    "/admin/subscriptions/subscription/?status__exact=active&cycle__exact=monthly",
    "/admin/subscriptions/subscription/?q=%40example.test",
]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("rows", [5, 50])
def test_changelists_use_a_fixed_number_of_queries_per_page(url, rows, support_client, django_assert_max_num_queries,
                                                            clock, catalog):
    """Speed: each staff list page (invoices, subscriptions; filtered or searched) takes at most QUERY_BUDGET queries,
    with 5 rows or 50."""
    make_rows(rows)
    with clock("2026-04-10"):
        support_client.get(url)  # warm the caches that are per process, not per request
        with django_assert_max_num_queries(QUERY_BUDGET):
            response = support_client.get(url)
    assert response.status_code == 200
    assert response.context["cl"].result_count == rows
    assert len(response.context["cl"].result_list) == rows


def test_big_lists_are_never_counted_in_full(support_client, clock, catalog, monkeypatch):
    """Speed: a list longer than the paginator's cap is not counted in full (it stops at cap + 1) and says 'More than 3
    invoices'."""
    from core.admin_base import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "cap", 3)
    make_rows(5)
    with clock("2026-04-10"):
        response = support_client.get("/admin/invoices/invoice/")
    assert response.context["cl"].result_count == 4  # stops counting past the cap
    assert "More than 3 invoices" in response.content.decode()


def test_search_by_account_name_owner_email_invoice_number_and_tracking_tag(support_client, clock, catalog):
    """Staff find invoices with one search box (account name, owner e-mail, invoice number, tracking tag, #account id),
    subscriptions by invoice number and accounts by tracking tag."""
    accounts = make_rows(3)
    tagged = PropertyFactory(account=accounts[2])
    cases = {
        "Customer 001": {"2025-000002"},
        "owner002@example.test": {"2025-000003"},
        "2025-000001": {"2025-000001"},
        tagged.tracking_tag: {"2025-000003"},
        f"#{accounts[1].pk}": {"2025-000002"},
    }
    with clock("2026-04-10"):
        for term, numbers in cases.items():
            response = support_client.get(reverse("admin:invoices_invoice_changelist"), {"q": term})
            assert {i.number for i in response.context["cl"].result_list} == numbers, term
        subs = support_client.get(reverse("admin:subscriptions_subscription_changelist"), {"q": "2025-000002"})
        assert [s.account for s in subs.context["cl"].result_list] == [accounts[1]]
        accts = support_client.get(reverse("admin:accounts_account_changelist"), {"q": tagged.tracking_tag})
        assert [a.name for a in accts.context["cl"].result_list] == ["Customer 002"]
    assert Property.objects.count() == 1 and Subscription.objects.count() == 3


def test_lists_filter_by_status_plan_cycle_and_date(support_client, clock, catalog):
    """Staff filter subscriptions by cycle and plan, invoices by kind and issue date, accounts by current plan (the
    status filter is only exercised by the query-count test)."""
    from subscriptions import billing

    accounts = make_rows(2)
    billing.set_payment_method(accounts[0], "pm_card_visa", now=at("2026-04-01"))
    billing.subscribe(accounts[0], "personal", "yearly", now=at("2026-04-01"))
    with clock("2026-04-10"):
        yearly = support_client.get("/admin/subscriptions/subscription/?cycle__exact=yearly"
                                    f"&plan__id__exact={catalog['personal'].pk}")
        assert [s.account for s in yearly.context["cl"].result_list] == [accounts[0]]
        this_month = support_client.get("/admin/invoices/invoice/?kind__exact=subscription"
                                        "&issued_at__gte=2026-04-01+00:00:00%2B00:00&issued_at__lt=2026-05-01+00:00:00%2B00:00")
        assert [i.kind for i in this_month.context["cl"].result_list] == ["subscription"]
        on_plan = support_client.get("/admin/accounts/account/?plan=personal")
        assert [a.name for a in on_plan.context["cl"].result_list] == ["Customer 000"]
