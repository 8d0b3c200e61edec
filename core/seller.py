"""The seller (TAX-1): who issues the invoices, as configured once in the settings. An invoice or a
credit note keeps the seller as configured when it was issued (INV-6: `seller_record`, stored on the
document; `Seller.from_record` reads it back); the billing pages and e-mails read the current one."""

import re
from dataclasses import asdict, dataclass, fields

from django.conf import settings

# A line break in SELLER_ADDRESS: a real one, or the two characters backslash and n, as an env file
# spells it (the README says "lines separated by \n"; environ reads it verbatim).
LINE_BREAK = re.compile(r"\r\n|\r|\n|\\n")


def address_lines(address: str) -> list[str]:
    r"""The lines of a postal address, without blank ones.

    >>> address_lines("1 Market Street\\nSan Francisco"), address_lines("1 Market Street\nSan Francisco")
    (['1 Market Street', 'San Francisco'], ['1 Market Street', 'San Francisco'])
    """
    return [line.strip() for line in LINE_BREAK.split(address or "") if line.strip()]


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
        return address_lines(self.address)

    def record(self) -> dict:
        """As stored on an issued document (INV-6)."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict | None) -> "Seller":
        """The seller a document was issued by, from its stored record."""
        record = record or {}
        return cls(**{f.name: str(record.get(f.name) or "") for f in fields(cls)})


def seller() -> Seller:
    return Seller(name=settings.SELLER_NAME, address=settings.SELLER_ADDRESS, country=settings.SELLER_COUNTRY,
                  tax_id=settings.SELLER_TAX_ID, registration=settings.SELLER_REGISTRATION,
                  support_email=settings.SELLER_SUPPORT_EMAIL)


def seller_record() -> dict:
    """The seller as configured now, to store on a document at its issue (INV-6); the default of the
    documents' `seller` column, so every document is created with it."""
    return seller().record()
