"""The read models' tables (Tortoise app ``projections``): derived from the row types the
projectors fold (``projections/views``), written only by projectors, in the same transaction as
their checkpoint, and read by the API.

On SQLite they live in a file of their own beside the log's (``cairn.views.db`` next to
``cairn.db``): SQLite allows one writer per file, and measured under load a projector sharing
the log's file kept the fsync'd writer waiting for its lock (publishing stalled near 5k/s,
and during a catch-up at a few hundred per second). In their own file, neither waits for the
other. The checkpoint is in the same file as the tables it describes, so applying a batch and
moving the checkpoint stay one transaction."""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

from broker.store.tables import Table
from broker.store.tortoise import companion_path, model_of
from projections.analytics.buckets import ANALYTICS_BUCKETS, ANALYTICS_PENDING
from projections.views.history import MESSAGE_VERSIONS, QUEUE_VERSIONS
from projections.views.messages import MESSAGE_VIEWS
from projections.views.queues import QUEUE_VIEWS
from projections.views.retention import HISTORY_BASELINE, HISTORY_CLOCK, HISTORY_HORIZON

CONNECTION: Final = "views"

APPS: Final[dict[str, dict[str, Any]]] = {
    "projections": {
        "models": ["projections.models"],
        "migrations": "projections.migrations",
        "default_connection": CONNECTION,
    }
}


class CheckpointRow(msgspec.Struct):
    name: Annotated[str, Meta(max_length=64)]
    position: int = 0
    failing_position: int | None = None
    """The event the projector has failed to apply (the next after ``position``), if it has."""
    failing_since: int | None = None
    """When it first failed to apply that event: microseconds since the epoch."""


CHECKPOINTS: Final = Table("projection_checkpoints", CheckpointRow, key=("name",))

Checkpoint = model_of(CHECKPOINTS, "Checkpoint", "projections", __name__)
QueueView = model_of(QUEUE_VIEWS, "QueueView", "projections", __name__)
MessageView = model_of(MESSAGE_VIEWS, "MessageView", "projections", __name__)
QueueVersion = model_of(QUEUE_VERSIONS, "QueueVersion", "projections", __name__)
MessageVersion = model_of(MESSAGE_VERSIONS, "MessageVersion", "projections", __name__)
AnalyticsBucket = model_of(ANALYTICS_BUCKETS, "AnalyticsBucket", "projections", __name__)
AnalyticsPending = model_of(ANALYTICS_PENDING, "AnalyticsPending", "projections", __name__)
HistoryClock = model_of(HISTORY_CLOCK, "HistoryClock", "projections", __name__)
HistoryBaseline = model_of(HISTORY_BASELINE, "HistoryBaseline", "projections", __name__)
HistoryHorizon = model_of(HISTORY_HORIZON, "HistoryHorizon", "projections", __name__)


def views_file(log_file: str) -> str:
    """The read models' SQLite file for the log at ``log_file``."""
    return companion_path(log_file, CONNECTION)
