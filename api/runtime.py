"""The one composition root: what a Cairn process opens for its settings, whichever process it
is. The HTTP workers (``api/services.py``), the projector process (``api/projector.py``) and
``cairn projections rebuild`` (``api/rebuild.py``) all open their store, read models and
projections here, so the choice of adapter for a database URL is made in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from api.settings import Settings
from broker.ports import EventStore
from broker.store import tortoise
from broker.store.sql import Database
from broker.store.sqlite import SqliteDatabase, SqliteEventStore, check_usable
from projections.models import APPS, views_file
from projections.runner import ProjectionRunner
from projections.views.projector import ViewsProjector

MIGRATE_WITHIN_S: Final = 60.0


@dataclass
class Storage:
    """The log, the read models and the projections over them, as one process sees them."""

    store: EventStore
    views: Database
    runner: ProjectionRunner

    async def close(self) -> None:
        await self.views.close()
        await self.store.close()


def check(settings: Settings, *, must_exist: bool = False) -> None:
    """Raise ``StoreUnavailableError`` if the store cannot be used, before anything opens it
    (``must_exist``: a command that must not create an empty store by mistake)."""
    check_usable(settings.sqlite_file, must_exist=must_exist)


async def migrate(settings: Settings) -> None:
    """Create or upgrade the schema of the log and of the read models; idempotent."""
    await tortoise.migrate(settings.database_url, APPS)


async def open_storage(settings: Settings, *, coalesce_s: float = 0.0) -> Storage:
    """Open the store and the read models (migrated already) and load the projections'
    checkpoints. ``coalesce_s``: how long a busy projector lets commits pile up per batch."""
    store = SqliteEventStore(settings.sqlite_file, durability=settings.durability)
    views = SqliteDatabase(
        views_file(settings.sqlite_file), table="projection_checkpoints", durability="normal"
    )
    await store.open()
    try:
        await views.open()
        runner = ProjectionRunner(store, views, [ViewsProjector()], coalesce_s=coalesce_s)
        await runner.start()
    except BaseException:
        await views.close()
        await store.close()
        raise
    return Storage(store=store, views=views, runner=runner)
