"""Why the engine refused a request. Every message is fit to show the person who asked as it is."""

from django.core.exceptions import PermissionDenied


class BillingError(Exception):
    """A refused billing request. The message is fit to show a customer."""


class LimitExceeded(BillingError):
    """The account does not fit the target plan's limits (DWN-3)."""


class PaymentDeclined(BillingError):
    """The charge was declined; nothing changed (UPG-4)."""

    def __init__(self, message: str, code: str = "card_declined"):
        super().__init__(message)
        self.code = code


class NotEligible(BillingError):
    """Not allowed for this account now (TRI-2, UPG-7, no payment method, ...). `matched_account`
    is the other account a trial refusal matched (TRI-2), for staff to see."""

    def __init__(self, message: str, *, matched_account=None):
        super().__init__(message)
        self.matched_account = matched_account


class PaymentMethodRequired(NotEligible):
    """PAY-6: the request would lead to a charge and the account has no way to pay (no card on
    file); the page offers a link to add one."""


class InvalidChange(BillingError):
    """The request makes no sense for the subscription as it is."""


class QuoteChanged(InvalidChange):
    """PAY-3: the amount due now differs from the one the customer confirmed; nothing changed."""

    def __init__(self, message: str, quote):
        super().__init__(message)
        self.quote = quote


class PaymentPending(BillingError):
    """The gateway's answer was lost and it cannot tell yet; settled later, never charged twice."""


class NotPermitted(BillingError, PermissionDenied):
    """The acting staff user lacks the permission for this decision (REF-5, ACC-2)."""
