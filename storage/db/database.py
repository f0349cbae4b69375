"""The SQLite database: opening it (WAL, foreign keys), applying migrations, transactions and reads.

Writes: one connection, one use case = one `BEGIN IMMEDIATE ... COMMIT`, use cases one after another
(an asyncio lock). A use case is a handful of indexed statements of a few microseconds each, so they run
right on the event loop's thread: handing each one to a worker thread and back costs far more than the
statement (two thread switches and a loop wake-up, ~10 per check-in), and with every write serialised
that cost is what limited a burst of webhooks. Statements marked `bulk` (fan-outs to every member,
prunes, aggregates) run on the database thread instead, and so do the COMMIT (or ROLLBACK) of a transaction
that ran one: writing out the pages of 200,000 rows takes far longer than any statement of a use case. Waiting
for a lock held by another process never blocks the loop (the BEGIN is retried with `asyncio.sleep`).

Reads (`read()`): a small pool of reader connections through aiosqlite, each on its own thread; a read takes a
free one and is one snapshot. In WAL mode readers never wait for each other or for the writer, so a slow report
holds up neither a check-in nor another read. WAL checkpoints run on a reader's thread as well, never inside a
COMMIT on the loop. A PASSIVE checkpoint
cannot reset the WAL while writes keep coming, so once the WAL passes `WAL_TRUNCATE_BYTES` writes pause for
a TRUNCATE one (on the database thread) that empties it: the WAL stays bounded however fast writes come.
(A snapshot that stays open keeps any WAL from resetting: then the TRUNCATE gives up after
`TRUNCATE_WAIT_SECONDS` and tries again once the WAL has doubled.)

Opening refuses, with a one-line `StorageError`, a file or folder the bot cannot use as its database
(storage/db/preflight.py); a COMMIT that fails (a full disk) is rolled back, so the next write can succeed.

The rule that nothing slow runs on the loop is checked, not promised: opened with `loop_statement_ms` (tests,
debug mode), the writer gets SQLite's progress handler, and a statement not marked `bulk` that has used more
than that much of the loop thread's time is aborted with a `SlowStatementError` naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import logging
import os
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

from storage.db.preflight import check_contents, check_path, describe_error, is_storage_fault
from storage.db.sql import Outcome, Params
from storage.repos import Repos

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNIT: contextvars.ContextVar[asyncio.Task[Any] | None] = contextvars.ContextVar("vipbot_unit", default=None)
"""The task that holds the open `Database.unit()`, if any."""
_SAVEPOINTS = itertools.count(1)

BUSY_TIMEOUT_SECONDS = 5.0
"""How long a write waits for another process's write lock before it fails."""
CHECKPOINT_AFTER_CHANGES = 1000
"""Rows written since the last WAL checkpoint that call for the next one (PASSIVE, on a reader's thread)."""
WAL_CHECK_AFTER_CHANGES = 100
"""Rows written between two looks at the WAL's size (one stat each, on the loop)."""
WAL_TRUNCATE_BYTES = 16 * 1024 * 1024
"""A WAL this large is emptied by a TRUNCATE checkpoint, writes waiting for it (a few milliseconds)."""
TRUNCATE_WAIT_SECONDS = 0.25
"""How long that checkpoint waits for a reader's snapshot to end (writes wait too) before giving up for now."""
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
# When the WAL restarts after a complete checkpoint, SQLite cuts the file back to this size: without a limit
# the file keeps the size of the largest burst ever written (it was 114 MB after 3,000 /start's).
CACHE_PRAGMA = "PRAGMA cache_size=-65536"  # 64 MiB of page cache per connection, for the statistics' aggregates
READERS = 4
"""Reader connections (`read()`) by default: reads at the same time, each on its own thread."""
DEBUG_LOOP_STATEMENT_MS = 200
"""The loop's statement time limit in debug mode (`log_level: DEBUG`) unless `storage.loop_statement_ms` says."""
PROGRESS_STEPS = 1000
"""SQLite virtual-machine steps between two looks at a guarded statement's time (a few microseconds' worth)."""


