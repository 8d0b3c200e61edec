from .seller import seller as configured_seller


def seller(request):
    """The seller for every template: the support contact in the footer and the suspension banners
    (issue 14), read once from the settings (TAX-1)."""
    return {"seller": configured_seller()}
