"""The SQLite database: opening it (WAL, foreign keys), applying migrations, transactions and reads.

Writes: one connection, one use case = one `BEGIN IMMEDIATE ... COMMIT`, use cases one after another
(an asyncio lock). A use case is a handful of indexed statements of a few microseconds each, so they run
right on the event loop's thread: handing each one to a worker thread and back costs far more than the
statement (two thread switches and a loop wake-up, ~10 per check-in), and with every write serialised
that cost is what limited a burst of webhooks. Statements marked `bulk` (fan-outs to every member,
prunes, aggregates) run on the database thread instead, and waiting for a lock held by another process
never blocks the loop (the BEGIN is retried with `asyncio.sleep`).

Reads (`read()`): a second connection through aiosqlite, on its own thread, each read one snapshot. In WAL
mode readers and the writer do not wait for each other, so a slow report never holds up a check-in.
WAL checkpoints run on the reader's thread as well, never inside a COMMIT on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from storage.repos import Repos
from storage.sql import Outcome, Params

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 5.0
"""How long a write waits for another process's write lock before it fails."""
CHECKPOINT_AFTER_CHANGES = 2000
"""Rows written since the last WAL checkpoint that call for the next one (on the reader's thread)."""
CACHE_PRAGMA = "PRAGMA cache_size=-65536"  # 64 MiB of page cache per connection, for the statistics' aggregates


def migration_scripts() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration shipped with the package, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def is_file_path(path: str) -> bool:
    """Whether `path` names a database file (not `:memory:` or a URI), as both connections must share it."""
    return path != ":memory:" and not path.startswith("file:")


def _fetchall(conn: sqlite3.Connection, sql: str, params: Params) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineStatements:
    """The writer's statements: on the calling (event loop) thread, `bulk` ones on the database thread."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._executor = executor

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread. A cancelled caller still waits for it to finish, so the
        connection is never used by two threads at once (the ROLLBACK that follows runs on the loop)."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            while not future.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait({future})
            raise

    async def execute(self, sql: str, params: Params = (), *, bulk: bool = False) -> Outcome:
        if bulk:
            return await self.offload(self._conn.execute, sql, params)
        return self._conn.execute(sql, params)

    async def execute_fetchall(self, sql: str, params: Params = (), *, bulk: bool = False) -> Sequence[sqlite3.Row]:
        if bulk:
            return await self.offload(_fetchall, self._conn, sql, params)
        return self._conn.execute(sql, params).fetchall()


class ThreadedStatements:
    """The reader's statements: every one on aiosqlite's thread (`bulk` changes nothing)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = (), *, bulk: bool = False) -> Outcome:
        return await self._conn.execute(sql, params)

    async def execute_fetchall(self, sql: str, params: Params = (), *, bulk: bool = False) -> Sequence[sqlite3.Row]:
        return list(await self._conn.execute_fetchall(sql, params))


def _connect_writer(path: str) -> sqlite3.Connection:
    # check_same_thread=False: bulk statements run on the database thread; the write lock keeps the
    # connection to one user at a time.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")  # only while opening and migrating
    conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run on the reader's thread
    conn.execute(CACHE_PRAGMA)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_version ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    # Every migration not yet recorded runs, in order (also one numbered below the newest applied).
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_version").fetchall()}
    for version, name, sql in migration_scripts():
        if version in applied:
            continue
        log.info("applying migration %s", name)
        # executescript commits first; the script runs inside our own BEGIN ... COMMIT.
        try:
            record = f"INSERT INTO schema_version(version, name) VALUES ({version}, '{name}')"
            conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n{record};\nCOMMIT;")
        except sqlite3.Error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


class Database:
    def __init__(self, writer: sqlite3.Connection, reader: aiosqlite.Connection, path: str,
                 executor: ThreadPoolExecutor) -> None:  # fmt: skip
        self.path = path
        self._writer = writer
        self._reader = reader
        self._executor = executor
        self._write_lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._inline = InlineStatements(writer, executor)
        self._write_repos = Repos(self._inline)
        self._read_repos = Repos(ThreadedStatements(reader))
        self._checkpointed_at = writer.total_changes
        self._checkpoint: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, path: str | Path) -> Database:
        """Open (creating the file and its folder) and migrate the database at `path`."""
        path = str(path)
        if not is_file_path(path):
            raise ValueError("the database must be a file path: its readers and its writer share it")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vipbot-db")
        loop = asyncio.get_running_loop()
        writer: sqlite3.Connection | None = None
        try:
            writer = await loop.run_in_executor(executor, _connect_writer, path)
            await loop.run_in_executor(executor, _migrate, writer)
            writer.execute("PRAGMA busy_timeout=0")  # from now on a busy BEGIN is retried without blocking
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            if writer is not None:
                writer.close()
            executor.shutdown(wait=False)
            raise
        reader.row_factory = aiosqlite.Row
        await reader.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        await reader.execute("PRAGMA query_only=ON")
        await reader.execute(CACHE_PRAGMA)
        return cls(writer, reader, path, executor)

    async def idle(self) -> None:
        """Wait for background work on the database (a running WAL checkpoint) to finish."""
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)

    async def close(self) -> None:
        async with self._write_lock:
            await self.idle()
            await self._reader.close()
            try:
                await self._inline.offload(self._writer.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("final WAL checkpoint failed: %s", exc)
            await self._inline.offload(self._writer.close)
        self._executor.shutdown(wait=True)

    async def schema_version(self) -> int:
        async with self.read() as repos:
            row = await repos.conn.execute_fetchall("SELECT MAX(version) FROM schema_version")
        return int(row[0][0]) if row and row[0][0] is not None else 0

    async def ping(self) -> None:
        """A trivial query on each connection: raises if the database cannot be reached."""
        async with self._read_lock:
            await self._reader.execute_fetchall("SELECT 1")
        async with self._write_lock:
            self._writer.execute("SELECT 1").fetchall()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Repos]:
        """One use case = one transaction; commits on success, rolls back on any exception."""
        async with self._write_lock:
            await self._begin()
            try:
                yield self._write_repos
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
                raise
            else:
                self._writer.execute("COMMIT")
                self._after_commit()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Repos]:
        """Repositories for reading, on their own connection: one consistent snapshot that neither waits
        for a running transaction nor holds one up."""
        async with self._read_lock:
            await self._reader.execute("BEGIN")
            try:
                yield self._read_repos
            finally:
                await self._reader.execute("COMMIT")

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE (take the write lock now); while another process holds it, retry off the loop."""
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        pause = 0.002
        while True:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _after_commit(self) -> None:
        """Start a WAL checkpoint on the reader's thread once enough has been written since the last."""
        if self._checkpoint is None and self._writer.total_changes - self._checkpointed_at >= CHECKPOINT_AFTER_CHANGES:
            self._checkpointed_at = self._writer.total_changes
            self._checkpoint = asyncio.create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            async with self._read_lock:
                await self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpoint = None
