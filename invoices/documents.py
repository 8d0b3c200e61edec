"""What an issued invoice and credit note print of the facts frozen at their issue (INV-6, TAX-1):
the seller's block, the calendar of their dates, their tax label. Shared by both models."""

from accounts.countries import country_name
from accounts.vat import is_eu
from core import zones
from core.seller import Seller

from . import tax_rules


def seller_rows(who: Seller) -> list[str]:
    """The seller's address, country by its ISO name, tax ID, registration and support address (TAX-1)."""
    rows = [*who.address_lines]
    if who.country:
        rows.append(country_name(who.country))
    if who.tax_id:
        rows.append(f"{'VAT ID' if is_eu(who.country) else 'Tax ID'} {who.tax_id}")
    if who.registration:
        rows.append(who.registration)
    if who.support_email:
        rows.append(who.support_email)
    return rows


class IssuedDocument:
    """What an invoice and a credit note show of their tax (`tax_treatment`, `tax_rate`), and the
    facts frozen at their issue that are not amounts (INV-6): the seller (`seller`) and the calendar
    their dates are printed on (`timezone`)."""

    @property
    def issued_by_seller(self) -> Seller:
        """The seller as configured when the document was issued (INV-6), never the settings now."""
        return Seller.from_record(self.seller)

    @property
    def seller_rows(self) -> list[str]:
        """The seller's block under its name, as the page, the PDF and the admin print it."""
        return seller_rows(self.issued_by_seller)

    @property
    def zone(self):
        """The calendar every date of the document is printed on: the account's billing time zone at
        issue (INV-6, D-5); a later change of the account's zone moves nothing."""
        return zones.zone(self.timezone)

    @property
    def shows_tax(self) -> bool:
        """Tax lines appear on the document; a seller outside the EU shows none (TAX-3)."""
        return self.tax_treatment != tax_rules.NONE

    @property
    def tax_label(self) -> str:
        return f"VAT {tax_rules.percent(self.tax_rate)}"
