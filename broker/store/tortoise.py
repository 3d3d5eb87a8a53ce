"""The store's schema, owned by Tortoise: models and migrations for the log and the write-side
state (app ``broker``), plus the one function that turns a database URL into a Tortoise
config with every app Cairn has. The only Tortoise import in ``broker/``.

The write path itself does not go through these models (see ``broker/store/sqlite.py``): the
ORM's per-row objects cost ~230 µs each, the group-commit batch ~10 µs per event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import msgspec
from tortoise import Tortoise, fields, models
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.migrations.api import migrate as tortoise_migrate

from broker.store.kafka import KAFKA_NODES, KAFKA_OFFSETS, KAFKA_PRODUCER_IDS
from broker.store.postgres import conninfo, is_postgres, migration_lock
from broker.store.sql import (
    DEDUP,
    DUE,
    EVENTS,
    GROUPS,
    IDEMPOTENCY,
    MESSAGES,
    PRODUCERS,
    PURGES,
    QUEUES,
)
from broker.store.tables import Table

_SQLITE_PREFIXES: Final = ("sqlite://",)


class EventRow(models.Model):
    """The log. Rows are immutable: the migration installs triggers that refuse UPDATE/DELETE."""

    position = fields.BigIntField(primary_key=True)
    type = fields.CharField(max_length=64)
    at = fields.CharField(max_length=32)
    queue = fields.CharField(max_length=80)
    message_id = fields.CharField(max_length=64, null=True)
    data = fields.BinaryField()

    class Meta:
        app = "broker"
        table = "events"
        # per queue (feeds, as-of reads), per message (history), by time (as-of a time)
        indexes = (("queue", "position"), ("message_id", "position"), ("at",))


def model_of(table: Table[Any], name: str, app: str, module: str) -> type[models.Model]:
    """The Tortoise model of a declared table, so that the ORM owns its schema and migrations
    without a second declaration of its columns. Types follow the row's field types: an int
    bounded to 32 bits is an IntField, any other a BigIntField; a str with a max_length a
    CharField (a Literal of strs a CharField(16)), without one a TextField; a bool a
    BooleanField; ``X | None`` nullable; a field's default the column's. A table keyed by
    several columns gets a generated ``id`` key, and a unique constraint on its key."""
    attrs: dict[str, Any] = {"__module__": module}
    info = msgspec.inspect.type_info(table.row)
    assert isinstance(info, msgspec.inspect.StructType)
    single_key = table.key[0] if len(table.key) == 1 else None
    for field in info.fields:
        kind, null = field.type, False
        if isinstance(kind, msgspec.inspect.UnionType):
            kind = next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType))
            null = True
        options: dict[str, Any] = {"null": True} if null else {}
        if field.default is not msgspec.NODEFAULT:
            options["default"] = field.default
        if field.name == single_key:
            # Integer keys keep Tortoise's default (generated: an autoincrement or serial
            # column) as the first migrations made them; every insert gives the value anyway.
            options["primary_key"] = True
        attrs[field.name] = _field(kind, options)
    meta: dict[str, Any] = {"app": app, "table": table.name, "indexes": table.indexes}
    if single_key is None:
        attrs["id"] = fields.BigIntField(primary_key=True)
        meta["unique_together"] = (table.key,)
    attrs["Meta"] = type("Meta", (), meta)
    return type(name, (models.Model,), attrs)


def _field(kind: Any, options: dict[str, Any]) -> fields.Field[Any]:
    inspect = msgspec.inspect
    if isinstance(kind, inspect.BoolType):
        return fields.BooleanField(**options)
    if isinstance(kind, inspect.IntType):
        small = kind.le is not None and kind.le < 2**31 and (kind.ge or 0) >= -(2**31)
        return fields.IntField(**options) if small else fields.BigIntField(**options)
    if isinstance(kind, inspect.StrType):
        if kind.max_length is None:
            return fields.TextField(**options)
        return fields.CharField(max_length=kind.max_length, **options)
    if isinstance(kind, inspect.LiteralType) and all(isinstance(v, str) for v in kind.values):
        longest = max(len(str(value)) for value in kind.values)
        return fields.CharField(max_length=max(16, longest), **options)
    if isinstance(kind, inspect.BytesType):
        return fields.BinaryField(**options)
    raise TypeError(f"no column type for {kind}")


QueueRow = model_of(QUEUES, "QueueRow", "broker", __name__)
MessageRow = model_of(MESSAGES, "MessageRow", "broker", __name__)
GroupRow = model_of(GROUPS, "GroupRow", "broker", __name__)
DedupRow = model_of(DEDUP, "DedupRow", "broker", __name__)
PurgeRow = model_of(PURGES, "PurgeRow", "broker", __name__)
IdempotencyRow = model_of(IDEMPOTENCY, "IdempotencyRow", "broker", __name__)
ProducerRow = model_of(PRODUCERS, "ProducerRow", "broker", __name__)
DueRow = model_of(DUE, "DueRow", "broker", __name__)
KafkaNodeRow = model_of(KAFKA_NODES, "KafkaNodeRow", "broker", __name__)
KafkaProducerIdRow = model_of(KAFKA_PRODUCER_IDS, "KafkaProducerIdRow", "broker", __name__)
KafkaOffsetRow = model_of(KAFKA_OFFSETS, "KafkaOffsetRow", "broker", __name__)
assert tuple(EventRow._meta.fields_map) == EVENTS.columns, "events: the model and its rows differ"


def sqlite_path(database_url: str) -> str | None:
    """The file of a ``sqlite://`` URL (relative) or ``sqlite:///`` URL (absolute)."""
    for prefix in _SQLITE_PREFIXES:
        if database_url.startswith(prefix):
            return database_url[len(prefix) :]
    return None


