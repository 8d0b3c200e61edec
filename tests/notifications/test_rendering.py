"""Every e-mail renders with no unresolved template variable; the HTML is written to
tests/artifacts/emails/ (git-ignored) for a look in a browser."""

from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from core import events
from core.events import KINDS
from invoices import services as ledger
from invoices.models import CreditNoteKind, Invoice, RefundRequest
from notifications.kinds import NOTIFICATIONS, PRODUCT_NEWS
from notifications.models import EmailLog, ProductNews
from notifications.services import product_news_send
from subscriptions import billing
from subscriptions.models import RestoreRequest
from tests.factories import PropertyFactory

from .conftest import at

pytestmark = pytest.mark.django_db
ARTIFACTS = Path(django_settings.BASE_DIR) / "tests" / "artifacts" / "emails"
MARKER = "UNRESOLVED-VARIABLE"
ISO = "2026-05-01T00:00:00+00:00"

# (artifact name, kind, data) with "{sub}", "{invoice}", ... filled in from the rows below.
VARIANTS = [
    ("trial_started", "trial.started", {"subscription_id": "{sub}", "plan": "personal", "trial_end": ISO}),
    ("trial_ending_soon", "trial.ending_soon",
     {"subscription_id": "{sub}", "plan": "personal", "trial_end": ISO, "amount": "14.00"}),
    ("trial_converted", "trial.converted",
     {"subscription_id": "{sub}", "plan": "personal", "invoice_id": "{invoice}", "amount": "14.00"}),
    ("trial_canceled", "trial.canceled", {"subscription_id": "{sub}", "plan": "personal", "trial_end": ISO}),
    ("subscription_started", "subscription.started",
     {"subscription_id": "{sub}", "plan": "personal", "cycle": "monthly", "invoice_id": "{invoice}",
      "amount": "14.00"}),
    ("subscription_upgraded", "subscription.upgraded",
     {"subscription_id": "{sub}", "from_plan": "personal", "to_plan": "advanced", "cycle": "monthly",
      "invoice_id": "{invoice}", "amount": "7.50"}),
    ("subscription_trial_plan_changed", "subscription.trial_plan_changed",
     {"subscription_id": "{sub}", "from_plan": "personal", "to_plan": "advanced", "trial_end": ISO}),
    ("downgrade_scheduled", "downgrade.scheduled",
     {"subscription_id": "{sub}", "from_plan": "advanced", "to_plan": "personal", "to_cycle": "monthly",
      "effective_at": ISO}),
    ("downgrade_applied_paused", "downgrade.applied",
     {"subscription_id": "{sub}", "from_plan": "advanced", "to_plan": "personal",
      "paused_properties": ["Blog", "Forum"]}),
    ("downgrade_applied_fits", "downgrade.applied",
     {"subscription_id": "{sub}", "from_plan": "advanced", "to_plan": "personal", "paused_properties": []}),
    ("cancellation_scheduled", "cancellation.scheduled",
     {"subscription_id": "{sub}", "plan": "personal", "effective_at": ISO}),
    ("cancellation_effective", "cancellation.effective",
     {"subscription_id": "{sub}", "plan": "personal", "paused_properties": ["{property}"]}),
    ("subscription_resumed_cancellation", "subscription.resumed",
     {"subscription_id": "{sub}", "plan": "personal", "what": "cancellation"}),
    ("subscription_resumed_downgrade", "subscription.resumed",
     {"subscription_id": "{sub}", "plan": "personal", "what": "downgrade"}),
    ("subscription_resumed_trial", "subscription.resumed",
     {"subscription_id": "{sub}", "plan": "personal", "what": "trial"}),
    ("add_on_bought", "add_on.changed",
     {"subscription_id": "{sub}", "quantity": 2, "invoice_id": "{invoice}", "amount": "40.00", "effective_at": ISO}),
    ("add_on_lowered", "add_on.changed",
     {"subscription_id": "{sub}", "quantity": 1, "invoice_id": None, "amount": "0.00", "effective_at": ISO}),
    ("payment_succeeded", "payment.succeeded",
     {"invoice_id": "{renewal}", "payment_id": "{payment}", "amount": "14.00"}),
    ("payment_failed_retry", "payment.failed",
     {"invoice_id": "{renewal}", "payment_id": "{payment}", "amount": "14.00",
      "decline_message": "Your card has insufficient funds.", "next_retry_at": ISO}),
    ("payment_failed_last", "payment.failed",
     {"invoice_id": "{renewal}", "payment_id": "{payment}", "amount": "14.00",
      "decline_message": "Your card was declined.", "next_retry_at": None}),
    ("account_suspended_non_payment", "account.suspended", {"reason": "non_payment", "note": ""}),
    ("account_suspended_policy", "account.suspended", {"reason": "policy_violation", "note": "Spam"}),
    ("account_suspended_trial", "account.suspended", {"reason": "cancelled_trial", "note": ""}),
    ("account_reactivated", "account.reactivated", {"previous_reason": "non_payment", "note": "Paid"}),
    ("renewal_upcoming", "renewal.upcoming",
     {"subscription_id": "{sub}", "plan": "personal", "amount": "134.40", "renews_at": ISO}),
    ("refund_approved", "refund.decided",
     {"refund_request_id": "{refund}", "approved": True, "amount": "14.00", "reason": ""}),
    ("refund_rejected", "refund.decided",
     {"refund_request_id": "{refund}", "approved": False, "amount": "14.00", "reason": "Tracked 5,000 sessions"}),
    ("restore_approved", "restore.decided",
     {"restore_request_id": "{restore}", "approved": True, "days": 15, "period_end": ISO, "reason": ""}),
    ("restore_rejected", "restore.decided",
     {"restore_request_id": "{restore}", "approved": False, "days": 15, "period_end": ISO, "reason": "Too late"}),
    ("credit_note_issued", "credit_note.issued",
     {"credit_note_id": "{credit_note}", "amount": "7.50", "reason": "Unused Advanced days"}),
    ("usage_alert_80", "usage.alert",
     {"threshold": 80, "month": "2026-04", "sessions": 8000, "sessions_included": 10000}),
    ("usage_alert_100", "usage.alert",
     {"threshold": 100, "month": "2026-04", "sessions": 10000, "sessions_included": 10000}),
    ("period_extended", "period.extended",
     {"subscription_id": "{sub}", "days": 3, "period_end": ISO, "reason": "Tracking outage"}),
]


