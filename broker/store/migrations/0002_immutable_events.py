"""Make the log append-only in the schema itself: UPDATE and DELETE on ``events`` fail, whoever
issues them. Written per dialect because trigger syntax differs."""

from typing import Any

from tortoise import migrations
from tortoise.migrations import operations as ops

_SQLITE = """
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
"""

_POSTGRES = """
CREATE OR REPLACE FUNCTION cairn_events_immutable() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'events are immutable'; END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION cairn_events_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION cairn_events_immutable();
"""

_SQLITE_DOWN = "DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete;"
_POSTGRES_DOWN = (
    "DROP TRIGGER IF EXISTS events_no_update_delete ON events;"
    " DROP TRIGGER IF EXISTS events_no_truncate ON events;"
    " DROP FUNCTION IF EXISTS cairn_events_immutable();"
)


async def _forward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    await client.execute_script(_POSTGRES if client.capabilities.dialect == "postgres" else _SQLITE)


async def _backward(apps: Any, schema_editor: Any) -> None:
    client = schema_editor.client
    await client.execute_script(
        _POSTGRES_DOWN if client.capabilities.dialect == "postgres" else _SQLITE_DOWN
    )


class Migration(migrations.Migration):
    dependencies = [("broker", "0001_initial")]

    operations = [ops.RunPython(_forward, _backward)]
