from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Checkpoint",
            fields=[
                (
                    "name",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("position", fields.BigIntField(default=0)),
            ],
            options={"table": "projection_checkpoints", "app": "projections", "pk_attr": "name"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="MessageView",
            fields=[
                (
                    "message_id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("queue_id", fields.BigIntField()),
                ("queue", fields.CharField(max_length=80)),
                ("status", fields.CharField(max_length=16)),
                ("attributes", fields.TextField(unique=False)),
                ("receive_count", fields.IntField()),
                ("published_at", fields.BigIntField()),
                ("visible_at", fields.BigIntField()),
                ("position", fields.BigIntField()),
                ("updated_position", fields.BigIntField()),
                ("purged_position", fields.BigIntField(null=True)),
            ],
            options={
                "table": "message_views",
                "app": "projections",
                "indexes": [
                    Index(fields=["queue_id", "status", "visible_at"]),
                    Index(fields=["queue_id", "position"]),
                    Index(fields=["queue_id", "status", "position"]),
                ],
                "pk_attr": "message_id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="QueueView",
            fields=[
                ("queue_id", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("name", fields.CharField(max_length=80)),
                ("created_at", fields.BigIntField()),
                ("updated_at", fields.BigIntField()),
                ("position", fields.BigIntField()),
                ("visibility_timeout_s", fields.IntField()),
                ("delay_s", fields.IntField()),
                ("retention_s", fields.IntField()),
                ("max_receive_count", fields.IntField(null=True)),
                ("dead_letter_queue", fields.CharField(null=True, max_length=80)),
                ("deleted", fields.BooleanField(default=False)),
                ("published_total", fields.BigIntField(default=0)),
                ("acked_total", fields.BigIntField(default=0)),
                ("dead_lettered_total", fields.BigIntField(default=0)),
                ("expired_total", fields.BigIntField(default=0)),
                ("purged_total", fields.BigIntField(default=0)),
            ],
            options={
                "table": "queue_views",
                "app": "projections",
                "indexes": [Index(fields=["name", "deleted"])],
                "pk_attr": "queue_id",
            },
            bases=["Model"],
        ),
    ]
