"""The PostgreSQL engine: the same transaction and read interface as the SQLite `Database`, on asyncpg pools.

The repositories are the same: their SQL goes through the dialect layer (`storage.db.dialect`: placeholders
and the few constructs that differ, translated once per statement), and rows come back as `Row`, an
`asyncpg.Record` read by column name or position like `sqlite3.Row` (a missing name raises IndexError, as
`from_row` expects). PostgreSQL's `numeric` (what SUM over BIGINT and AVG give) comes back as an int when it
is whole and a float otherwise, as SQLite's SUM and AVG do.

Writes: each outermost `transaction()` (or `unit()`) takes a connection of the writers' pool and runs one READ
COMMITTED transaction on it; several run at once (there is no single writer, unlike SQLite: the repositories'
conditional updates, `ON CONFLICT` and constraints are what keeps the invariants). A `transaction()` or
`read()` that the same task opens inside it joins it as a savepoint (a read sees the unit's writes), as on
SQLite. `on_commit` callbacks run once the outermost transaction has committed.

Reads (`read()`): a connection of the readers' pool, one REPEATABLE READ READ ONLY transaction: one consistent
snapshot that neither waits for writes nor holds them up.

A statement that breaks a constraint raises `sqlite3.IntegrityError` with PostgreSQL's message (which names the
constraint, e.g. `balance_nonnegative`), so the repositories that tell such a refusal by its name keep working;
the triggers of the PostgreSQL schema refuse with SQLSTATE 23000 for the same reason. Unlike SQLite, a failed
statement aborts the PostgreSQL transaction it ran in: only rolling back (the whole or to a savepoint, i.e. the
`transaction()` block around it) lets it go on.

Opening applies the migrations of `storage/migrations/postgres` (the same numbers as SQLite's) under a
transaction-scoped advisory lock, so processes starting together migrate once; each applied migration's
SHA-256 is recorded, and opening refuses a database whose applied migrations were changed since, or that a
newer vipbot migrated.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import asyncpg

from storage.db.dialect import bind
from storage.db.open import WRITERS
from storage.db.open import redacted_url as redacted
from storage.db.preflight import StorageError, is_sqlite_fault
from storage.db.sql import Params
from storage.repos import Repos

log = logging.getLogger(__name__)

READERS = 4
ANSWERED_RECENTLY_SECONDS = 5.0
"""A commit this recent stands for a ping (`PostgresDatabase.ping`)."""
"""Connections for reads (`read()`) by default."""
CONNECT_TIMEOUT_SECONDS = 10.0
SESSION_SETTINGS = {
    "tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "2",
    "idle_in_transaction_session_timeout": "30000",
}  # fmt: skip
"""Each pool connection's settings: the server drops the session of a worker whose machine went silent after
about 9 s (TCP keepalives), and one that sits idle inside a transaction for 30 s (a stuck worker), so that the
row locks its transaction holds (an update's inbox row, which WeChat's retry on another worker waits for) go
with it. A transaction never waits for anything outside the database, so 30 s idle in one is a fault."""
CLOSE_TIMEOUT_SECONDS = 5.0
"""How long `close` waits for connections still in use before terminating them."""
MIGRATION_LOCK = 0x7669_7062_6F74  # 'vipbot': the advisory lock held while migrating
SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL,"
    " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


def migration_scripts() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered PostgreSQL migration shipped with the package, in order."""
    found = []
    for entry in (resources.files("storage.migrations") / "postgres").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def checksum(sql: str) -> str:
    """The SHA-256 recorded for an applied migration (of its text as shipped)."""
    return hashlib.sha256(sql.encode("utf-8")).hexdigest()


class Row(asyncpg.Record):
    """A row like `sqlite3.Row`: by position or column name, and a missing name raises IndexError."""

    def __getitem__(self, key: Any) -> Any:
        try:
            return super().__getitem__(key)
        except KeyError:
            raise IndexError(f"No item with that key: {key!r}") from None


