from django import forms
from django.contrib.auth.password_validation import validate_password

from .domains import DomainError, domain_clean


class SignUpForm(forms.Form):
    account_name = forms.CharField(max_length=200, label="Company or account name")
    email = forms.EmailField(label="E-mail")
    password = forms.CharField(widget=forms.PasswordInput, label="Password", min_length=8)
    # D-5: the browser's time zone (filled in by the page's script), the billing time zone's default.
    # Not an error when missing or unknown: the account is then on UTC, and the owner can choose.
    timezone = forms.CharField(widget=forms.HiddenInput, required=False, max_length=64)

    def clean_password(self):
        password = self.cleaned_data["password"]
        validate_password(password)
        return password


class PropertyForm(forms.Form):
    name = forms.CharField(max_length=200)
    domain = forms.CharField(max_length=300, help_text="For example: example.com")

    def clean_domain(self):
        try:
            return domain_clean(self.cleaned_data["domain"])
        except DomainError as exc:
            raise forms.ValidationError(str(exc)) from None
