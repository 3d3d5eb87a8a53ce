"""The analytics read model (``projections/analytics``): buckets and pending publish times."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("projections", "0004_queue_settings_for_sqs")]

    initial = False

    operations = [
        ops.CreateModel(
            name="AnalyticsBucket",
            fields=[
                ("queue", fields.CharField(max_length=80)),
                ("bucket_s", fields.IntField()),
                ("start_s", fields.BigIntField()),
                ("published", fields.BigIntField(default=0)),
                ("received", fields.BigIntField(default=0)),
                ("acked", fields.BigIntField(default=0)),
                ("nacked", fields.BigIntField(default=0)),
                ("dead_lettered", fields.BigIntField(default=0)),
                ("expired", fields.BigIntField(default=0)),
                ("purged", fields.BigIntField(default=0)),
                ("dwell", fields.TextField(default="", unique=False)),
                ("nack_reasons", fields.TextField(default="{}", unique=False)),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "analytics_buckets",
                "app": "projections",
                "unique_together": (("queue", "bucket_s", "start_s"),),
                "indexes": [Index(fields=["bucket_s", "start_s"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="AnalyticsPending",
            fields=[
                (
                    "message_id",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64),
                ),
                ("published_at", fields.BigIntField()),
            ],
            options={
                "table": "analytics_pending",
                "app": "projections",
                "indexes": [Index(fields=["published_at"])],
                "pk_attr": "message_id",
            },
            bases=["Model"],
        ),
    ]
