from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("broker", "0004_groups_purges_idempotency")]

    initial = False

    operations = [
        ops.AddField(
            model_name="QueueRow",
            name="max_message_bytes",
            field=fields.IntField(default=262144),
        ),
        ops.AddField(
            model_name="QueueRow",
            name="receive_wait_s",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="QueueRow",
            name="fifo",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="QueueRow",
            name="content_based_dedup",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="QueueRow",
            name="tags",
            field=fields.TextField(default="{}"),
        ),
        ops.AddField(
            model_name="QueueRow",
            name="redrive_allow_policy",
            field=fields.TextField(null=True),
        ),
    ]
