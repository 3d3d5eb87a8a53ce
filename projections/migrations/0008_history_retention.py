"""History retention (``projections/views/retention.py``): the clock of positions by time, the
totals of pruned versions per queue, ``as_of_from``; and the indexes that find what to prune
without reading what stays."""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("projections", "0007_queue_listing")]

    initial = False

    operations = [
        ops.CreateModel(
            name="HistoryClock",
            fields=[
                ("bucket", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("position", fields.BigIntField()),
            ],
            options={"table": "history_clock", "app": "projections", "pk_attr": "bucket"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="HistoryBaseline",
            fields=[
                ("queue_id", fields.BigIntField(primary_key=True, unique=True, db_index=True)),
                ("published", fields.BigIntField(default=0)),
                ("acked", fields.BigIntField(default=0)),
                ("dead_lettered", fields.BigIntField(default=0)),
                ("expired", fields.BigIntField(default=0)),
                ("last_position", fields.BigIntField(default=0)),
            ],
            options={"table": "history_baselines", "app": "projections", "pk_attr": "queue_id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="HistoryHorizon",
            fields=[
                (
                    "name",
                    fields.CharField(primary_key=True, unique=True, db_index=True, max_length=16),
                ),
                ("position", fields.BigIntField(default=0)),
            ],
            options={"table": "history_horizon", "app": "projections", "pk_attr": "name"},
            bases=["Model"],
        ),
        ops.AddIndex(model_name="MessageView", index=Index(fields=["status", "updated_position"])),
        ops.AddIndex(model_name="MessageVersion", index=Index(fields=["to_position"])),
        ops.AddIndex(model_name="QueueVersion", index=Index(fields=["to_position"])),
    ]
