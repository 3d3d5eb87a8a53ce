from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="DedupRow",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("queue_id", fields.BigIntField()),
                ("dedup_id", fields.CharField(max_length=128)),
                ("message_id", fields.CharField(max_length=64)),
                ("position", fields.BigIntField()),
                ("expires_at", fields.BigIntField()),
            ],
            options={
                "table": "broker_dedup",
                "app": "broker",
                "unique_together": (("queue_id", "dedup_id"),),
                "indexes": [Index(fields=["expires_at"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="EventRow",
            fields=[
                (
                    "position",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("type", fields.CharField(max_length=64)),
                ("at", fields.CharField(max_length=32)),
                ("queue", fields.CharField(max_length=80)),
                ("message_id", fields.CharField(null=True, max_length=64)),
                ("data", fields.BinaryField()),
            ],
            options={
                "table": "events",
                "app": "broker",
                "indexes": [
                    Index(fields=["queue", "position"]),
                    Index(fields=["message_id", "position"]),
                ],
                "pk_attr": "position",
                "table_description": "The log. Rows are immutable: the migration installs triggers that refuse UPDATE/DELETE.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="MessageRow",
            fields=[
                (
                    "message_id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("queue_id", fields.BigIntField()),
                ("position", fields.BigIntField()),
                ("status", fields.CharField(max_length=16)),
                ("visible_at", fields.BigIntField()),
                ("receipt", fields.CharField(null=True, max_length=64)),
                ("receive_count", fields.IntField()),
                ("published_at", fields.BigIntField()),
            ],
            options={
                "table": "broker_messages",
                "app": "broker",
                "indexes": [
                    Index(fields=["queue_id", "status", "position"]),
                    Index(fields=["queue_id", "status", "visible_at"]),
                    Index(fields=["queue_id", "status", "published_at"]),
                ],
                "pk_attr": "message_id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="QueueRow",
            fields=[
                ("queue_id", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("name", fields.CharField(max_length=80)),
                ("visibility_timeout_s", fields.IntField()),
                ("delay_s", fields.IntField()),
                ("retention_s", fields.IntField()),
                ("max_receive_count", fields.IntField(null=True)),
                ("dead_letter_queue", fields.CharField(null=True, max_length=80)),
                ("created_at", fields.BigIntField()),
                ("updated_at", fields.BigIntField()),
                ("deleted", fields.BooleanField(default=False)),
            ],
            options={
                "table": "broker_queues",
                "app": "broker",
                "indexes": [Index(fields=["name", "deleted"])],
                "pk_attr": "queue_id",
            },
            bases=["Model"],
        ),
    ]
