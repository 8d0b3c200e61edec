# NOT-4: an event carries the facts its e-mail states, fixed when it is emitted. Rows already in the
# outbox, and rows written by the previous release while it still runs during a deploy, get {} (the
# database's default): their e-mails are written from the account at delivery, as before.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="pendingevent",
            name="facts",
            field=models.JSONField(db_default=models.Value({}, output_field=models.JSONField()), default=dict),
        ),
    ]
