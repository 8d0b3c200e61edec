"""The account-aware admin base shared by the back-office admins (accounts, plans, subscriptions,
invoices): one search box that recognises what was typed (an invoice number, a credit-note number,
a tracking tag, an e-mail address or an account name) and turns it into one indexed lookup instead
of OR-ing LIKEs across joins. The app-independent pieces (paginator, read-only bases, links) are
in core.admin_base.
"""

import re

from django.contrib import admin

from accounts.models import Account, Membership, Property, Role, normalise_email
from core.admin_base import CappedCountPaginator, ReadOnlyMixin
from invoices.models import CreditNote, Invoice

INVOICE_NUMBER = re.compile(r"^\d{4}-\d{6}$")
CREDIT_NOTE_NUMBER = re.compile(r"^CN-\d{4}-\d{6}$", re.IGNORECASE)
TRACKING_TAG = re.compile(r"^PR-[\w-]{4,}$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
SEARCH_HELP = ("Account name, owner e-mail, invoice number (2026-000123), credit note (CN-2026-000012), "
               "tracking tag (PR-…) or #account id.")


MATCH_LIMIT = 1000


def account_ids_matching(term: str):
    """The accounts `term` designates: a list of primary keys when there are few (so the big table is
    searched through its account index), else a subquery; None when `term` is empty."""

    term = term.strip()
    if not term:
        return None
    if term.startswith("#") and term[1:].isdigit():
        return [int(term[1:])]
    if INVOICE_NUMBER.match(term):
        matches = Invoice.objects.filter(number=term).values_list("account_id", flat=True)
    elif CREDIT_NOTE_NUMBER.match(term):
        matches = CreditNote.objects.filter(number=term.upper()).values_list("account_id", flat=True)
    elif TRACKING_TAG.match(term):
        matches = Property.objects.filter(tracking_tag=term).values_list("account_id", flat=True)
    elif "@" in term:
        full = EMAIL.match(term)
        owners = Membership.objects.filter(role=Role.OWNER).values_list("account_id", flat=True)
        if full:
            # Sign-up stores the lower-cased address as the username too: its unique index answers
            # at once; only addresses changed since then need the slower case-insensitive scan.
            exact = list(owners.filter(user__username=term.lower())[:MATCH_LIMIT])
            if exact:
                return sorted(set(exact) | set(
                    Account.objects.filter(identity_email=normalise_email(term)).values_list("pk", flat=True)))
        owners = owners.filter(**{"user__email__iexact" if full else "user__email__icontains": term})
        same_person = Account.objects.filter(identity_email=normalise_email(term)).values_list("pk", flat=True)
        found = list(owners[: MATCH_LIMIT + 1])
        if len(found) > MATCH_LIMIT:
            return owners
        return sorted(set(found) | set(same_person)) if full else found
    else:
        matches = Account.objects.filter(name__icontains=term).values_list("pk", flat=True)
    found = list(matches[: MATCH_LIMIT + 1])
    return found if len(found) <= MATCH_LIMIT else matches


class BackOfficeAdmin(admin.ModelAdmin):
    """Defaults for every back-office admin: no full counts, smart account search."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    # Path from the model to its Account ("pk" on Account itself); None: search the model's own fields.
    account_path: str | None = "account"
    search_fields = ("pk",)  # shows the search box; get_search_results does the work
    search_help_text = SEARCH_HELP
    # Lookups used by the account page's links (e.g. subscription__account__id__exact).
    extra_lookups: tuple[str, ...] = ()

    def own_search(self, queryset, term: str):
        """A model's own identifier (an invoice number on invoices); None: search by account."""
        return None

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        own = self.own_search(queryset, term)
        if own is not None:
            return own, False
        if self.account_path is None:
            return super().get_search_results(request, queryset, search_term)
        ids = account_ids_matching(term)
        lookup = "pk__in" if self.account_path == "pk" else f"{self.account_path}__in"
        return queryset.filter(**{lookup: ids}), False

    def lookup_allowed(self, lookup, value, request=None):
        if lookup in self.extra_lookups:
            return True
        return super().lookup_allowed(lookup, value, request)


class ReadOnlyAdmin(ReadOnlyMixin, BackOfficeAdmin):
    """Issued money records and the audit log never change here (INV-2, ACC-3)."""
