from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("broker", "0006_move_tasks_first_receive")]

    initial = False

    operations = [
        ops.CreateModel(
            name="KafkaNodeRow",
            fields=[
                (
                    "node_id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                ("host", fields.CharField(max_length=255)),
                ("port", fields.IntField()),
                ("seen_at", fields.BigIntField()),
                ("coordinator_since", fields.BigIntField(null=True)),
            ],
            options={"table": "kafka_nodes", "app": "broker", "pk_attr": "node_id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="KafkaOffsetRow",
            fields=[
                ("group_id", fields.CharField(max_length=255)),
                ("topic", fields.CharField(max_length=80)),
                ("partition_index", fields.IntField()),
                ("committed_offset", fields.BigIntField()),
                ("leader_epoch", fields.IntField(default=-1)),
                ("metadata", fields.TextField(null=True, unique=False)),
                ("committed_at", fields.BigIntField(default=0)),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "kafka_offsets",
                "app": "broker",
                "unique_together": (("group_id", "topic", "partition_index"),),
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="KafkaProducerIdRow",
            fields=[
                (
                    "producer_id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("issued_at", fields.BigIntField()),
            ],
            options={"table": "kafka_producer_ids", "app": "broker", "pk_attr": "producer_id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="ProducerRow",
            fields=[
                ("queue_id", fields.BigIntField()),
                ("producer_id", fields.BigIntField()),
                ("epoch", fields.IntField()),
                ("last_sequence", fields.IntField()),
                ("batches", fields.TextField(unique=False)),
                ("updated_at", fields.BigIntField()),
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
            ],
            options={
                "table": "broker_producers",
                "app": "broker",
                "unique_together": (("queue_id", "producer_id"),),
                "indexes": [Index(fields=["updated_at"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
    ]
