"""ACC-2: the Support and Billing managers groups with their permissions. Idempotent."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_groups(apps, schema_editor):
    from accounts.groups import ensure_staff_groups

    # Permissions are normally created after all migrations (post_migrate); create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_staff_groups(apps)


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

    operations = [migrations.RunPython(create_groups, migrations.RunPython.noop)]
