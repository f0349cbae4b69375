"""Checks before the bot trusts a database file, and how disk faults are recognised.

`check_path` runs before SQLite touches anything: the folder exists (or can be created) and is writable,
`storage.path` is not a folder, and an existing file is readable, writable and starts with SQLite's header.
`check_contents` runs on a fresh connection before any PRAGMA that writes: the database is ours (it has our
`schema_version` table, or no tables at all) and not from a newer vipbot. Either raises `StorageError`, whose
message is one line saying what is wrong, where, and what to do; `describe_error` turns an `sqlite3.Error`
met while opening or migrating into the same kind of line.

`is_storage_fault` tells a disk or I/O fault (disk full, I/O error, read-only, cannot open) from any other
failure, so that a caller can apologise to a member ("try again later") instead of crashing.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite database file."""

_FAULT_CODES = frozenset({sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})
"""Primary result codes (extended codes masked with 0xFF) that mean the disk, not the request, is at fault."""
_FAULT_MESSAGES = ("database or disk is full", "disk i/o error", "readonly database", "unable to open database")
_FAULT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


class StorageError(Exception):
    """The database cannot be used; `str()` is one line: what is wrong, the path, and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


def is_storage_fault(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) means the database, not the request, is at fault, on
    either engine: SQLite's (`is_sqlite_fault`) or, when the PostgreSQL engine is in use, the server's (a full
    disk, a read-only server, a lost connection: `storage.db.postgres.is_server_fault`)."""
    if is_sqlite_fault(exc):
        return True
    postgres = sys.modules.get("storage.db.postgres")  # loaded only when PostgreSQL is configured
    return postgres is not None and bool(postgres.is_server_fault(exc))


def is_sqlite_fault(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it was raised from) is a disk or I/O fault: SQLITE_FULL, SQLITE_IOERR,
    SQLITE_READONLY, SQLITE_CANTOPEN, or an OSError for a full, failing or read-only disk."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlite3.Error):
            code = getattr(current, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _FAULT_CODES:
                return True
            text = str(current).lower()
            if any(fault in text for fault in _FAULT_MESSAGES):
                return True
        elif isinstance(current, OSError) and current.errno in _FAULT_ERRNOS:
            return True
        current = current.__cause__
    return False


def check_path(path: str) -> None:
    """Refuse a database path that SQLite could not use as ours; creates the missing folder."""
    file = Path(path)
    where = file.absolute()
    if file.is_dir():
        raise StorageError(
            f"storage.path {where} is a folder, not a database file: set storage.path to a file in it,"
            f" e.g. {where / 'vipbot.db'}"
        )
    folder = where.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), folder)
        raise StorageError(
            f"cannot create the database folder {folder}: {blocker} is a file, not a folder;"
            " move that file away, or set storage.path to another folder"
        ) from None
    except OSError as exc:
        raise StorageError(
            f"cannot create the database folder {folder}: {exc.strerror or exc};"
            " create it yourself, or set storage.path to a folder this user can write"
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(
            f"the database folder {folder} is read-only (SQLite keeps its -wal and -shm files beside the database):"
            " make it writable for this user, or set storage.path to a folder this user can write"
        )
    if not file.exists():
        return
    if not os.access(file, os.R_OK):
        raise StorageError(
            f"the database file {where} cannot be read by this user: fix its permissions, or set storage.path"
            " to another file"
        )
    if not os.access(file, os.W_OK):
        raise StorageError(
            f"the database file {where} is read-only: make it writable for this user (chmod u+w),"
            " or set storage.path to another file"
        )
    try:
        with file.open("rb") as stream:
            head = stream.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StorageError(
            f"cannot read the database file {where}: {exc.strerror or exc}; check the disk and its permissions"
        ) from None
    if head and head != SQLITE_HEADER:
        raise StorageError(
            f"{where} is not an SQLite database: set storage.path to the bot's database file,"
            " or move this file away to start a new database"
        )


def check_contents(conn: sqlite3.Connection, path: str, newest: int) -> None:
    """Refuse a database that is not ours or whose schema is newer than `newest`, the newest migration
    shipped. Reads only: runs before any PRAGMA or migration writes to the file."""
    where = Path(path).absolute()
    tables = {
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        ).fetchall()
    }
    if not tables:
        return  # a new (or empty) database: the migrations make it ours
    if "schema_version" not in tables:
        raise StorageError(
            f"{where} is an SQLite database of some other program (it has tables but no schema_version of"
            " vipbot's): set storage.path to the bot's own database, or to a new file"
        )
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    version = int(row[0]) if row is not None and row[0] is not None else 0
    if version > newest:
        raise StorageError(
            f"the database {where} has schema version {version}, newer than this vipbot knows ({newest}):"
            " upgrade vipbot, or set storage.path to a database made by this version"
        )


def describe_error(path: str, exc: sqlite3.Error) -> StorageError:
    """The one-line `StorageError` for an SQLite error met while opening or migrating the database."""
    where = Path(path).absolute()
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if code is not None else None
    name = getattr(exc, "sqlite_errorname", None)
    what = f"{exc} ({name})" if name else str(exc)
    if primary == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        advice = "free some disk space, then start the bot again"
    elif primary in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        advice = "make the file and its folder writable for this user, or set storage.path elsewhere"
    elif primary == sqlite3.SQLITE_IOERR:
        advice = "check the disk (dmesg), then start the bot again"
    elif primary in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        advice = "the file is damaged or not an SQLite database: restore a backup, or set storage.path elsewhere"
    elif primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        advice = "another program holds the database locked: stop it, then start the bot again"
    else:
        advice = "fix the cause, then start the bot again"
    return StorageError(f"cannot open the database {where}: {what}; {advice}")
