from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversation", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="conversationstate",
            name="consolidation_attempts",
            field=models.PositiveIntegerField(
                default=0, help_text="Failed consolidations in a row (0 after a success)."
            ),
        ),
        migrations.AddField(
            model_name="conversationstate",
            name="consolidation_next_at",
            field=models.DateTimeField(
                blank=True,
                help_text="After a failure: no automatic retry before this time.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="conversationstate",
            name="consolidation_error",
            field=models.CharField(
                blank=True, help_text="Why the last consolidation failed, if it did.", max_length=200
            ),
        ),
    ]
