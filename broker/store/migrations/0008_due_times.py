"""When the sweeper and the pruner next have something to do for each queue (``QueueDue``), so
that they visit the queues that are due, not every queue. A store from before gets each live
queue's times from its rows as they are, in one statement: the same times the sweeper sets."""

from typing import Any

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

# The same rules as broker.state.sweep_due (and QueueDue.prune_at), in SQL both dialects speak.
# retention_s is a 32-bit column: widened before it is multiplied.
FILL = """
INSERT INTO broker_due (queue_id, sweep_at, prune_at)
SELECT q.queue_id,
  CASE WHEN q.deleted THEN NULL WHEN q.move_task IS NOT NULL THEN 0 ELSE (
    SELECT MIN(CASE WHEN m.status = 'leased' THEN m.visible_at
                    ELSE m.published_at + CAST(q.retention_s AS BIGINT) * 1000000 END)
    FROM broker_messages m
    WHERE m.queue_id = q.queue_id AND m.status IN ('ready', 'waiting', 'leased')
  ) END,
  CASE WHEN EXISTS (SELECT 1 FROM broker_purges p WHERE p.queue_id = q.queue_id AND p.undone)
  THEN 0 ELSE (
    SELECT MIN(m.visible_at) FROM broker_messages m
    WHERE m.queue_id = q.queue_id
      AND m.status IN ('acked', 'dead_lettered', 'expired', 'redriven')
  ) END
FROM broker_queues q
"""


async def _fill(apps: Any, schema_editor: Any) -> None:
    await schema_editor.client.execute_script(FILL)


async def _nothing(apps: Any, schema_editor: Any) -> None:
    """Going back drops the table with its rows."""


class Migration(migrations.Migration):
    dependencies = [("broker", "0007_kafka_door")]

    initial = False

    operations = [
        ops.CreateModel(
            name="DueRow",
            fields=[
                (
                    "queue_id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("sweep_at", fields.BigIntField(null=True)),
                ("prune_at", fields.BigIntField(null=True)),
            ],
            options={
                "table": "broker_due",
                "app": "broker",
                "indexes": [Index(fields=["sweep_at"]), Index(fields=["prune_at"])],
                "pk_attr": "queue_id",
            },
            bases=["Model"],
        ),
        ops.AddIndex(
            model_name="PurgeRow",
            index=Index(fields=["queue_id", "undone"]),
        ),
        ops.RunPython(_fill, _nothing),
    ]
