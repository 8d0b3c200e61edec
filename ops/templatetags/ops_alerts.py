from django import template

from ops.ledger import latest_failure

register = template.Library()


@register.simple_tag
def ledger_failure():
    """The newest ledger check when it found breaches (OPS-2), for the admin index's banner."""
    return latest_failure()
