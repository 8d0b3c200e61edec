from datetime import date

from django.db import migrations, models


def mark_invoiced_months(apps, schema_editor):
    """Months whose overage was invoiced before this field existed count as billed in full, so
    that the late-usage check does not bill their overage a second time."""
    Invoice = apps.get_model("invoices", "Invoice")
    UsageMonth = apps.get_model("accounts", "UsageMonth")
    for key in Invoice.objects.filter(kind="overage").values_list("dedupe_key", flat=True).iterator():
        _prefix, account_id, month = key.split(":")
        year, number = (int(part) for part in month.split("-"))
        UsageMonth.objects.filter(account_id=int(account_id), month=date(year, number, 1)).update(
            sessions_billed=models.F("sessions"))


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0004_staff_groups"),
        ("invoices", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="usagemonth",
            name="sessions_billed",
            field=models.PositiveBigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(mark_invoiced_months, migrations.RunPython.noop),
    ]
