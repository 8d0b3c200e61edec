"""ACC-5: Support and Billing managers see the revenue and health figures."""

from django.db import migrations

from accounts.groups import staff_groups_migrate


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0001_initial"),
        ("accounts", "0007_usage_event_occurred_index"),
        ("invoices", "0003_staff_permissions"),
        ("plans", "0002_staff_permissions"),
        ("subscriptions", "0005_renewal_invoiced_for"),
        ("notifications", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(staff_groups_migrate, migrations.RunPython.noop)]
