"""Tables declared once: a msgspec Struct is the row (its fields are the columns, in order, and
their types), and the declaration adds what only storage needs (the key, the indexes). Column
lists, inserts, upserts and row mappers are derived from it here, for every SQL adapter, and
the Tortoise models that own the schema and its migrations are derived from it too
(``broker/store/tortoise.py``). A new column is a new field of the Struct, with a default.

SQL is written with ``?`` placeholders; an adapter whose driver wants another style rewrites
them (``broker/store/postgres.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

import msgspec

R = TypeVar("R", bound=msgspec.Struct)


@dataclass(frozen=True)
class Table(Generic[R]):
    name: str
    row: type[R]
    """The row type; its fields are the columns. Positional (not ``kw_only``), so that a row
    is rebuilt from a result tuple in one call."""
    key: tuple[str, ...]
    """The columns that identify a row: the primary key, or a unique constraint when there
    are several (the table then gets a generated ``id`` key of its own)."""
    indexes: tuple[tuple[str, ...], ...] = ()

    @cached_property
    def columns(self) -> tuple[str, ...]:
        return self.row.__struct_fields__

    @cached_property
    def column_list(self) -> str:
        return ", ".join(self.columns)

    @cached_property
    def select(self) -> str:
        """``SELECT <columns> FROM <table>``, to which a query adds its WHERE."""
        return f"SELECT {self.column_list} FROM {self.name}"

    @cached_property
    def insert(self) -> str:
        marks = ", ".join("?" * len(self.columns))
        return f"INSERT INTO {self.name} ({self.column_list}) VALUES ({marks})"

    @cached_property
    def upsert(self) -> str:
        """Insert, or replace every non-key column of the row with the same key."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in self.columns if c not in self.key)
        return f"{self.insert} ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {updates}"

    def values(self, row: R) -> tuple[Any, ...]:
        return msgspec.structs.astuple(row)

    def load(self, values: Sequence[Any]) -> R:
        return self.row(*values)

    def load_all(self, rows: Sequence[Sequence[Any]]) -> list[R]:
        row = self.row
        return [row(*values) for values in rows]
