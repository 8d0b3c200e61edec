"""PAY-5 through Stripe (localstripe): removing the card on file detaches it at Stripe, outside any
transaction, and only when no charge needs it."""

import pytest
import stripe

from invoices.models import PaymentMethod
from tests.stripe.conftest import SECRET_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(localstripe, catalog):
    from tests.factories import AccountFactory

    return AccountFactory()


def test_pay5_removing_the_card_detaches_it_at_stripe(account):
    from subscriptions import billing

    method = billing.set_payment_method(account, "pm_card_visa")
    account.refresh_from_db()
    assert stripe.PaymentMethod.retrieve(method.gateway_id, api_key=SECRET_KEY).customer == account.gateway_customer_id

    billing.payment_method_remove(account)

    assert stripe.PaymentMethod.retrieve(method.gateway_id, api_key=SECRET_KEY).customer is None
    method.refresh_from_db()
    assert method.detached_at is not None and not method.is_default
    assert not PaymentMethod.objects.filter(account=account, is_default=True).exists()


def test_pay5_a_card_a_subscription_needs_stays_at_stripe(account):
    from subscriptions import billing

    method = billing.set_payment_method(account, "pm_card_visa")
    account.refresh_from_db()
    billing.subscribe(account, "personal")
    with pytest.raises(billing.NotEligible, match="is made with this card"):
        billing.payment_method_remove(account)
    assert stripe.PaymentMethod.retrieve(method.gateway_id, api_key=SECRET_KEY).customer == account.gateway_customer_id
