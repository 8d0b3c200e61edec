"""ACC-2: the Support and Billing managers groups with their permissions. Idempotent."""

from django.db import migrations

from accounts.groups import staff_groups_migrate


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_staff_permissions"),
        ("invoices", "0003_staff_permissions"),
        ("plans", "0002_staff_permissions"),
        ("subscriptions", "0003_staff_permissions"),
        ("notifications", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(staff_groups_migrate, migrations.RunPython.noop)]
