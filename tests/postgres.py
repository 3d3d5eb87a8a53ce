"""PostgreSQL for the tests: the server at 127.0.0.1:5432 (``CAIRN_TEST_POSTGRES`` overrides
its admin URL), one migrated template database per test session, and a fresh database cloned
from it for every test (``CREATE DATABASE … TEMPLATE``: a copy of files, not a migration).
A test that needs PostgreSQL and cannot reach it fails, naming the fix; it never skips."""

from __future__ import annotations

import asyncio
import atexit
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

ADMIN_URL: Final = os.environ.get(
    "CAIRN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_created: list[str] = []


def url_of(database: str, base: str = ADMIN_URL) -> str:
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=f"/{database}"))


def admin(base: str = ADMIN_URL) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.Error as error:
        pytest.fail(
            f"PostgreSQL at {base} is unreachable ({error}); start it before the tests:"
            " pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )


@cache
def template() -> str:
    """A migrated, empty database to clone: made once per test session."""
    from broker.store.tortoise import migrate
    from projections.models import APPS

    name = f"cairn_template_{uuid.uuid4().hex[:10]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    # A thread of its own: callers may already be inside a running event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, migrate(url_of(name), APPS)).result()
    return name


def fresh_database() -> str:
    """The URL of a new database holding the migrated, empty schema."""
    name = f"cairn_test_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template()}"')
    _created.append(name)
    return url_of(name)


def empty_database() -> str:
    """The URL of a new database with nothing in it (for tests of the migration itself)."""
    name = f"cairn_empty_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    return url_of(name)


def drop(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if name in _created:
        _created.remove(name)


@atexit.register
def _drop_all() -> None:
    if not _created:
        return
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            for name in reversed(_created):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # the server is gone: nothing left to drop
