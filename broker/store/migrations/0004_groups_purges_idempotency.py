from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("broker", "0003_lease_not_receipt")]

    initial = False

    operations = [
        ops.CreateModel(
            name="GroupRow",
            fields=[
                ("queue_id", fields.BigIntField()),
                ("group_id", fields.CharField(max_length=128)),
                ("live", fields.IntField()),
                ("leased", fields.IntField()),
                ("head", fields.CharField(null=True, max_length=64)),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "broker_groups",
                "app": "broker",
                "unique_together": (("queue_id", "group_id"),),
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="IdempotencyRow",
            fields=[
                ("subject", fields.CharField(max_length=255)),
                ("idempotency_key", fields.CharField(max_length=255)),
                ("fingerprint", fields.CharField(max_length=64)),
                ("expires_at", fields.BigIntField()),
                ("reply_kind", fields.CharField(max_length=32)),
                ("reply", fields.BinaryField()),
                ("answer", fields.BinaryField(null=True)),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "broker_idempotency",
                "app": "broker",
                "unique_together": (("subject", "idempotency_key"),),
                "indexes": [Index(fields=["expires_at"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="PurgeRow",
            fields=[
                (
                    "position",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("queue_id", fields.BigIntField()),
                ("undone", fields.BooleanField(default=False)),
            ],
            options={"table": "broker_purges", "app": "broker", "pk_attr": "position"},
            bases=["Model"],
        ),
        ops.AddIndex(
            model_name="EventRow",
            index=Index(fields=["at"]),
        ),
        ops.AddField(
            model_name="MessageRow",
            name="group_id",
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.AddField(
            model_name="MessageRow",
            name="purged_by",
            field=fields.BigIntField(null=True),
        ),
        ops.AddField(
            model_name="MessageRow",
            name="rank",
            field=fields.IntField(default=5),
        ),
        ops.AddField(
            model_name="MessageRow",
            name="reason",
            field=fields.CharField(null=True, max_length=1024),
        ),
        ops.AddIndex(
            model_name="MessageRow",
            index=Index(fields=["queue_id", "status", "rank", "position"]),
        ),
        ops.AddIndex(
            model_name="MessageRow",
            index=Index(fields=["queue_id", "group_id", "status", "position"]),
        ),
        ops.AddIndex(
            model_name="MessageRow",
            index=Index(fields=["queue_id", "purged_by"]),
        ),
    ]
