"""Forms of the customer billing page. They validate input only; views call the engine."""

from decimal import Decimal

from django import forms

from accounts.countries import country_choices
from core import zones
from plans.models import Cycle

from .models import CancelReason

# PAY-1: Stripe's test payment-method tokens the sandbox gateway understands, and what each does.
SANDBOX_TOKENS = [
    ("pm_card_visa", "pm_card_visa: Visa •••• 4242, every charge succeeds"),
    ("pm_card_chargeDeclined", "pm_card_chargeDeclined: declined when attached"),
    ("pm_card_chargeDeclinedInsufficientFunds",
     "pm_card_chargeDeclinedInsufficientFunds: attaches; charges fail with insufficient funds"),
    ("pm_card_chargeCustomerFail", "pm_card_chargeCustomerFail: attaches; every charge is declined"),
]

MONEY = {"max_digits": 12, "decimal_places": 2, "min_value": Decimal("0")}


class PlanChoiceForm(forms.Form):
    """The plan and cycle a customer picked; used to ask the engine for a quote (PAY-3)."""

    plan = forms.SlugField(max_length=50)
    cycle = forms.ChoiceField(choices=Cycle.choices)


class PlanConfirmForm(PlanChoiceForm):
    """Carries exactly what was quoted: the confirm step re-quotes and refuses a different amount."""

    quoted_amount = forms.DecimalField(widget=forms.HiddenInput, **MONEY)


class ExtraPropertiesForm(forms.Form):
    quantity = forms.IntegerField(label="Extra properties", min_value=0, max_value=1000,
                                  help_text="The total number of extra properties you want, on top of your plan's.")


class ExtraPropertiesConfirmForm(ExtraPropertiesForm):
    quoted_amount = forms.DecimalField(widget=forms.HiddenInput, **MONEY)


class CancelForm(forms.Form):
    """CAN-5: the confirmation asks for an optional reason, a short list plus the owner's own words."""

    reason_code = forms.ChoiceField(
        label="Why are you cancelling? (optional)", required=False, widget=forms.RadioSelect,
        choices=[("", "I would rather not say"), *CancelReason.choices], initial="",
    )
    reason = forms.CharField(
        label="Anything else you want to tell us? (optional)", required=False, max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "aria-describedby": "reason-help"}),
        help_text="Only our staff read your answers. They help us improve.",
    )


class SandboxPaymentMethodForm(forms.Form):
    token = forms.ChoiceField(label="Test card", choices=SANDBOX_TOKENS, widget=forms.RadioSelect,
                              initial="pm_card_visa")


class CountryField(forms.ChoiceField):
    """A select of ISO 3166-1 countries; a posted code is accepted in any case ("de")."""

    def __init__(self, **kwargs):
        super().__init__(choices=[("", "(none)"), *country_choices()], **kwargs)

    def to_python(self, value):
        return super().to_python(value).strip().upper()


class BillingDetailsForm(forms.Form):
    """INV-4: shown on invoices issued from now on. The VAT ID is checked by the service
    (`accounts.preferences.billing_details_update`, TAX-4); PAY-5: the billing e-mail address."""

    company = forms.CharField(label="Company", max_length=200, required=False,
                              help_text="Printed on invoices instead of the account name when given.")
    address = forms.CharField(label="Address", required=False, max_length=1000,
                              widget=forms.Textarea(attrs={"rows": 3}))
    country = CountryField(label="Country", required=False)
    vat_id = forms.CharField(label="VAT ID", max_length=40, required=False,
                             help_text="EU businesses: with a valid VAT ID from another EU country than ours, "
                                       "invoices are reverse charged (0 % VAT).")
    billing_email = forms.EmailField(label="Billing e-mail address (optional)", required=False, max_length=254,
                                     help_text="Invoices and receipts also go to this address, e.g. your accounts "
                                               "department.")


class BillingZoneForm(forms.Form):
    """D-5: the billing time zone, an IANA zone grouped by area. Periods, trials and the dates on
    the billing page, invoices and e-mails follow its calendar, from the next period on."""

    timezone = forms.ChoiceField(
        label="Billing time zone", choices=zones.choices,
        help_text="Your periods renew at the same local time on the same day of the month in this zone. A change "
                  "applies from your next period: the current one still ends when it was due to.")


class EmailPreferencesForm(forms.Form):
    """NOT-2: non-billing e-mail kinds. Billing e-mail cannot be switched off (NOT-1)."""

    email_usage_alerts = forms.BooleanField(label="Usage alerts (at 80% and 100% of your monthly sessions)",
                                            required=False)
    email_product_news = forms.BooleanField(label="Product news", required=False)


class RefundRequestForm(forms.Form):
    message = forms.CharField(label="Anything we should know? (optional)", required=False, max_length=2000,
                              widget=forms.Textarea(attrs={"rows": 3}))
