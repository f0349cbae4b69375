"""A consistent copy of the live database, and putting one back.

`backup` copies with SQLite's online backup API from a read-only connection in one step: in WAL mode that is one
read transaction, so the copy is the database as of one commit, and the running bot keeps writing meanwhile
(readers never block writers there). The copy is written beside the target and renamed into place only once
`PRAGMA integrity_check` says ok, so a half-written backup never has the target's name.

`restore` refuses a file that is not a vipbot database, or one newer than this version knows, keeps the
current database as `<path>.before-restore`, and copies the backup in with the same API. The bot must be
stopped first (a running bot would go on with the database it has open).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from storage.db.preflight import StorageError, check_contents


def _newest_migration() -> int:
    from storage.db.database import migration_scripts

    return migration_scripts()[-1][0]


def _read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise StorageError(f"{path.absolute()} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path.absolute()}?mode=ro", uri=True)
        check_contents(conn, str(path), _newest_migration())
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path.absolute()} is not an SQLite database ({exc})") from exc
    return conn


def _copy(source: sqlite3.Connection, target: Path) -> int:
    """Copy `source` into a new file beside `target`, check it, rename it into place; the copy's page count."""
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    copy = sqlite3.connect(part)
    try:
        source.backup(copy)  # pages=-1: all of it in one step, one snapshot
        verdict = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if verdict != "ok":
            raise StorageError(f"the copy failed its integrity check: {verdict}")
        pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
    except BaseException:
        copy.close()
        part.unlink(missing_ok=True)
        raise
    copy.close()
    os.replace(part, target)
    return pages


def backup(database: Path, target: Path) -> int:
    """Copy the live `database` to `target` (replacing it); returns the pages copied."""
    if target.absolute() == database.absolute():
        raise StorageError("the backup must not be the database itself")
    source = _read_only(database)
    try:
        return _copy(source, target)
    finally:
        source.close()


def restore(backup_file: Path, database: Path) -> Path | None:
    """Put `backup_file` in place of `database` (with the bot stopped); returns where the previous database was
    kept, or None when there was none."""
    source = _read_only(backup_file)
    kept: Path | None = None
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        if database.exists():
            kept = database.with_name(database.name + ".before-restore")
            current = sqlite3.connect(database)
            try:
                _copy(current, kept)  # the WAL's commits included
            finally:
                current.close()
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                database.with_name(database.name + suffix).unlink()
        _copy(source, database)
    finally:
        source.close()
    return kept
