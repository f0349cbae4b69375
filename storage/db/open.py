"""Opening the configured engine: SQLite (the embedded default) or PostgreSQL, chosen by `storage.url`.

`storage.url` is `sqlite:///data/vipbot.db` (a relative path; `sqlite:////srv/vipbot.db` an absolute one), empty
(SQLite at `storage.path`), or `postgresql://user:password@host:port/name` (`postgres://` too). `parse_url` is
the one place that reads it; the configuration validates with it, `open_database` opens what it names, and
`hold_instance` keeps a second bot process off a SQLite file (on PostgreSQL any number share a database, one
leading: `bot.app.leader`). asyncpg is imported only
when PostgreSQL is configured, so the SQLite deployment never needs it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol
from urllib.parse import urlsplit, urlunsplit

from storage.db import instance
from storage.db.database import Database, is_file_path

if TYPE_CHECKING:
    from storage.db.postgres import PostgresDatabase

Engine = Literal["sqlite", "postgresql"]
POSTGRES_SCHEMES = ("postgresql", "postgres")
SQLITE_PREFIX = "sqlite:///"
WRITERS = 8
"""PostgreSQL connections for transactions (`transaction()`, `unit()`) by default: transactions at the same time."""


@dataclass(frozen=True, slots=True)
class Location:
    """What `storage.url` names: the engine, and for SQLite the file (empty when the URL is empty)."""

    engine: Engine
    sqlite_path: str = ""


def parse_url(url: str) -> Location:
    """Read `storage.url`; a ValueError says what is wrong, never repeating a password."""
    url = url.strip()
    if not url:
        return Location("sqlite")
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("must be a URL: postgresql://user@host:5432/name, or sqlite:///path/to/vipbot.db")
    if scheme in POSTGRES_SCHEMES:
        try:
            urlsplit(url).port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ValueError(f"is not a valid PostgreSQL URL ({exc}): postgresql://user@host:5432/name") from None
        return Location("postgresql")
    if scheme == "sqlite":
        if not url.lower().startswith(SQLITE_PREFIX):
            raise ValueError(
                "a sqlite URL has no host: sqlite:///data/vipbot.db (relative) or sqlite:////srv/vipbot.db (absolute)"
            )
        path = url[len(SQLITE_PREFIX):]
        if not path or "?" in path or not is_file_path(path):
            raise ValueError(
                "must name a database file, without options: sqlite:///data/vipbot.db (the bot's reader and"
                " writer connections share the file)"
            )
        return Location("sqlite", path)
    raise ValueError(
        f"unknown scheme {scheme!r}: use postgresql://user@host:5432/name (or postgres://), or"
        " sqlite:///path/to/vipbot.db (or leave it empty for storage.path)"
    )


def same_file(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b)


def redacted_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname or ''}" if parts.username else parts.hostname or ""
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


class StorageTarget(Protocol):
    """What opening needs to know (`bot.app.config.StorageSettings` is one)."""

    @property
    def url(self) -> str: ...

    @property
    def engine(self) -> Engine: ...

    @property
    def sqlite_path(self) -> str: ...

    @property
    def readers(self) -> int: ...

    @property
    def writers(self) -> int: ...


async def open_database(
    target: StorageTarget,
    *,
    readers: int | None = None,
    writers: int | None = None,
    loop_statement_ms: float | None = None,
) -> Database | PostgresDatabase:
    """Open (and migrate) the database `target` names, with `readers` (default: its own) reader connections and,
    on PostgreSQL, `writers` (default: its own) connections for transactions. Raises `StorageError` when it
    cannot be used."""
    readers = readers or target.readers
    if target.engine == "postgresql":
        from storage.db.postgres import PostgresDatabase  # asyncpg only for PostgreSQL

        return await PostgresDatabase.open(
            target.url, readers=readers, writers=writers or target.writers, loop_statement_ms=loop_statement_ms
        )
    return await Database.open(target.sqlite_path, readers=readers, loop_statement_ms=loop_statement_ms)


@asynccontextmanager
async def hold_instance(target: StorageTarget) -> AsyncIterator[None]:
    """One bot process per SQLite file for the duration of the block: the lock file beside the database
    (`storage.db.instance`); a second one raises `instance.AlreadyRunning` (a StorageError: one line, exit code
    2). On PostgreSQL nothing is held here: several processes share the database and elect a leader."""
    if target.engine == "postgresql":
        yield
        return
    with instance.hold(target.sqlite_path):
        yield
