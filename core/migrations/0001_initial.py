# The events outbox moves from the subscriptions app to core: the table stays
# (subscriptions_pendingevent); only Django's record of which app owns the model changes.

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("subscriptions", "0005_renewal_invoiced_for"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="PendingEvent",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("kind", models.CharField(max_length=50)),
                        ("account_id", models.BigIntegerField()),
                        ("data", models.JSONField(default=dict)),
                        ("occurred_at", models.DateTimeField()),
                    ],
                    options={"db_table": "subscriptions_pendingevent"},
                ),
            ],
            database_operations=[],
        ),
    ]
