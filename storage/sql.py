"""Query helpers: one round trip to aiosqlite's thread per statement (execute and fetch together)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import aiosqlite

Params = Iterable[Any] | dict[str, Any]


async def fetch_one(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> aiosqlite.Row | None:
    rows = await conn.execute_fetchall(sql, params)
    for row in rows:
        return row
    return None


async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[aiosqlite.Row]:
    return list(await conn.execute_fetchall(sql, params))
