"""The current subscription becomes a database fact: `is_current`, set on each account's newest
subscription (what "current" meant until now), and a partial unique constraint."""

from django.db import migrations, models
from django.db.models import Max


def mark_newest_current(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    newest = Subscription.objects.values("account_id").annotate(newest=Max("id")).values("newest")
    Subscription.objects.exclude(pk__in=newest).update(is_current=False)
    Subscription.objects.filter(pk__in=newest).update(is_current=True)


class Migration(migrations.Migration):

    dependencies = [
        ('subscriptions', '0009_status_labels_spelled_once'),
    ]

    operations = [
        migrations.AddField(
            model_name='subscription',
            name='is_current',
            field=models.BooleanField(default=True),
        ),
        migrations.RunPython(mark_newest_current, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name='subscription',
            constraint=models.UniqueConstraint(condition=models.Q(('is_current', True)), fields=('account',),
                                               name='one_current_per_account'),
        ),
    ]
