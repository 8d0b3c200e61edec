# The events outbox now belongs to core (core.0001 takes over the same table).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0005_renewal_invoiced_for"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="PendingEvent")],
            database_operations=[],
        ),
    ]
