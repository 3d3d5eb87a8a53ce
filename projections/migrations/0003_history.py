"""Versions of the read models' rows, for as-of reads. The history of a log written before
this has none: the views projection is replayed from the start so that it gets one."""

from typing import Any

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

_REPLAY = (
    "DELETE FROM queue_views; DELETE FROM message_views;"
    " UPDATE projection_checkpoints SET position = 0 WHERE name = 'views';"
)


async def _replay(apps: Any, schema_editor: Any) -> None:
    await schema_editor.client.execute_script(_REPLAY)


async def _nothing(apps: Any, schema_editor: Any) -> None:
    """Going back keeps the rows: they are what the older schema had."""


class Migration(migrations.Migration):
    dependencies = [("projections", "0002_priorities_and_groups")]

    initial = False

    operations = [
        ops.CreateModel(
            name="MessageVersion",
            fields=[
                ("message_id", fields.CharField(max_length=64)),
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
                ("priority", fields.IntField(default=4)),
                ("group_id", fields.CharField(null=True, max_length=128)),
                ("from_position", fields.BigIntField(default=0)),
                ("to_position", fields.BigIntField(default=9223372036854775807)),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "message_versions",
                "app": "projections",
                "unique_together": (("message_id", "from_position"),),
                "indexes": [
                    Index(fields=["queue_id", "to_position", "from_position"]),
                    Index(fields=["queue_id", "position"]),
                    Index(fields=["queue_id", "status", "from_position"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="QueueVersion",
            fields=[
                ("queue_id", fields.BigIntField()),
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
                ("from_position", fields.BigIntField(default=0)),
                ("to_position", fields.BigIntField(default=9223372036854775807)),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "queue_versions",
                "app": "projections",
                "unique_together": (("queue_id", "from_position"),),
                "indexes": [Index(fields=["name", "to_position"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.RunPython(_replay, _nothing),
    ]
