"""Nothing lost on a bad file or a full disk: start-up refuses a database it cannot use with one line (exit code 2
from the real CLI, no traceback), the WAL stays bounded through a burst of writes, and a write that fails on a
full disk is a storage fault after which the same connection writes again once there is space."""

from __future__ import annotations

import functools
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.db import database
from storage.db.database import Database, migration_scripts
from storage.db.preflight import StorageError, is_storage_fault

ROOT = Path(__file__).resolve().parent.parent
VIPBOT = Path(sys.executable).with_name("vipbot")
if not VIPBOT.exists():
    VIPBOT = ROOT / ".venv" / "bin" / "vipbot"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
WITHOUT_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
"""Permission bits do not stop root: as root, the read-only cases run the CLI without the capabilities that
override them (still root, so the interpreter and pytest's folders, all root's own, stay reachable)."""
MiB = 1024 * 1024


def _ours(path: Path, version: int) -> None:
    """An SQLite file with vipbot's schema_version table at `version` (and nothing else)."""
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    conn.execute("INSERT INTO schema_version(version, name) VALUES (?, ?)", (version, f"{version:04d}_x.sql"))
    conn.commit()
    conn.close()


def _not_sqlite(d: Path) -> Path:
    (d / "vip.db").write_text("name,points\n小王,700\n", encoding="utf-8")  # e.g. an export saved over it
    return d / "vip.db"


def _damaged(d: Path) -> Path:
    (d / "vip.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)  # the header, then garbage
    return d / "vip.db"


def _a_folder(d: Path) -> Path:
    (d / "vip.db").mkdir()
    return d / "vip.db"


def _file_in_the_way(d: Path) -> Path:
    (d / "data").write_text("not a folder", encoding="utf-8")
    return d / "data" / "vip.db"


def _not_ours(d: Path) -> Path:
    conn = sqlite3.connect(d / "shop.db")
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)")
    conn.execute("INSERT INTO orders(total) VALUES (1999)")
    conn.commit()
    conn.close()
    return d / "shop.db"


def _newer(d: Path) -> Path:
    _ours(d / "vip.db", migration_scripts()[-1][0] + 1)
    return d / "vip.db"


def _read_only_file(d: Path) -> Path:
    _ours(d / "vip.db", 1)
    (d / "vip.db").chmod(0o444)
    return d / "vip.db"


def _read_only_folder(d: Path) -> Path:
    _ours(d / "vip.db", 1)
    (d / "vip.db").chmod(0o666)  # the file is writable, its folder (for the -wal and -shm files) is not
    d.chmod(0o555)
    return d / "vip.db"


def _folder_not_creatable(d: Path) -> Path:
    d.chmod(0o555)
    return d / "sub" / "vip.db"


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path], Path]
    says: str
    """What the one line must say."""
    unprivileged: bool = False
    """Only an unprivileged user is refused (permission bits)."""


CASES = [
    Case("not-sqlite", _not_sqlite, "is not an SQLite database"),
    Case("damaged", _damaged, "file is not a database (SQLITE_NOTADB)"),
    Case("a-folder", _a_folder, "is a folder, not a database file"),
    Case("file-in-the-way", _file_in_the_way, "is a file, not a folder"),
    Case("not-ours", _not_ours, "database of some other program"),
    Case("newer-schema", _newer, "newer than this vipbot knows"),
    Case("read-only-file", _read_only_file, "is read-only: make it writable", unprivileged=True),
    Case("read-only-folder", _read_only_folder, "is read-only (SQLite keeps its -wal and -shm", unprivileged=True),
    Case("folder-not-creatable", _folder_not_creatable, "cannot create the database folder", unprivileged=True),
]


@pytest.fixture
def base(tmp_path: Path) -> Iterator[Path]:
    """A folder for one case; its permissions are restored afterwards so that pytest can remove it."""
    yield tmp_path
    for folder, _, _ in os.walk(tmp_path):
        os.chmod(folder, 0o755)


