from django.db import migrations, models

INDEX = models.Index(fields=["kind", "issued_at"], name="invoice_kind_issued")


def create_index(apps, schema_editor):
    """On PostgreSQL without blocking new invoices while the (large) table is indexed."""
    model = apps.get_model("invoices", "Invoice")
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'CREATE INDEX CONCURRENTLY IF NOT EXISTS "{INDEX.name}" '
                              f'ON "{model._meta.db_table}" ("kind", "issued_at")')
    else:
        schema_editor.add_index(model, INDEX)


def drop_index(apps, schema_editor):
    schema_editor.remove_index(apps.get_model("invoices", "Invoice"), INDEX)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("invoices", "0004_refunds_in_three_steps"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="invoice", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
