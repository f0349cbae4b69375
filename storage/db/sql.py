"""How repositories talk to SQLite: the `Statements` interface they are given, and query helpers over it.

Two implementations exist (see `storage.db.database`): statements of a write transaction run on the caller's
thread, except those marked `bulk`, which go to the database thread; reads run on aiosqlite's thread.

Rows come back as `sqlite3.Row` on every connection, and repositories turn them into their dataclasses by
column name (`from_row`, `fetch_one_as`, `fetch_all_as`): a SELECT names its columns after the fields
(`AS` where they differ), so the order of a SELECT list never matters.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from typing import Any, Protocol, TypeVar

Params = Iterable[Any] | dict[str, Any]
T = TypeVar("T")

BULK_ROWS = 100
"""Rows written by one statement beyond which it goes to the database thread instead of the event loop."""


class Outcome(Protocol):
    """What `execute` returns: how many rows a write changed."""

    @property
    def rowcount(self) -> int: ...


class Statements(Protocol):
    """One connection as seen by a repository, inside a transaction or a read.

    `bulk=True` marks a statement whose cost grows with the size of the shop (a fan-out to every member, a
    prune, an aggregate over all purchases): it never runs on the event loop's thread.
    """

    async def execute(self, sql: str, params: Params = (), *, bulk: bool = False) -> Outcome: ...

    async def execute_fetchall(self, sql: str, params: Params = (), *, bulk: bool = False) -> Sequence[sqlite3.Row]: ...


class Repo:
    """A repository: its queries run on `self._conn`, the statements of one transaction or read."""

    def __init__(self, conn: Statements) -> None:
        self._conn = conn


async def fetch_one(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> sqlite3.Row | None:
    rows = await conn.execute_fetchall(sql, params, bulk=bulk)
    for row in rows:
        return row
    return None


async def fetch_all(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, params, bulk=bulk))


@cache
def _columns(cls: type) -> tuple[tuple[str, bool, bool], ...]:
    """(field name, is a bool, has a default) of each init field of the dataclass `cls`, worked out once."""
    return tuple(
        (f.name, f.type in (bool, "bool"),
         f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        for f in dataclasses.fields(cls) if f.init
    )  # fmt: skip


def from_row(cls: type[T], row: sqlite3.Row, **values: Any) -> T:
    """The dataclass `cls` built from `row` by column name: each field from the column of the same name (a
    field annotated `bool` as a bool, SQLite having none), except the fields given in `values` (those the
    caller converts, e.g. from JSON). A field with a default may be missing from the row; any other missing
    raises IndexError naming the field. The field list is worked out once per class (check-ins use this)."""
    args: dict[str, Any] = {}
    for name, as_bool, optional in _columns(cls):
        if name in values:
            continue
        try:
            value = row[name]
        except IndexError:
            if optional:
                continue
            raise IndexError(f"{cls.__name__}.{name}: no column of that name in the row") from None
        args[name] = bool(value) if as_bool else value
    return cls(**args, **values)


Maker = type[T] | Callable[[sqlite3.Row], T]
"""A dataclass (built with `from_row`) or a function that builds the value from a row."""


def _maker(make: Maker[T]) -> Callable[[sqlite3.Row], T]:
    if isinstance(make, type) and dataclasses.is_dataclass(make):
        return lambda row: from_row(make, row)
    return make  # type: ignore[return-value]


async def fetch_one_as(
    conn: Statements, make: Maker[T], sql: str, params: Params = (), *, bulk: bool = False
) -> T | None:
    """The first row of `sql` made into a `make` (by column name for a dataclass), or None without a row."""
    row = await fetch_one(conn, sql, params, bulk=bulk)
    return None if row is None else _maker(make)(row)


async def fetch_all_as(
    conn: Statements, make: Maker[T], sql: str, params: Params = (), *, bulk: bool = False
) -> list[T]:
    """Every row of `sql` made into a `make` (by column name for a dataclass), in order."""
    build = _maker(make)
    return [build(row) for row in await conn.execute_fetchall(sql, params, bulk=bulk)]


def comma_list(value: str | None) -> tuple[str, ...]:
    """The items of a comma-separated column (e.g. `tiers`; NULL or '' is none)."""
    return tuple(item for item in (value or "").split(",") if item)


async def inserted_id(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> int:
    """Run an INSERT … RETURNING id that always writes its row; returns the new row's id."""
    row = await fetch_one(conn, sql, params, bulk=bulk)
    assert row is not None, "the INSERT returned no row"
    return int(row[0])


async def has_row(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> bool:
    """Whether `sql` returns a row: an INSERT … ON CONFLICT DO NOTHING RETURNING that wrote one, a conditional
    UPDATE … RETURNING that matched, a SELECT that found one."""
    return await fetch_one(conn, sql, params, bulk=bulk) is not None


async def changed_one(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> bool:
    """Run a conditional write on one row; whether it changed it (False: the condition did not hold)."""
    return (await conn.execute(sql, params, bulk=bulk)).rowcount == 1


async def update_columns(
    conn: Statements, table: str, row_id: int, fields: dict[str, object], allowed: set[str], where: str = "true"
) -> bool:
    """Set some of the `allowed` columns (`fields`, name to value) of the row `row_id` of `table` while `where`
    holds; whether it changed. Raises ValueError for no field or one not allowed (the names come from code)."""
    if not fields or set(fields) - allowed:
        raise ValueError(f"cannot update {sorted(set(fields) - allowed)}")
    assignments = ", ".join(f"{name} = ?" for name in fields)
    return await changed_one(
        conn, f"UPDATE {table} SET {assignments} WHERE id = ? AND {where}", (*fields.values(), row_id)
    )
