from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("broker", "0005_queue_settings_for_sqs")]

    initial = False

    operations = [
        ops.AddField(
            model_name="MessageRow",
            name="first_leased_at",
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name="QueueRow",
            name="move_task",
            field=fields.TextField(null=True),
        ),
    ]
