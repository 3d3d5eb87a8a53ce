"""The store's schema, owned by Tortoise: models and migrations for the log and the write-side
state (app ``broker``), plus the one function that turns a database URL into a Tortoise
config with every app Cairn has. The only Tortoise import in ``broker/``.

The write path itself does not go through these models (see ``broker/store/sqlite.py``): the
ORM's per-row objects cost ~230 µs each, the group-commit batch ~10 µs per event.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from tortoise import Tortoise, fields, models
from tortoise.migrations.api import migrate as tortoise_migrate

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
        indexes = (("queue", "position"), ("message_id", "position"))


class QueueRow(models.Model):
    queue_id = fields.BigIntField(primary_key=True, generated=False)
    name = fields.CharField(max_length=80)
    visibility_timeout_s = fields.IntField()
    delay_s = fields.IntField()
    retention_s = fields.IntField()
    max_receive_count = fields.IntField(null=True)
    dead_letter_queue = fields.CharField(max_length=80, null=True)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()
    deleted = fields.BooleanField(default=False)

    class Meta:
        app = "broker"
        table = "broker_queues"
        indexes = (("name", "deleted"),)


class MessageRow(models.Model):
    message_id = fields.CharField(max_length=64, primary_key=True)
    queue_id = fields.BigIntField()
    position = fields.BigIntField()
    status = fields.CharField(max_length=16)
    visible_at = fields.BigIntField()
    lease = fields.CharField(max_length=64, null=True)
    receive_count = fields.IntField()
    published_at = fields.BigIntField()

    class Meta:
        app = "broker"
        table = "broker_messages"
        # receive: ready by position; sweeper: due leases by time, retention by publish time.
        indexes = (
            ("queue_id", "status", "position"),
            ("queue_id", "status", "visible_at"),
            ("queue_id", "status", "published_at"),
        )


class DedupRow(models.Model):
    id = fields.BigIntField(primary_key=True)
    queue_id = fields.BigIntField()
    dedup_id = fields.CharField(max_length=128)
    message_id = fields.CharField(max_length=64)
    position = fields.BigIntField()
    expires_at = fields.BigIntField()

    class Meta:
        app = "broker"
        table = "broker_dedup"
        unique_together = (("queue_id", "dedup_id"),)
        indexes = (("expires_at",),)


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
    path = sqlite_path(database_url)
    if path is None:
        raise ValueError(f"unsupported database URL {database_url!r}: use sqlite://PATH")
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

    apps: dict[str, Any] = {
        "broker": {
            "models": ["broker.store.tortoise"],
            "migrations": "broker.store.migrations",
            "default_connection": "default",
        },
    }
    apps.update(extra_apps or {})
    connections = {"default": connection(path)}
    for app in apps.values():
        name = app["default_connection"]
        if name not in connections:
            connections[name] = connection(companion_path(path, name))
    return {"connections": connections, "apps": apps, "use_tz": True}


async def migrate(database_url: str, extra_apps: dict[str, dict[str, Any]] | None = None) -> None:
    """Create or upgrade every table of every app; idempotent."""
    try:
        await tortoise_migrate(config=tortoise_config(database_url, extra_apps))
    finally:
        # Also when the migration failed or was cancelled by a timeout: the driver's
        # connection threads are not daemons, and would keep the process from exiting.
        await Tortoise.close_connections()


async def open_orm(database_url: str, extra_apps: dict[str, dict[str, Any]] | None = None) -> None:
    """Migrate, then initialise Tortoise for this process's reads and read-model writes."""
    await migrate(database_url, extra_apps)
    # Under uvicorn the lifespan and the requests run in different tasks; without the global
    # fallback every request fails to find the connection (Tortoise 1.x context rules).
    await Tortoise.init(
        config=tortoise_config(database_url, extra_apps), _enable_global_fallback=True
    )


async def close_orm() -> None:
    await Tortoise.close_connections()