def _numeric(text: str) -> int | float:
    """PostgreSQL's numeric as SQLite would give it: an int when whole, else a float."""
    if text.lstrip("-").isdigit():
        return int(text)
    value = float(text)
    return value


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set up a new connection of the pools (numeric as SQLite's numbers)."""
    await conn.set_type_codec("numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text")


@dataclass(frozen=True, slots=True)
class PgOutcome:
    """What `execute` returns: the rows a write changed (from PostgreSQL's command tag; -1 when it has none)."""

    rowcount: int


_COUNT = re.compile(r"(\d+)$")


def _rowcount(status: str) -> int:
    match = _COUNT.search(status or "")
    return int(match.group(1)) if match else -1


def _integrity(exc: asyncpg.IntegrityConstraintViolationError) -> sqlite3.IntegrityError:
    constraint = getattr(exc, "constraint_name", None)
    message = str(exc) if not constraint or constraint in str(exc) else f"{exc} ({constraint})"
    return sqlite3.IntegrityError(message)


def _storable(args: list[Any]) -> list[Any]:
    """The parameters with every NUL character of a text replaced by U+FFFD: PostgreSQL's text cannot hold one
    (SQLite's can), and a member's message with one in it must still be handled, not fail."""
    if not any(isinstance(a, str) and "\x00" in a for a in args):
        return args
    return [a.replace("\x00", "\ufffd") if isinstance(a, str) else a for a in args]


class PgStatements:
    """One connection's statements, translated by the dialect layer (`bulk` changes nothing: asyncpg never
    blocks the loop)."""

    __slots__ = ("_conn",)
    engine = "postgresql"
    """Which engine runs the statements, for the few that say more on PostgreSQL (e.g. `FOR UPDATE SKIP LOCKED`)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = (), *, bulk: bool = False) -> PgOutcome:
        text, args = bind(sql, params)
        try:
            status = await self._conn.execute(text, *_storable(args))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity(exc) from exc
        return PgOutcome(_rowcount(status))

    async def execute_fetchall(self, sql: str, params: Params = (), *, bulk: bool = False) -> Sequence[Row]:
        text, args = bind(sql, params)
        try:
            return await self._conn.fetch(text, *_storable(args))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise _integrity(exc) from exc


@dataclass(eq=False)
class _Unit:
    """The open outermost transaction of one task on one database."""

    db: PostgresDatabase
    task: asyncio.Task[Any] | None
    conn: asyncpg.Connection
    repos: Repos
    callbacks: list[Callable[[], None]] = field(default_factory=list)


_UNIT: contextvars.ContextVar[_Unit | None] = contextvars.ContextVar("vipbot_pg_unit", default=None)

_FAULTS = (
    asyncpg.DiskFullError,
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.PostgresConnectionError,  # the connection was lost (ConnectionDoesNotExistError among them)
    asyncpg.CannotConnectNowError,  # the server is starting or shutting down
    asyncpg.AdminShutdownError,
    ConnectionError,
)


def is_server_fault(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) means the PostgreSQL server, not the request, is at
    fault: a full disk, a read-only server, a lost connection."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _FAULTS):
            return True
        current = current.__cause__
    return False


def is_storage_fault(exc: BaseException) -> bool:
    """`is_server_fault`, or one of SQLite's faults (see `preflight.is_storage_fault`, which asks both)."""
    return is_server_fault(exc) or is_sqlite_fault(exc)


class PostgresDatabase:
    is_storage_fault = staticmethod(is_storage_fault)
    """Whether an exception is a database fault (disk full, read-only, connection lost): apologise."""

    def __init__(self, url: str, writers: asyncpg.Pool, readers: asyncpg.Pool) -> None:
        self.url = url
        self.path = redacted(url)
        """Where the database is, for messages (the URL without its password)."""
        self._writers = writers
        self._readers = readers
        self._open_units = 0  # outermost write transactions open now (`writing`)
        self._answered_at = float("-inf")  # when a write transaction last committed (monotonic seconds)
        self.on_transaction: Callable[[float], None] | None = None
        """Called after each outermost transaction (committed or rolled back) with the seconds from asking for a
        connection to the end of its COMMIT or ROLLBACK. It must be quick; an error of its own is logged."""

    @classmethod
    async def open(
        cls, url: str, *, readers: int = READERS, writers: int = WRITERS, loop_statement_ms: float | None = None
    ) -> PostgresDatabase:
        """Connect to the PostgreSQL database at `url` (`postgresql://user@host:port/name`) and migrate it, with
        pools of `writers` and `readers` connections. `loop_statement_ms` is accepted for the SQLite engine's
        sake and ignored: no statement runs on the loop's thread here. A database that cannot be reached, was
        migrated by a newer vipbot, or whose applied migrations changed raises `StorageError`."""
        if readers < 1 or writers < 1:
            raise ValueError("at least one reader and one writer connection are needed")
        where = redacted(url)
        try:
            conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"cannot connect to the PostgreSQL database {where}: {exc}") from exc
        try:
            await _migrate(conn, where)
        finally:
            await conn.close()
        pools: list[asyncpg.Pool] = []
        try:
            for size in (writers, readers):
                pool = await asyncpg.create_pool(
                    url, min_size=1, max_size=size, init=init_connection, record_class=Row,
                    timeout=CONNECT_TIMEOUT_SECONDS, server_settings=SESSION_SETTINGS,
                )  # fmt: skip
                pools.append(pool)
        except BaseException:
            for pool in pools:
                pool.terminate()
            raise
        return cls(url, pools[0], pools[1])

    async def close(self) -> None:
        for pool in (self._readers, self._writers):
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("PostgreSQL connections still busy after %ss: terminated", CLOSE_TIMEOUT_SECONDS)
                pool.terminate()

    async def idle(self) -> None:
        """Nothing runs in the background on PostgreSQL (no WAL checkpoints of ours): returns at once."""

    async def settle(self, tries: int = 3, *, after_changes: int = 0) -> None:
        """Between two chunks of a long job: nothing to do on PostgreSQL (the server manages its WAL)."""

    async def schema_version(self) -> int:
        async with self.read() as repos:
            row = await repos.conn.execute_fetchall("SELECT MAX(version) FROM schema_version")
        return int(row[0][0]) if row and row[0][0] is not None else 0

    async def ping(self) -> None:
        """Raises if the database cannot be reached: a trivial query on a connection of each pool, unless a
        transaction of this process committed within the last ANSWERED_RECENTLY_SECONDS. Under a burst every
        connection is in use and a ping would wait its turn behind the work; the server has just answered,
        and a load balancer must not take a busy worker for a dead one."""
        if time.monotonic() - self._answered_at < ANSWERED_RECENTLY_SECONDS:
            return
        for pool in (self._readers, self._writers):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")

    def _owned(self) -> _Unit | None:
        unit = _UNIT.get()
        if unit is not None and unit.db is self and unit.task is asyncio.current_task():
            return unit
        return None

    @property
    def writing(self) -> bool:
        """Whether a write transaction is open (on any connection) right now."""
        return self._open_units > 0

    @property
    def caller_writing(self) -> bool:
        """Whether the caller runs inside one of this database's write transactions (a task in its block, or a
        thread that task handed work to: the context goes along). Other connections' transactions do not count:
        they run side by side here."""
        unit = _UNIT.get()
        return unit is not None and unit.db is self

    @asynccontextmanager
    async def transaction(self, *, background: bool = False) -> AsyncIterator[Repos]:
        """One use case = one transaction; commits on success, rolls back on any exception. Inside a transaction
        of the same task, a savepoint of it. `background` is accepted for the SQLite engine's sake: transactions
        do not queue for one writer here, so there is nothing to let go first."""
        unit = self._owned()
        if unit is not None:
            savepoint = unit.conn.transaction()
            await savepoint.start()
            try:
                yield unit.repos
            except BaseException:
                with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
                    await savepoint.rollback()
                raise
            await savepoint.commit()
            return
        asked = time.monotonic()
        try:
            async with self._writers.acquire() as conn:
                outer = conn.transaction(isolation="read_committed")
                await outer.start()
                unit = _Unit(self, asyncio.current_task(), conn, Repos(PgStatements(conn)))
                token = _UNIT.set(unit)
                self._open_units += 1
                try:
                    yield unit.repos
                except BaseException:
                    unit.callbacks = []
                    with contextlib.suppress(asyncpg.InterfaceError, asyncpg.PostgresError, OSError):
                        await outer.rollback()
                    raise
                else:
                    try:
                        await outer.commit()
                    except asyncpg.IntegrityConstraintViolationError as exc:  # a deferred constraint
                        raise _integrity(exc) from exc
                    self._answered_at = time.monotonic()
                finally:
                    self._open_units -= 1
                    _UNIT.reset(token)
        finally:
            self._timed(asked)
        for callback in unit.callbacks:
            callback()

    unit = transaction
    """The transaction of one inbound update (the same thing, named for the reader of the dispatcher)."""

    def _timed(self, asked: float) -> None:
        if self.on_transaction is None:
            return
        try:
            self.on_transaction(time.monotonic() - asked)
        except Exception:
            log.exception("on_transaction failed")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Repos]:
        """Repositories for reading, on a reader connection: one REPEATABLE READ READ ONLY snapshot. Inside a
        `unit()` of the same task it reads the unit's own writes."""
        unit = self._owned()
        if unit is not None:
            yield unit.repos
            return
        async with self._readers.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield Repos(PgStatements(conn))

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the running task's transaction has committed (now, outside a transaction);
        forgotten if it rolls back."""
        unit = self._owned()
        if unit is not None:
            unit.callbacks.append(callback)
        else:
            callback()


async def _applied(conn: asyncpg.Connection) -> Mapping[int, tuple[str, str]]:
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_version")
    return {int(r["version"]): (r["name"], r["checksum"]) for r in rows}


def _check_applied(applied: Mapping[int, tuple[str, str]], scripts: Sequence[tuple[int, str, str]], where: str) -> None:
    """Refuse a database migrated by a newer vipbot, or whose applied migrations differ from the shipped ones."""
    shipped = {version: (name, checksum(sql)) for version, name, sql in scripts}
    newer = sorted(set(applied) - set(shipped))
    if newer:
        raise StorageError(
            f"the PostgreSQL database {where} was migrated by a newer vipbot (migration {newer[-1]}):"
            " run that version, or restore a backup made for this one"
        )
    changed = [applied[v][0] for v in sorted(applied) if applied[v][1] != shipped[v][1]]
    if changed:
        raise StorageError(
            f"the PostgreSQL database {where} was migrated with a different {changed[0]} than this vipbot ships"
            " (an applied migration was edited): restore the file as released, or the database from a backup"
        )


async def _migrate(conn: asyncpg.Connection, where: str) -> None:
    """Apply each migration not yet recorded, in order, one transaction each, under the advisory lock (a second
    process starting at the same time waits, then finds it applied)."""
    scripts = migration_scripts()
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(SCHEMA_VERSION_TABLE)
            applied = await _applied(conn)
            _check_applied(applied, scripts, where)
            pending = [script for script in scripts if script[0] not in applied]
            if not pending:
                return
            version, name, sql = pending[0]
            log.info("applying PostgreSQL migration %s", name)
            try:
                await conn.execute(sql)
            except asyncpg.PostgresError as exc:
                raise StorageError(f"PostgreSQL migration {name} failed on {where}: {exc}") from exc
            await conn.execute(
                "INSERT INTO schema_version(version, name, checksum) VALUES ($1, $2, $3)", version, name, checksum(sql)
            )
