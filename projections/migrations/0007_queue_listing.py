"""Queue listing pages (``GET /v1/queues?after=&prefix=``) walk live queue names in byte order.
SQLite's index on (name, deleted) already compares bytes; PostgreSQL's compares by the
database's collation, so the pages get an index of their own, in ``COLLATE "C"``."""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

_POSTGRES = (
    'CREATE INDEX IF NOT EXISTS queue_views_live_names ON queue_views (name COLLATE "C")'
    " WHERE NOT deleted"
)
_POSTGRES_DOWN = "DROP INDEX IF EXISTS queue_views_live_names"


async def _forward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(_POSTGRES)


async def _backward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script(_POSTGRES_DOWN)


class Migration(migrations.Migration):
    dependencies = [("projections", "0006_projection_failures")]

    initial = False

    operations = [ops.RunPython(_forward, _backward)]
