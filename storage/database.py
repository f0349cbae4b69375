"""The SQLite database: opening it (WAL, foreign keys), applying migrations, and transactions.

One connection serves the whole process; `transaction()` serialises use cases on it so that each use
case is exactly one SQLite transaction, whatever the number of concurrent updates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

import aiosqlite

from storage.repos import Repos
from storage.sql import fetch_one

log = logging.getLogger(__name__)


def migration_scripts() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration shipped with the package, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database:
    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating the file and its folder) and migrate the database at `path`."""
        path = str(path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache for the statistics' aggregates
        db = cls(conn, path)
        await db._migrate()
        return db

    async def close(self) -> None:
        await self._conn.close()

    async def _migrate(self) -> None:
        await self._conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        # Every migration not yet recorded runs, in order (also one numbered below the newest applied).
        applied = {r[0] for r in await self._conn.execute_fetchall("SELECT version FROM schema_version")}
        for version, name, sql in migration_scripts():
            if version in applied:
                continue
            log.info("applying migration %s", name)
            # executescript commits first; the script runs inside our own BEGIN ... COMMIT.
            try:
                await self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\n"
                    f"INSERT INTO schema_version(version, name) VALUES ({version}, '{name}');\nCOMMIT;"
                )
            except aiosqlite.Error:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise

    async def schema_version(self) -> int:
        row = await fetch_one(self._conn, "SELECT MAX(version) FROM schema_version")
        return int(row[0]) if row and row[0] is not None else 0

    async def ping(self) -> None:
        """A trivial query: raises if the database cannot be reached."""
        async with self._lock:
            await self._conn.execute_fetchall("SELECT 1")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repos]:
        """One use case = one transaction; commits on success, rolls back on any exception."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Repos(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            else:
                await self._conn.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Repos]:
        """Repositories for reading; shares the connection, so it waits for a running transaction."""
        async with self._lock:
            yield Repos(self._conn)
