"""The read models' tables (Tortoise app ``projections``). Written only by projectors, in the
same transaction as their checkpoint; read by the API.

They live in a SQLite file of their own beside the log's (``cairn.views.db`` next to
``cairn.db``): SQLite allows one writer per file, and measured under load a projector sharing
the log's file kept the fsync'd writer waiting for its lock (publishing stalled near 5k/s,
and during a catch-up at a few hundred per second). In their own file, neither waits for the
other. The checkpoint is in the same file as the tables it describes, so applying a batch and
moving the checkpoint stay one transaction."""

from __future__ import annotations

from typing import Any, Final

from tortoise import fields, models

from broker.store.tortoise import companion_path

CONNECTION: Final = "views"

APPS: Final[dict[str, dict[str, Any]]] = {
    "projections": {
        "models": ["projections.models"],
        "migrations": "projections.migrations",
        "default_connection": CONNECTION,
    }
}


class Checkpoint(models.Model):
    name = fields.CharField(max_length=64, primary_key=True)
    position = fields.BigIntField(default=0)

    class Meta:
        app = "projections"
        table = "projection_checkpoints"


class QueueView(models.Model):
    queue_id = fields.BigIntField(primary_key=True, generated=False)
    name = fields.CharField(max_length=80)
    created_at = fields.BigIntField()
    updated_at = fields.BigIntField()
    position = fields.BigIntField()
    visibility_timeout_s = fields.IntField()
    delay_s = fields.IntField()
    retention_s = fields.IntField()
    max_receive_count = fields.IntField(null=True)
    dead_letter_queue = fields.CharField(max_length=80, null=True)
    deleted = fields.BooleanField(default=False)
    published_total = fields.BigIntField(default=0)
    acked_total = fields.BigIntField(default=0)
    dead_lettered_total = fields.BigIntField(default=0)
    expired_total = fields.BigIntField(default=0)
    purged_total = fields.BigIntField(default=0)

    class Meta:
        app = "projections"
        table = "queue_views"
        indexes = (("name", "deleted"),)


class MessageView(models.Model):
    message_id = fields.CharField(max_length=64, primary_key=True)
    queue_id = fields.BigIntField()
    queue = fields.CharField(max_length=80)
    status = fields.CharField(max_length=16)
    attributes = fields.TextField()
    receive_count = fields.IntField()
    published_at = fields.BigIntField()
    visible_at = fields.BigIntField()
    position = fields.BigIntField()
    updated_position = fields.BigIntField()
    purged_position = fields.BigIntField(null=True)

    class Meta:
        app = "projections"
        table = "message_views"
        indexes = (
            ("queue_id", "status", "visible_at"),
            ("queue_id", "position"),
            ("queue_id", "status", "position"),
        )


def views_file(log_file: str) -> str:
    """The read models' SQLite file for the log at ``log_file``."""
    return companion_path(log_file, CONNECTION)
