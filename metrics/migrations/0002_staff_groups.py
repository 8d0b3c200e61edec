"""ACC-5: Support and Billing managers see the revenue and health figures."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def give_permission(apps, schema_editor):
    from accounts.groups import ensure_staff_groups

    # Permissions are normally created after all migrations (post_migrate); create them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_staff_groups(apps)


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

    operations = [migrations.RunPython(give_permission, migrations.RunPython.noop)]
