from django.db import migrations, models

INDEX = models.Index(fields=["occurred_at"], name="usage_event_occurred")


def create_index(apps, schema_editor):
    """On PostgreSQL without blocking the usage API's inserts while the (large) table is indexed."""
    model = apps.get_model("accounts", "UsageEvent")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{INDEX.name}" '
                              f'ON "{model._meta.db_table}" ("occurred_at")')
    else:
        schema_editor.add_index(model, INDEX)


def drop_index(apps, schema_editor):
    schema_editor.remove_index(apps.get_model("accounts", "UsageEvent"), INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("accounts", "0006_account_country_choices"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="usageevent", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
