"""Small things testers saw on the customer pages (issue 14): a styled 403 that says what to do,
the support contact on every page and in every suspension banner, properties that say they do not
track while the account is suspended (SUS-1), a favicon, plain wording on the e-mail settings, and
one spelling per status as customers read it."""

from django.contrib.staticfiles import finders
from django.test import Client
from django.urls import reverse

from accounts.models import Membership, Role
from subscriptions import billing, scheduler
from subscriptions.models import RequestStatus, Status
from tests.factories import PropertyFactory, UserFactory

from .conftest import at, current, login


def _text(response) -> str:
    return response.content.decode()


def test_acc2_staff_opening_the_billing_page_get_a_styled_page_that_points_to_the_back_office(catalog):
    staff = UserFactory(username="support@prorata.test", is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get(reverse("billing:overview"))
    html = _text(response)
    assert response.status_code == 403
    assert '<link rel="stylesheet" href="/static/css/prorata.css">' in html  # the site's page, not a bare one
    assert "Your user does not belong to an account." in html and "Staff work in the back office" in html
    assert '<a class="btn" href="/admin/">Open the back office</a>' in html


def test_acc1_a_member_refused_a_page_reads_why_and_the_way_back(account, member_user):
    response = login(member_user).get(reverse("billing:plans"))
    html = _text(response)
    assert response.status_code == 403
    assert "Your role does not allow this. Ask the account owner." in html
    assert f"Your role in {account.name} does not include this." in html
    assert 'href="/billing/">Back to billing</a>' in html


def test_sus1_the_support_contact_is_on_the_billing_pages(account, client_owner, settings):
    settings.SELLER_SUPPORT_EMAIL = "help@seller.example"
    for name in ("billing:overview", "billing:usage", "billing:payment_method", "invoices:list"):
        html = _text(client_owner.get(reverse(name)))
        assert 'Write to <a href="mailto:help@seller.example">help@seller.example</a>.' in html, name


def _suspended_for_non_payment(account, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    billing.set_payment_method(account, "pm_card_chargeCustomerFail")
    scheduler.run(now=at("2026-04-30T01:00"))
    for day in (1, 3, 5, 7):
        scheduler.run(now=at(f"2026-05-0{day}T01:01"))
    travel("2026-05-08")
    account.refresh_from_db()
    assert account.is_suspended


def test_sus1_every_suspension_banner_gives_the_support_contact(account, client_owner, travel, settings):
    settings.SELLER_SUPPORT_EMAIL = "help@seller.example"
    _suspended_for_non_payment(account, travel)
    for name in ("billing:overview", "accounts:properties"):
        banner = _text(client_owner.get(reverse(name))).split('id="suspension-banner"')[1].split("</div>\n")[1]
        assert "our support team at" in banner and "mailto:help@seller.example" in banner, name


def test_sus1_properties_of_a_suspended_account_say_they_are_not_tracking_and_why(account, client_owner, travel):
    site = PropertyFactory(account=account, name="Shop")
    html = _text(client_owner.get(reverse("accounts:properties")))
    assert '<span class="badge ok">Active</span>' in html and "Not tracking" not in html
    _suspended_for_non_payment(account, travel)
    html = _text(client_owner.get(reverse("accounts:properties")))
    row = html.split(f"<td>{site.name}</td>")[1].split("</tr>")[0]
    assert '<span class="badge bad">Not tracking</span>' in row and '<span class="badge ok">' not in row
    assert "suspended because the last payment retry failed; your properties have stopped tracking" in html
    assert "Update your payment method" in html


def test_favicon_is_a_static_file_linked_from_every_page_and_at_the_root(account, client_owner):
    """A favicon: static files (whitenoise serves them), linked in the page head, and /favicon.ico
    (which browsers and the admin ask for) redirects to it."""
    icon = finders.find("favicon.ico")
    with open(icon, "rb") as handle:
        assert handle.read(4) == b"\x00\x00\x01\x00"  # an ICO file
    assert finders.find("favicon.svg")
    html = _text(client_owner.get(reverse("billing:overview")))
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    response = Client().get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/favicon.ico"


def test_not2_the_email_settings_say_plainly_what_the_switches_do(account, client_owner):
    html = _text(client_owner.get(reverse("billing:email_settings")))
    assert "Send us these e-mails" not in html
    assert "<legend>Which optional e-mails do you want from us?</legend>" in html


def test_statuses_have_one_spelling_as_customers_read_them(account, client_owner, travel):
    """British "cancelled" everywhere (as in every message of the product), "Pending review" for both
    kinds of request."""
    assert Status.CANCELED.label == "Cancelled" and RequestStatus.PENDING.label == "Pending review"
    travel("2026-04-01")
    billing.start_trial(account, "personal", "monthly")
    client_owner.post(reverse("billing:cancel"), {"reason": ""})
    html = _text(client_owner.get(reverse("billing:overview")))
    assert current(account).status == "canceled"
    assert ">Cancelled</span>" in html and "Canceled" not in html


def test_upg3_a_restore_request_reads_pending_review_like_a_refund_request(account, client_owner, travel):
    travel("2026-04-01")
    billing.subscribe(account, "personal", "monthly")
    travel("2026-04-16")
    billing.change_plan(current(account), "advanced", "yearly")
    client_owner.post(reverse("billing:restore_request"))
    html = _text(client_owner.get(reverse("billing:requests")))
    assert "<td>Restore 15 days</td><td>Pending review</td>" in html


def test_acc1_the_owner_membership_still_sees_everything(account, owner):
    """The 403 page is only for refusals: the owner's own pages are unchanged."""
    assert Membership.objects.get(user=owner).role == Role.OWNER
    for name in ("billing:overview", "billing:plans", "billing:usage", "invoices:list"):
        assert login(owner).get(reverse(name)).status_code == 200
