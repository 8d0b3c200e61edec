"""NOT-3: staff see every e-mail per account, read-only; NOT-2: staff send product news."""

import pytest
from django.core import mail

from notifications.models import EmailLog, EmailStatus, ProductNews
from subscriptions import billing
from tests.factories import UserFactory

from .conftest import OWNER, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(username="staff@prorata.test", is_staff=True, is_superuser=True))
    return client


def test_not3_staff_find_an_accounts_emails_by_kind_status_and_recipient(account, committed, staff_client):
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))

    by_account = staff_client.get(f"/admin/notifications/emaillog/?account__id__exact={account.pk}")
    by_filters = staff_client.get("/admin/notifications/emaillog/?kind=trial.started&status=sent")
    by_search = staff_client.get("/admin/notifications/emaillog/?q=Acme")

    for response in (by_account, by_filters, by_search):
        assert response.status_code == 200
        assert OWNER in response.content.decode()


def test_not3_email_log_is_read_only(account, committed, staff_client):
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))
    entry = EmailLog.objects.get(recipient=OWNER)

    page = staff_client.get(f"/admin/notifications/emaillog/{entry.pk}/change/")
    post = staff_client.post(f"/admin/notifications/emaillog/{entry.pk}/change/", {"recipient": "x@example.com"})
    add = staff_client.get("/admin/notifications/emaillog/add/")
    delete = staff_client.post(f"/admin/notifications/emaillog/{entry.pk}/delete/", {"post": "yes"})

    assert page.status_code == 200 and "Your Personal trial has started" in page.content.decode()
    assert (post.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    entry.refresh_from_db()
    assert entry.recipient == OWNER


def test_not3_staff_retry_a_failed_email_from_the_admin(account, committed, staff_client, settings):
    settings.EMAIL_BACKEND = "tests.notifications.backends.FailingBackend"
    with committed():
        billing.start_trial(account, "personal", now=at("2026-04-01"))
    entry = EmailLog.objects.get(recipient=OWNER)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    response = staff_client.post("/admin/notifications/emaillog/",
                                 {"action": "retry_now", "_selected_action": [entry.pk]}, follow=True)

    assert "Sent 1" in response.content.decode()
    entry.refresh_from_db()
    assert entry.status == EmailStatus.SENT and [m.to for m in mail.outbox] == [[OWNER]]


def test_not2_staff_send_product_news_to_opted_in_owners_from_the_admin(account, staff_client,
                                                                        django_capture_on_commit_callbacks):
    staff_client.post("/admin/notifications/productnews/add/", {"subject": "Funnels are here", "body": "Try them."})
    news = ProductNews.objects.get()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post("/admin/notifications/productnews/",
                                     {"action": "send_news", "_selected_action": [news.pk]}, follow=True)

    assert "queued to 1 owners" in response.content.decode()
    news.refresh_from_db()
    assert news.sent_at is not None and news.recipients_count == 1 and news.created_by.is_staff
    assert [m.to for m in mail.outbox] == [[OWNER]]