class SlowStatementError(RuntimeError):
    """A statement not marked `bulk` ran too long on the event loop's thread (raised only with the guard on)."""


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


class WriteLock(asyncio.Lock):
    """The writer connection's lock; `released` is set whenever it is let go (background transactions wait
    for it to be free)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()

    def release(self) -> None:
        super().release()
        self.released.set()


def _fetchall(conn: sqlite3.Connection, sql: str, params: Params) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def _truncate_wal(conn: sqlite3.Connection) -> bool:
    """Copy what is left of the WAL into the database and empty it; False if a snapshot still in use (ours, or
    another process's) kept it from finishing within TRUNCATE_WAIT_SECONDS. Called with no transaction open."""
    conn.execute(f"PRAGMA busy_timeout={int(TRUNCATE_WAIT_SECONDS * 1000)}")
    try:
        busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        conn.execute("PRAGMA busy_timeout=0")
    return not busy


async def _to_the_end(future: asyncio.Future[T]) -> T:
    """Await `future` (work on the database thread); a cancelled caller still waits for it to finish before the
    `CancelledError` is raised, so the connection is never used by two threads at once."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        raise


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineStatements:
    """The writer's statements: on the calling (event loop) thread, `bulk` ones on the database thread.

    With `limit_ms`, a statement on the loop that has used more than that much CPU time of the loop's thread is
    aborted by SQLite's progress handler and raises `SlowStatementError` (CPU time, not wall time, so a busy
    machine that leaves the thread waiting does not trip it). Bulk statements are never limited."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, limit_ms: float | None = None) -> None:
        self._conn = conn
        self._executor = executor
        self._limit = limit_ms / 1000 if limit_ms else None
        self._deadline: float | None = None  # thread time past which the running statement on the loop is aborted
        self._tripped = False
        self.ran_bulk = False
        """Whether a bulk statement ran since `Database` last began a transaction: then it ends off the loop."""
        if self._limit is not None:
            conn.set_progress_handler(self._progress, PROGRESS_STEPS)

    def _progress(self) -> int:
        """SQLite's progress handler: non-zero aborts the running statement (only a guarded one past its time)."""
        deadline = self._deadline
        if deadline is not None and time.thread_time() > deadline:
            self._tripped = True
            return 1
        return 0

    def _on_loop(self, run: Callable[[], T], sql: str) -> T:
        """Run a statement on the calling thread, within the time limit if there is one."""
        if self._limit is None:
            return run()
        self._tripped = False
        self._deadline = time.thread_time() + self._limit
        try:
            return run()
        except sqlite3.OperationalError as exc:
            if not self._tripped:
                raise
            raise SlowStatementError(
                f"a statement ran over {self._limit * 1000:g} ms on the event loop; if its cost grows with the"
                f" shop, mark it bulk=True (it then runs on the database thread): {' '.join(sql.split())}"
            ) from exc
        finally:
            self._deadline = None

    async def offload(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread. A cancelled caller still waits for it to finish, so the
        connection is never used by two threads at once (the ROLLBACK that follows runs on the loop)."""
        return await _to_the_end(asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args)))

    async def execute(self, sql: str, params: Params = (), *, bulk: bool = False) -> Outcome:
        if bulk:
            self.ran_bulk = True
            return await self.offload(self._conn.execute, sql, params)
        return self._on_loop(partial(self._conn.execute, sql, params), sql)

    async def execute_fetchall(self, sql: str, params: Params = (), *, bulk: bool = False) -> Sequence[sqlite3.Row]:
        if bulk:
            self.ran_bulk = True
            return await self.offload(_fetchall, self._conn, sql, params)
        return self._on_loop(partial(_fetchall, self._conn, sql, params), sql)


class ThreadedStatements:
    """A reader's statements: every one on its aiosqlite thread (`bulk` changes nothing)."""

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
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")  # only while opening and migrating
        check_contents(conn, path, migration_scripts()[-1][0])  # before the first PRAGMA that writes to the file
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints run off the loop: Database._after_commit
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT_BYTES}")
        conn.execute(CACHE_PRAGMA)
    except BaseException:
        conn.close()
        raise
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
    is_storage_fault = staticmethod(is_storage_fault)
    """Whether an exception is a disk or I/O fault (full, failing, read-only): answer the member with an apology."""

    def __init__(self, writer: sqlite3.Connection, readers: Sequence[aiosqlite.Connection], path: str,
                 executor: ThreadPoolExecutor, loop_statement_ms: float | None = None) -> None:  # fmt: skip
        self.path = path
        self._writer = writer
        self._readers = list(readers)
        self._executor = executor
        self._write_lock = WriteLock()
        self._free_readers: asyncio.Queue[tuple[aiosqlite.Connection, Repos]] = asyncio.Queue()
        for reader in self._readers:
            self._free_readers.put_nowait((reader, Repos(ThreadedStatements(reader))))
        self._inline = InlineStatements(writer, executor, loop_statement_ms)
        self._write_repos = Repos(self._inline)
        self._checkpointed_at = self._wal_checked_at = writer.total_changes
        self._checkpoint: asyncio.Task[None] | None = None
        self._commit_callbacks: list[Callable[[], None]] = []
        self._truncation: asyncio.Task[None] | None = None
        self._checkpoint_lock = asyncio.Lock()  # one checkpoint at a time: SQLite fails a second one at once
        self._wal_full = False  # the WAL passed _truncate_above: the next write waits for a TRUNCATE checkpoint
        self._truncate_above = WAL_TRUNCATE_BYTES  # higher for a while after a TRUNCATE could not finish
        self._closing = False
        self._writes_waiting = 0  # transactions waiting for the write lock (or for room in the WAL)
        self._settled_at = writer.total_changes  # rows written when `settle` last ran
        self.on_transaction: Callable[[float], None] | None = None
        """Called after each outermost write transaction (committed or rolled back; savepoints are not) with
        the seconds from asking for the write lock to the end of its COMMIT or ROLLBACK, e.g. for a histogram.
        It runs on the loop, outside the transaction: it must be quick, and an error of its own is logged."""

    @classmethod
    async def open(
        cls, path: str | Path, *, readers: int = READERS, loop_statement_ms: float | None = None
    ) -> Database:
        """Open (creating the file and its folder) and migrate the database at `path`, with `readers` reader
        connections. With `loop_statement_ms` (tests, debug mode) a statement on the loop that runs longer fails
        (`SlowStatementError`). A file or folder that cannot be the bot's database (not SQLite, another
        program's, from a newer vipbot, read-only, a folder, or an SQLite error while opening or migrating)
        raises `StorageError`, one line saying what to do."""
        path = str(path)
        if not is_file_path(path):
            raise ValueError("the database must be a file path: its readers and its writer share it")
        if readers < 1:
            raise ValueError("at least one reader connection is needed")
        check_path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vipbot-db")
        loop = asyncio.get_running_loop()
        writer: sqlite3.Connection | None = None
        opened: list[aiosqlite.Connection] = []
        try:
            writer = await loop.run_in_executor(executor, _connect_writer, path)
            await loop.run_in_executor(executor, _migrate, writer)
            writer.execute("PRAGMA busy_timeout=0")  # from now on a busy BEGIN is retried without blocking
            for _ in range(readers):
                reader = await aiosqlite.connect(path, isolation_level=None)
                opened.append(reader)
                reader.row_factory = aiosqlite.Row
                await reader.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
                await reader.execute("PRAGMA query_only=ON")
                await reader.execute(CACHE_PRAGMA)
        except BaseException as exc:
            for reader in opened:
                with contextlib.suppress(Exception):
                    await reader.close()
            if writer is not None:
                writer.close()
            executor.shutdown(wait=False)
            if isinstance(exc, sqlite3.Error):
                raise describe_error(path, exc) from exc
            raise
        return cls(writer, opened, path, executor, loop_statement_ms)

    async def idle(self) -> None:
        """Wait for background work on the database (a running WAL checkpoint) to finish."""
        running = [task for task in (self._checkpoint, self._truncation) if task is not None]
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def settle(self, tries: int = 3, *, after_changes: int = 0) -> None:
        """Between two chunks of a long job: wait for a running checkpoint, then copy the whole WAL into the
        database file with PASSIVE checkpoints on a reader's thread (writes go on meanwhile), up to `tries`
        times while writes keep adding to it. With nothing left to copy, the next write starts the WAL from
        its beginning again, so a long job's WAL stays the size of one chunk and no TRUNCATE checkpoint (which
        holds every write up) is needed. With `after_changes`, only once that many rows were written since the
        last time it did (the PASSIVE checkpoints that run by themselves meanwhile leave it little to copy)."""
        if self._writer.total_changes - self._settled_at < after_changes:
            return
        self._settled_at = self._writer.total_changes
        await self.idle()
        for _ in range(tries):
            if self._closing or self._checkpoint_lock.locked():
                return
            try:
                async with self._take_reader() as (reader, _repos), self._checkpoint_lock:
                    cursor = await reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    busy, frames, copied = await cursor.fetchone() or (1, 0, 0)
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint failed: %s", exc)
                return
            if not busy and copied >= frames:
                self._checkpointed_at = self._writer.total_changes
                return

    async def close(self) -> None:
        self._closing = True  # no new checkpoint starts; the TRUNCATE below does their work
        await self.idle()  # outside the write lock, which a running checkpoint may be waiting for
        await self._close_readers()  # outside it too: a read may be waiting for a write to finish
        async with self._write_lock:
            try:
                await self._inline.offload(self._writer.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("final WAL checkpoint failed: %s", exc)
            await self._inline.offload(self._writer.close)
        self._executor.shutdown(wait=True)

    async def _close_readers(self) -> None:
        """Close each reader once its read is over; one still taken after BUSY_TIMEOUT_SECONDS is closed anyway."""

        async def all_free() -> None:
            for _ in self._readers:
                await self._free_readers.get()

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_free(), BUSY_TIMEOUT_SECONDS)
        for reader in self._readers:
            await reader.close()

    async def schema_version(self) -> int:
        async with self.read() as repos:
            row = await repos.conn.execute_fetchall("SELECT MAX(version) FROM schema_version")
        return int(row[0][0]) if row and row[0][0] is not None else 0

    async def ping(self) -> None:
        """A trivial query on each connection: raises if the database cannot be reached."""
        async with self._take_reader() as (reader, _repos):
            await reader.execute_fetchall("SELECT 1")
        async with self._write_lock:
            self._writer.execute("SELECT 1").fetchall()

    @property
    def writing(self) -> bool:
        """Whether a write transaction is open (or about to begin, holding the lock) right now."""
        return self._write_lock.locked() or self._writer.in_transaction

    @property
    def caller_writing(self) -> bool:
        """Whether the caller may be inside a write transaction: with one writer, any open one counts (the same as
        `writing`; the PostgreSQL engine tells the caller's own)."""
        return self.writing

    @asynccontextmanager
    async def transaction(self, *, background: bool = False) -> AsyncIterator[Repos]:
        """One use case = one transaction; commits on success, rolls back on any exception.

        Every `transaction()` and `read()` that the same task opens inside it joins it as a savepoint (a
        read sees its writes), so one inbound update can be one transaction: its "done" mark, the handler's
        effects and its queued replies commit together or not at all (see `Dispatcher.handle_update`).

        A `background` transaction (one chunk of a long job, such as an import) lets every other transaction
        that waits go first: it begins only when none waits, so the bot's answers wait for one chunk at most,
        never for a chunk that came after them."""
        if self._owned_unit():
            name = f"sp{next(_SAVEPOINTS)}"
            self._writer.execute(f"SAVEPOINT {name}")
            try:
                yield self._write_repos
            except BaseException:
                if self._writer.in_transaction:
                    self._writer.execute(f"ROLLBACK TO {name}")
                    self._writer.execute(f"RELEASE {name}")
                raise
            else:
                self._writer.execute(f"RELEASE {name}")
            return
        observe = self.on_transaction
        started = time.perf_counter() if observe is not None else 0.0
        await self._turn(background)
        try:
            await self._begin()
            token = _UNIT.set(asyncio.current_task())
            try:
                yield self._write_repos
            except BaseException:
                self._commit_callbacks = []
                await self._end(self._rollback)
                raise
            else:
                await self._finish()
            finally:
                _UNIT.reset(token)
        finally:
            self._write_lock.release()
            if observe is not None:
                self._observe(observe, time.perf_counter() - started)

    @staticmethod
    def _observe(observe: Callable[[float], None], seconds: float) -> None:
        try:
            observe(seconds)
        except Exception:  # the transaction's outcome stands, whatever the observer does
            log.exception("the transaction observer failed")

    async def _turn(self, background: bool) -> None:
        """Take the write lock (after the WAL's TRUNCATE checkpoint, when one is due); a background transaction
        first waits until the lock is free and no other transaction waits for it."""
        if background:
            while True:
                if self._wal_full:
                    await self._make_room()
                elif self._writes_waiting or self._write_lock.locked():
                    self._write_lock.released.clear()
                    await self._write_lock.released.wait()
                else:
                    break
            await self._write_lock.acquire()  # free, nobody waiting: at once
            return
        self._writes_waiting += 1
        try:
            if self._wal_full:
                await self._make_room()
            await self._write_lock.acquire()
        finally:
            self._writes_waiting -= 1

    unit = transaction
    """The transaction of one inbound update (the same thing, named for the reader of the dispatcher)."""

    def _owned_unit(self) -> bool:
        """Whether the running task is inside a transaction (tasks it spawns are not: they wait their turn)."""
        owner = _UNIT.get()
        return owner is not None and owner is asyncio.current_task() and self._writer.in_transaction

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Repos]:
        """Repositories for reading, on their own connection: one consistent snapshot that neither waits
        for a running transaction nor holds one up. Inside a `unit()` it reads the unit's own writes."""
        if self._owned_unit():
            yield self._write_repos
            return
        async with self._take_reader() as (reader, repos):
            await reader.execute("BEGIN")
            try:
                yield repos
            finally:
                await reader.execute("COMMIT")

    @asynccontextmanager
    async def _take_reader(self) -> AsyncIterator[tuple[aiosqlite.Connection, Repos]]:
        """A free reader connection and its repositories, for this read alone (waits while all are taken)."""
        reader, repos = await self._free_readers.get()
        try:
            if reader.in_transaction:  # a read cancelled during its COMMIT left its snapshot open
                await reader.execute("COMMIT")
            yield reader, repos
        finally:
            self._free_readers.put_nowait((reader, repos))

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE (take the write lock now); while another process holds it, retry off the loop."""
        if self._writer.in_transaction:  # left open by a failed ROLLBACK: the write lock is ours, so nobody's
            self._rollback()
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        pause = 0.002
        while True:
            try:
                self._writer.execute("BEGIN IMMEDIATE")
                self._inline.ran_bulk = False
                return
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.1)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the running task's transaction has committed (now, outside a transaction);
        forgotten if it rolls back. E.g. wake the outbox only when the rows it is to send are visible."""
        if self._owned_unit():
            self._commit_callbacks.append(callback)
        else:
            callback()

    async def _end(self, end: Callable[[], None], after: Callable[[], None] | None = None) -> None:
        """End the transaction with `end` (`_commit` or `_rollback`), then call `after` on the loop if `end`
        succeeded. On the loop, or on the database thread if the transaction ran a bulk statement: its COMMIT
        writes out every page those rows touched. A caller cancelled meanwhile still waits for the end (the
        write lock is held until then), and `after` still runs for a COMMIT that went through."""
        if not self._inline.ran_bulk:
            end()
        else:
            self._inline.ran_bulk = False
            future = asyncio.get_running_loop().run_in_executor(self._executor, end)
            try:
                await _to_the_end(future)
            except asyncio.CancelledError:
                if after is not None and not future.cancelled() and future.exception() is None:
                    after()
                raise
        if after is not None:
            after()

    async def _finish(self) -> None:
        """COMMIT the open transaction (`_end`), then the checkpoint bookkeeping and the commit callbacks."""
        callbacks, self._commit_callbacks = self._commit_callbacks, []
        await self._end(self._commit, partial(self._committed, callbacks))

    def _committed(self, callbacks: list[Callable[[], None]]) -> None:
        self._after_commit()
        for callback in callbacks:
            callback()

    def _commit(self) -> None:
        """COMMIT; if that fails (a full disk, a deferred constraint) roll back, so the next use case starts clean."""
        try:
            self._writer.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        """ROLLBACK the open transaction, if any (SQLite may have rolled it back itself, e.g. on SQLITE_FULL).
        A failing ROLLBACK is logged, not raised: the caller is already raising the error that matters."""
        self._commit_callbacks = []
        if self._writer.in_transaction:
            try:
                self._writer.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.warning("ROLLBACK failed: %s", exc)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(self.path + "-wal").st_size
        except OSError:
            return 0

    def _after_commit(self) -> None:
        """Every CHECKPOINT_AFTER_CHANGES rows written, start a PASSIVE checkpoint on a reader's thread; every
        WAL_CHECK_AFTER_CHANGES rows, look at the WAL's size, and past WAL_TRUNCATE_BYTES start the TRUNCATE
        checkpoint that the next write waits for (`_make_room`)."""
        if self._closing:
            return
        changes = self._writer.total_changes
        if changes - self._wal_checked_at >= WAL_CHECK_AFTER_CHANGES:
            self._wal_checked_at = changes
            if self._wal_bytes() >= self._truncate_above:
                self._wal_full = True
                if self._truncation is None:
                    self._truncation = asyncio.create_task(self._run_truncation())
        if self._checkpoint is None and changes - self._checkpointed_at >= CHECKPOINT_AFTER_CHANGES:
            self._checkpointed_at = changes
            self._checkpoint = asyncio.create_task(self._run_checkpoint())

    async def _make_room(self) -> None:
        """Wait for the TRUNCATE checkpoint that empties the overgrown WAL, starting it if none runs: a burst of
        writes that never yields the loop would give it no chance to run otherwise."""
        while self._wal_full and not self._closing:
            if self._truncation is None:
                self._truncation = asyncio.create_task(self._run_truncation())
            await asyncio.wait({self._truncation})  # a cancelled writer leaves the checkpoint running

    async def _run_checkpoint(self) -> None:
        """A PASSIVE checkpoint on a reader's thread, while writes go on: it copies pages into the database
        file, but it cannot reset a WAL that writes keep appending to (`_run_truncation` does)."""
        try:
            async with self._take_reader() as (reader, _repos):
                if not self._checkpoint_lock.locked():  # else a TRUNCATE is doing the work
                    async with self._checkpoint_lock:
                        await reader.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)
        finally:
            self._checkpoint = None

    async def _run_truncation(self) -> None:
        """A TRUNCATE checkpoint under the write lock (no write of ours runs), on the database thread: it copies
        what PASSIVE ones left, waits up to TRUNCATE_WAIT_SECONDS for older snapshots to end (reads go on
        meanwhile; new ones read the database file) and empties the WAL. It takes no reader, so a long
        read holds writes up for that long at most."""
        try:
            size = self._wal_bytes()
            async with self._write_lock, self._checkpoint_lock:  # a running PASSIVE one finishes first
                emptied = await self._inline.offload(_truncate_wal, self._writer)
            if emptied:
                self._truncate_above = WAL_TRUNCATE_BYTES
            else:  # a long read: don't hold writes up again before the WAL has doubled
                self._truncate_above = 2 * max(size, WAL_TRUNCATE_BYTES)
                log.info("WAL not emptied yet: a snapshot (a long read, or another process) is still open")
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint (TRUNCATE) failed: %s", exc)
        finally:
            self._wal_full = False
            self._truncation = None
