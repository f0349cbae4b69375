"""`vipbot backup` and `vipbot restore`: a backup taken while check-ins are being committed opens on its own and
holds every check-in committed before it started, with every balance equal to its ledger; a restore puts a
backup back and keeps the database it replaces; files that are not vipbot databases are refused with one line."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.app.cli import main as cli_main
from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from storage.db import backup as db_backup
from storage.db import instance
from tests.conftest import ChatDriver


def _checkins(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM checkins").fetchone()[0])


def _unbalanced(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT m.id FROM members m LEFT JOIN ledger l ON l.member_id = m.id"
            " GROUP BY m.id HAVING m.balance <> COALESCE(SUM(l.delta), 0)"
        ).fetchall()
    return [r[0] for r in rows]


@pytest.mark.sqlite_only("backs up and restores the SQLite file")
async def test_a_backup_during_a_burst_of_check_ins_holds_every_committed_one(
    runtime: Runtime, tmp_path: Path
) -> None:
    chat = ChatDriver(runtime)
    database = Path(runtime.settings.storage.path)
    committed = 0
    stop = asyncio.Event()

    async def burst() -> None:
        nonlocal committed
        n = 0
        while not stop.is_set():
            await chat.say(f"m{n}", "签到")
            committed += 1
            n += 1

    burster = asyncio.create_task(burst())
    try:
        copies = []
        for i in range(3):
            # Let the burst run a little, and on past the last copy's end (a backup on a busy machine may take
            # as long as the whole burst so far), so each copy has check-ins the one before it had not.
            while committed < max(20 * (i + 1), copies[-1][1] + 20 if copies else 0):  # noqa: ASYNC110
                await asyncio.sleep(0)
            before = committed
            target = tmp_path / f"backup-{i}.db"
            await asyncio.to_thread(db_backup.backup, database, target)
            copies.append((before, committed, target))
    finally:
        stop.set()
        await burster
    for before, after, target in copies:
        assert before <= _checkins(target) <= after  # every check-in committed before it started, none made up
        assert _unbalanced(target) == []
        with sqlite3.connect(target) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert _checkins(copies[-1][2]) > _checkins(copies[0][2])


def _config(tmp_path: Path, database: Path) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(f"locale: en\nstorage: {{path: '{database}'}}\n", encoding="utf-8")
    return config


@pytest.mark.sqlite_only("backs up and restores the SQLite file")
async def test_restore_puts_a_backup_back_and_keeps_the_database_it_replaces(
    settings: Settings, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = await Runtime.open(settings, clock)
    chat = ChatDriver(runtime)
    database = Path(settings.storage.path)
    await chat.say("alice", "签到")
    config = _config(tmp_path, database)
    assert await asyncio.to_thread(cli_main, ["backup", str(tmp_path / "one.db"), "--config", str(config)]) == 0
    assert "Backed up" in capsys.readouterr().out
    await chat.say("bob", "签到")
    await runtime.close()  # the bot is stopped before a restore

    assert cli_main(["restore", str(tmp_path / "one.db"), "--config", str(config)]) == 0
    assert "previous database is kept" in capsys.readouterr().out
    assert _checkins(database) == 1  # alice's, as in the backup
    assert _checkins(database.with_name(database.name + ".before-restore")) == 2
    reopened = await Runtime.open(settings, clock)
    try:
        async with reopened.deps.db.read() as repos:
            alice = await repos.members.by_identity("test", "alice")
            bob = await repos.members.by_identity("test", "bob")
        assert alice is not None and alice.balance == 10
        assert bob is None  # bob first came after the backup
    finally:
        await reopened.close()


def test_files_that_are_not_vipbot_databases_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = tmp_path / "vip.db"
    config = _config(tmp_path, database)
    (tmp_path / "notes.txt").write_text("not a database", encoding="utf-8")
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE things (x)")
    for bad in ("notes.txt", "other.db", "missing.db"):
        assert cli_main(["restore", str(tmp_path / bad), "--config", str(config)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vipbot: ") and "Traceback" not in err
    assert not database.exists()  # nothing was put in place
    assert cli_main(["backup", str(tmp_path / "copy.db"), "--config", str(config)]) == 2  # no database yet
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.sqlite_only("backs up and restores the SQLite file")
async def test_restore_is_refused_while_the_bot_runs_on_the_database(
    settings: Settings, clock: FakeClock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runtime = await Runtime.open(settings, clock)
    chat = ChatDriver(runtime)
    database = Path(settings.storage.path)
    await chat.say("alice", "签到")
    config = _config(tmp_path, database)
    assert await asyncio.to_thread(cli_main, ["backup", str(tmp_path / "one.db"), "--config", str(config)]) == 0
    await chat.say("bob", "签到")
    try:
        with instance.hold(database):  # what `vipbot run` holds while it runs
            assert cli_main(["restore", str(tmp_path / "one.db"), "--config", str(config)]) == 2
        assert "another vipbot is already running" in capsys.readouterr().err
        assert _checkins(database) == 2  # the running bot's database is untouched
        assert not database.with_name(database.name + ".before-restore").exists()
    finally:
        await runtime.close()