@functools.cache
def _can_drop_override() -> bool:
    if shutil.which("setpriv") is None:
        return False
    return subprocess.run([*WITHOUT_OVERRIDE, "true"], capture_output=True, check=False).returncode == 0


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    return {p.name: (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
async def test_opening_refuses_an_unusable_database_with_one_line_and_touches_nothing(case: Case, base: Path) -> None:
    if case.unprivileged and AS_ROOT:
        pytest.skip("permission bits do not stop root; the CLI test runs this case without the override capabilities")
    data = base / "data-case"
    data.mkdir()
    path = case.make(data)
    before = _snapshot(data)
    with pytest.raises(StorageError) as info:
        await Database.open(path)
    message = str(info.value)
    assert "\n" not in message and case.says in message
    assert str(data) in message  # says where
    assert _snapshot(data) == before  # refused before SQLite wrote anything (no WAL switch, no -wal file)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_cli_refuses_an_unusable_database_with_one_line_and_exit_code_2(case: Case, base: Path) -> None:
    data = base / "data-case"
    data.mkdir()
    config = base / "config.yaml"
    config.write_text(f"storage: {{path: '{case.make(data)}'}}\n", encoding="utf-8")
    unprivileged = case.unprivileged and AS_ROOT
    if unprivileged and not _can_drop_override():
        pytest.skip("running as root, and setpriv cannot drop the capabilities that override permission bits")
    result = _vipbot("console", config, base, unprivileged=unprivileged)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("vipbot: ") and case.says in lines[0] and str(data) in lines[0]
    assert result.stdout == ""


def test_vipbot_run_refuses_too(base: Path) -> None:
    config = base / "config.yaml"
    config.write_text(f"storage: {{path: '{_not_ours(base)}'}}\n", encoding="utf-8")
    result = _vipbot("run", config, base)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    # Without credentials `run` first says it opens the console instead; the refusal is the one line after.
    refusals = [line for line in result.stderr.splitlines() if line.startswith("vipbot: ")]
    assert len(refusals) == 1 and "database of some other program" in refusals[0]
    assert result.stderr.splitlines()[-1] == refusals[0]


def _vipbot(command: str, config: Path, cwd: Path, *, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIPBOT_", "TELEGRAM_", "WECHAT_"))}
    env["HOME"] = str(cwd)
    return subprocess.run(
        [*(WITHOUT_OVERRIDE if unprivileged else []), str(VIPBOT), command, "--config", str(config)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=60,
        check=False,
    )


async def test_an_empty_file_is_ours_and_gets_migrated(tmp_path: Path) -> None:
    path = tmp_path / "vip.db"
    path.touch()
    db = await Database.open(path)
    try:
        assert await db.schema_version() == migration_scripts()[-1][0]
    finally:
        await db.close()


async def test_an_sqlite_error_while_migrating_is_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = [*migration_scripts(), (9999, "9999_broken.sql", "CREATE TABLE half (")]
    monkeypatch.setattr(database, "migration_scripts", lambda: broken)
    with pytest.raises(StorageError) as info:
        await Database.open(tmp_path / "vip.db")
    assert isinstance(info.value.__cause__, sqlite3.Error)
    assert "\n" not in str(info.value) and "syntax error" in str(info.value) and "vip.db" in str(info.value)
    monkeypatch.undo()  # the migrations that did apply were committed; the file opens with the shipped ones
    db = await Database.open(tmp_path / "vip.db")
    await db.close()


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def _burst(db: Database, path: Path, writes: int, read_every: int = 0) -> int:
    """`writes` small transactions one after another (each a /start), a read every `read_every`; the peak WAL."""
    peak = 0
    for i in range(writes):
        async with db.transaction() as repos:
            await repos.members.register("test", f"u{i}", f"U{i}", None, 0)
        if read_every and i % read_every == 0:
            async with db.read() as repos:
                await repos.members.count()
        peak = max(peak, _wal_bytes(path))
    return peak


# The size is looked at every WAL_CHECK_AFTER_CHANGES rows, so the WAL passes the threshold by at most that much.
WAL_BOUND = database.WAL_TRUNCATE_BYTES + 4 * MiB


@pytest.mark.parametrize("read_every", [0, 10], ids=["writes-only", "with-reads"])
async def test_the_wal_stays_bounded_through_5000_small_transactions(tmp_path: Path, read_every: int) -> None:
    path = tmp_path / "vip.db"
    db = await Database.open(path)
    try:
        assert db._writer.execute("PRAGMA journal_size_limit").fetchone()[0] == database.JOURNAL_SIZE_LIMIT_BYTES
        # writes-only never yields the loop to the background checkpoint: the writes must wait for it themselves
        peak = await _burst(db, path, 5000, read_every)
        assert peak < WAL_BOUND
        async with db.read() as repos:
            assert await repos.members.count() == 5000
    finally:
        await db.close()
    assert _wal_bytes(path) == 0  # closing empties it


async def test_without_the_truncate_the_same_burst_outgrows_that_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: the burst above does write far more WAL than the bound, had nothing emptied it."""
    monkeypatch.setattr(database, "WAL_TRUNCATE_BYTES", 1 << 62)
    path = tmp_path / "vip.db"
    db = await Database.open(path)
    try:
        assert await _burst(db, path, 5000) > 3 * WAL_BOUND
    finally:
        await db.close()


async def test_a_full_disk_is_a_storage_fault_and_writes_resume_when_space_returns(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "vip.db")
    writer = db._writer  # test-only access: the page limit is the writer connection's
    try:
        async with db.transaction() as repos:
            first, _ = await repos.members.register("test", "first", "First", None, 0)
        unlimited = writer.execute("PRAGMA max_page_count").fetchone()[0]
        writer.execute(f"PRAGMA max_page_count={writer.execute('PRAGMA page_count').fetchone()[0]}")  # disk full

        with pytest.raises(sqlite3.Error) as info:
            async with db.transaction() as repos:
                for i in range(500):  # far more than the free room in the last pages
                    await repos.members.register("test", f"u{i}", "U" * 200, None, 0)
        assert is_storage_fault(info.value) and Database.is_storage_fault(info.value)
        assert info.value.sqlite_errorcode == sqlite3.SQLITE_FULL
        assert not writer.in_transaction  # nothing left half-done on the connection

        await db.ping()  # both connections still answer
        async with db.read() as repos:
            assert await repos.members.count() == 1  # nothing of the failed use case
        async with db.transaction() as repos:  # a write that needs no new page works even while full
            await repos.conn.execute("UPDATE members SET display_name = 'Erste' WHERE id = ?", (first,))

        writer.execute(f"PRAGMA max_page_count={unlimited}")  # space returns: no reopening
        async with db.transaction() as repos:
            for i in range(500):
                await repos.members.register("test", f"u{i}", "U" * 200, None, 0)
        async with db.read() as repos:
            assert await repos.members.count() == 501
    finally:
        await db.close()


async def test_a_failed_commit_is_rolled_back_and_the_next_write_succeeds(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "vip.db")
    try:
        with pytest.raises(sqlite3.IntegrityError):  # a deferred constraint fails at COMMIT, as a full disk can
            async with db.transaction() as repos:
                await repos.conn.execute("PRAGMA defer_foreign_keys=ON")
                await repos.conn.execute(
                    "INSERT INTO identities(channel, external_id, member_id, created_at) VALUES ('test', 'x', 999, 0)"
                )
        assert not db._writer.in_transaction
        async with db.transaction() as repos:
            await repos.members.register("test", "a", "A", None, 0)
        async with db.read() as repos:
            assert await repos.members.count() == 1
    finally:
        await db.close()


def _full_disk_error(tmp_path: Path) -> sqlite3.Error:
    conn = sqlite3.connect(tmp_path / "full.db", isolation_level=None)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute(f"PRAGMA max_page_count={conn.execute('PRAGMA page_count').fetchone()[0]}")
    try:
        conn.execute("INSERT INTO t SELECT hex(zeroblob(5000)) FROM (SELECT 1 UNION ALL SELECT 2)")
    except sqlite3.Error as exc:
        return exc
    finally:
        conn.close()
    raise AssertionError("the insert should not have fitted")


def _error(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("no error")


def _read_only_error(tmp_path: Path) -> BaseException:
    conn = sqlite3.connect(tmp_path / "ro.db", isolation_level=None)
    conn.execute("CREATE TABLE t (v)")
    conn.execute("PRAGMA query_only=ON")
    try:
        return _error(lambda: conn.execute("INSERT INTO t VALUES (1)"))
    finally:
        conn.close()


def _unique_error(tmp_path: Path) -> BaseException:
    conn = sqlite3.connect(tmp_path / "u.db", isolation_level=None)
    conn.execute("CREATE TABLE t (v UNIQUE)")
    conn.execute("INSERT INTO t VALUES (1)")
    try:
        return _error(lambda: conn.execute("INSERT INTO t VALUES (1)"))
    finally:
        conn.close()


def _wrapped(exc: BaseException) -> BaseException:
    try:
        raise RuntimeError("could not save the check-in") from exc
    except RuntimeError as outer:
        return outer


def test_storage_faults_are_told_from_other_failures(tmp_path: Path) -> None:
    full = _full_disk_error(tmp_path)
    assert is_storage_fault(full)  # SQLITE_FULL
    assert is_storage_fault(sqlite3.OperationalError("database or disk is full"))  # by its message alone
    assert is_storage_fault(sqlite3.OperationalError("disk I/O error"))
    assert is_storage_fault(_read_only_error(tmp_path))  # SQLITE_READONLY
    assert is_storage_fault(_error(lambda: sqlite3.connect(tmp_path / "no" / "such" / "x.db")))  # SQLITE_CANTOPEN
    assert is_storage_fault(OSError(28, "No space left on device"))
    assert is_storage_fault(_wrapped(full))  # raised from one
    assert not is_storage_fault(_unique_error(tmp_path))  # a constraint: the request, not the disk
    assert not is_storage_fault(sqlite3.OperationalError("database is locked"))
    assert not is_storage_fault(ValueError("bad amount"))
    assert not is_storage_fault(FileNotFoundError(2, "No such file or directory"))
