"""INV-6: invoices and credit notes keep the seller and the calendar (time zone) they were issued with.

Existing rows, best effort: they get what they print today. The seller is the one configured when
this migration runs (the column's default is evaluated once for the rows already there; nothing
records an earlier configuration), the time zone is the account's now, and an invoice issued with
no billing details at all (an old row) gets the account's name, which its PDF printed in their place;
each payment attempt records the card it was made with (brand, last 4 digits) as that card reads now.
From then on nothing of that changes."""

import core.seller
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def documents_freeze(apps, schema_editor):
    Account = apps.get_model("accounts", "Account")
    for name in ("Invoice", "CreditNote"):
        model = apps.get_model("invoices", name)
        model.objects.filter(timezone="").update(
            timezone=Subquery(Account.objects.filter(pk=OuterRef("account_id")).values("timezone")[:1]))
    PaymentMethod = apps.get_model("invoices", "PaymentMethod")
    card = PaymentMethod.objects.filter(pk=OuterRef("payment_method_id"))
    apps.get_model("invoices", "Payment").objects.filter(payment_method__isnull=False).update(
        card_brand=Subquery(card.values("brand")[:1]), card_last4=Subquery(card.values("last4")[:1]))
    apps.get_model("invoices", "Invoice").objects.filter(  # what the PDF printed in their place
        bill_to_name="", bill_to_company="", bill_to_address="", bill_to_country="", bill_to_vat_id="").update(
        bill_to_name=Subquery(Account.objects.filter(pk=OuterRef("account_id")).values("name")[:1]))


class Migration(migrations.Migration):

    dependencies = [
        ('invoices', '0006_taxes'),
        ('accounts', '0008_billing_calendar'),
    ]

    operations = [
        migrations.AddField(
            model_name='creditnote',
            name='seller',
            field=models.JSONField(blank=True, default=core.seller.seller_record, help_text='The seller as configured at issue.'),
        ),
        migrations.AddField(
            model_name='creditnote',
            name='timezone',
            field=models.CharField(blank=True, help_text="The account's billing time zone at issue: the calendar of its dates.", max_length=64),
        ),
        migrations.AddField(
            model_name='invoice',
            name='seller',
            field=models.JSONField(blank=True, default=core.seller.seller_record, help_text='The seller as configured at issue.'),
        ),
        migrations.AddField(
            model_name='invoice',
            name='timezone',
            field=models.CharField(blank=True, help_text="The account's billing time zone at issue: the calendar of its dates.", max_length=64),
        ),
        migrations.AddField(
            model_name='payment',
            name='card_brand',
            field=models.CharField(blank=True, max_length=20),
        ),
        migrations.AddField(
            model_name='payment',
            name='card_last4',
            field=models.CharField(blank=True, max_length=4),
        ),
        migrations.RunPython(documents_freeze, migrations.RunPython.noop),
    ]
