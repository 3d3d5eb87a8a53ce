from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("projections", "0003_history")]

    initial = False

    operations = [
        ops.AddField(
            model_name="QueueView",
            name="max_message_bytes",
            field=fields.IntField(default=262144),
        ),
        ops.AddField(
            model_name="QueueView",
            name="receive_wait_s",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="QueueView",
            name="fifo",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="QueueView",
            name="content_based_dedup",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="QueueView",
            name="tags",
            field=fields.TextField(default="{}"),
        ),
        ops.AddField(
            model_name="QueueView",
            name="redrive_allow_policy",
            field=fields.TextField(null=True),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="max_message_bytes",
            field=fields.IntField(default=262144),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="receive_wait_s",
            field=fields.IntField(default=0),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="fifo",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="content_based_dedup",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="tags",
            field=fields.TextField(default="{}"),
        ),
        ops.AddField(
            model_name="QueueVersion",
            name="redrive_allow_policy",
            field=fields.TextField(null=True),
        ),
    ]