def companion_path(path: str, name: str) -> str:
    """Another SQLite file beside the log's: ``data/cairn.db`` -> ``data/cairn.views.db``."""
    location = Path(path)
    return str(location.with_name(f"{location.stem}.{name}{location.suffix or '.db'}"))


def tortoise_config(
    database_url: str, extra_apps: dict[str, dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The Tortoise config for the store; ``extra_apps`` adds the layers above (read models).
    An app whose ``default_connection`` is not ``default`` gets its own SQLite file beside the
    log's (see ``companion_path``)."""
    apps: dict[str, Any] = {
        "broker": {
            "models": ["broker.store.tortoise"],
            "migrations": "broker.store.migrations",
            "default_connection": "default",
        },
    }
    apps.update(extra_apps or {})
    names = {app["default_connection"] for app in apps.values()}
    if is_postgres(database_url):
        # Every app in the one database: the read models beside the log, for every node.
        # Tortoise migrates through asyncpg, its best-kept PostgreSQL backend (its psycopg one
        # writes the migration recorder's placeholders as $1, which psycopg does not take);
        # the broker itself runs on psycopg, whose synchronous API its one-hop batches need.
        postgres = expand_db_url("asyncpg://" + conninfo(database_url).split("://", 1)[1])
        return {"connections": dict.fromkeys(names, postgres), "apps": apps, "use_tz": True}
    path = sqlite_path(database_url)
    if path is None:
        raise ValueError(f"unsupported database URL {database_url!r}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)

    def connection(file_path: str) -> dict[str, Any]:
        return {
            "engine": "tortoise.backends.sqlite",
            "credentials": {
                "file_path": file_path,
                "journal_mode": "WAL",
                # Tortoise's own connections only migrate and read; the log's writer has its
                # own connection with synchronous=FULL (broker/store/sqlite.py).
                "synchronous": "NORMAL",
                "busy_timeout": 10_000,
                "foreign_keys": "OFF",
            },
        }

    connections = {
        name: connection(path if name == "default" else companion_path(path, name))
        for name in names
    }
    return {"connections": connections, "apps": apps, "use_tz": True}


async def migrate(database_url: str, extra_apps: dict[str, dict[str, Any]] | None = None) -> None:
    """Create or upgrade every table of every app; idempotent, and safe when several nodes
    start at once on an empty PostgreSQL database: they take turns (a session advisory lock),
    and every one after the first finds nothing left to do."""
    async with migration_lock(database_url):
        try:
            await tortoise_migrate(config=tortoise_config(database_url, extra_apps))
        finally:
            # Also when the migration failed or was cancelled by a timeout: the driver's
            # connection threads are not daemons, and would keep the process from exiting.
            await Tortoise.close_connections()
