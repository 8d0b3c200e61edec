"""The seller's block (TAX-1) on the invoice and credit-note pages, as the PDFs print it: the seller
the document was issued by (INV-6), not the one configured now."""

from django import template

register = template.Library()


@register.inclusion_tag("invoices/_seller.html")
def seller_block(document):
    return {"seller": document.issued_by_seller, "rows": document.seller_rows}