def test_every_event_kind_has_a_rendering_variant():
    """NOT-1: every event kind has an e-mail notification, and a rendering case in
    VARIANTS so that none goes untested."""
    assert {kind for _name, kind, _data in VARIANTS} == set(KINDS)
    assert set(NOTIFICATIONS) == set(KINDS) | {PRODUCT_NEWS}


@pytest.fixture
def rows(account, committed):
    """Rows as the engine makes them: a paid subscription, a renewal, a credit note, requests."""
    with committed():
        sub = billing.subscribe(account, "personal", now=at("2026-04-01"))
    invoice = Invoice.objects.get(account=account)
    renewal = ledger.invoice_create(
        account=account, subscription=sub, kind="renewal", currency="USD", now=at("2026-04-30"),
        lines=[ledger.Line("Personal (monthly), 2026-05-01 to 2026-06-01", Decimal("14.00"))],
        period_start=at("2026-05-01"), period_end=at("2026-06-01"),
    )
    ledger.invoice_issue(renewal, now=at("2026-04-30"))
    note = ledger.credit_note_issue(account=account, invoice=invoice, kind=CreditNoteKind.DOWNGRADE,
                                    amount=Decimal("7.50"), reason="Unused Advanced days", now=at("2026-04-16"),
                                    computation="($29.00 \u2212 $14.00) \u00d7 15/30 days = $7.50")
    refund = RefundRequest.objects.create(account=account, invoice=invoice)
    restore = RestoreRequest.objects.create(subscription=sub, invoice=invoice, days=15,
                                            upgraded_on=at("2026-04-16").date())
    prop = PropertyFactory(account=account, name="Shop", domain="shop.example.com")
    EmailLog.objects.all().delete()
    return {"sub": sub.pk, "invoice": invoice.pk, "renewal": renewal.pk, "payment": invoice.payments.first().pk,
            "credit_note": note.pk, "refund": refund.pk, "restore": restore.pk, "property": prop.pk}


def fill(value, rows):
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return rows[value[1:-1]]
    if isinstance(value, list):
        return [fill(v, rows) for v in value]
    return value


@pytest.fixture
def strict_templates(settings):
    settings.TEMPLATES = [
        {**settings.TEMPLATES[0], "OPTIONS": {**settings.TEMPLATES[0]["OPTIONS"], "string_if_invalid": MARKER}}
    ]


def check_and_save(name: str, entry: EmailLog) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.html").write_text(entry.body_html, encoding="utf-8")
    (ARTIFACTS / f"{name}.txt").write_text(f"Subject: {entry.subject}\n\n{entry.body_text}", encoding="utf-8")
    for part in (entry.subject, entry.body_text, entry.body_html):
        assert MARKER not in part, name
        assert "None" not in part, name
    assert entry.body_html.lstrip().startswith("<!doctype html>")
    assert "http://127.0.0.1:8000/billing/" in entry.body_html or django_settings.SITE_URL in entry.body_html
    assert "Hello Acme Analytics" in entry.body_text


@pytest.mark.parametrize("name,kind,data", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_each_html_email_renders_with_no_unresolved_variable(name, kind, data, rows, committed, strict_templates):
    """NOT-1: each event's e-mail renders in full: no unresolved variable or 'None', an HTML document linking to the
    billing page, greeting the account."""
    with committed():
        events.emit(kind, EmailLog._meta.apps.get_model("accounts", "Account").objects.get().pk,
                    now=at("2026-04-20"), **{k: fill(v, rows) for k, v in data.items()})

    entry = EmailLog.objects.filter(kind=kind).first()
    assert entry is not None, f"{kind} sent nothing"
    check_and_save(name, entry)


def test_product_news_renders_with_no_unresolved_variable(account, committed, strict_templates):
    """The product-news e-mail renders in full like the billing ones: no unresolved variable or 'None'."""
    news = ProductNews.objects.create(subject="Funnels are here", body="Track funnels.\n\nSee the docs.")
    with committed():
        product_news_send(news, now=at("2026-04-20"))

    check_and_save("product_news", EmailLog.objects.get(kind=PRODUCT_NEWS))
