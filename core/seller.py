"""The seller (TAX-1): who issues the invoices, as configured once in the settings. Invoices, credit
notes, e-mails and the billing pages read it here."""

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Seller:
    name: str
    address: str
    country: str  # ISO 3166-1 alpha-2
    tax_id: str
    registration: str
    support_email: str

    @property
    def address_lines(self) -> list[str]:
        return [line for line in self.address.splitlines() if line.strip()]


def seller() -> Seller:
    return Seller(name=settings.SELLER_NAME, address=settings.SELLER_ADDRESS, country=settings.SELLER_COUNTRY,
                  tax_id=settings.SELLER_TAX_ID, registration=settings.SELLER_REGISTRATION,
                  support_email=settings.SELLER_SUPPORT_EMAIL)
