"""The seller's block (TAX-1) on the invoice and credit-note pages, as the PDFs print it."""

from django import template

from core.seller import seller

from ..pdf import seller_rows

register = template.Library()


@register.inclusion_tag("invoices/_seller.html")
def seller_block():
    who = seller()
    return {"seller": who, "rows": seller_rows(who)}
