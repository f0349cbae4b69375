"""How repositories talk to SQLite: the `Statements` interface they are given, and query helpers over it.

Two implementations exist (see `storage.db.database`): statements of a write transaction run on the caller's
thread, except those marked `bulk`, which go to the database thread; reads run on aiosqlite's thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

Params = Iterable[Any] | dict[str, Any]


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


async def fetch_one(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> sqlite3.Row | None:
    rows = await conn.execute_fetchall(sql, params, bulk=bulk)
    for row in rows:
        return row
    return None


async def fetch_all(conn: Statements, sql: str, params: Params = (), *, bulk: bool = False) -> list[sqlite3.Row]:
    return list(await conn.execute_fetchall(sql, params, bulk=bulk))
