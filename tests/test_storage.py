"""The database file: created with its folder, migrated once, WAL and foreign keys on; the writer on the loop,
readers beside it, bulk statements and lock waits off the loop, checkpoints in the background."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.db import database
from storage.db.database import Database, migration_scripts
from storage.db.sql import fetch_all_as, fetch_one_as, from_row


async def test_open_creates_the_folder_and_applies_migrations_once(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "vip.db"
    db = await Database.open(path)
    latest = migration_scripts()[-1][0]
    assert path.exists() and await db.schema_version() == latest
    async with db.transaction() as repos:
        await repos.members.register("test", "a", "A", None, 0)
    await db.close()

    db = await Database.open(path)  # reopening keeps the data and applies nothing again
    try:
        async with db.read() as repos:
            assert await repos.members.count() == 1
            rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM schema_version")
            assert rows[0][0] == len(migration_scripts())
            assert (await repos.conn.execute_fetchall("PRAGMA journal_mode"))[0][0] == "wal"
        async with db.transaction() as repos:  # the writer enforces foreign keys
            assert (await repos.conn.execute_fetchall("PRAGMA foreign_keys"))[0][0] == 1
    finally:
        await db.close()


async def test_a_failed_use_case_leaves_nothing_behind(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        try:
            async with db.transaction() as repos:
                await repos.members.register("test", "a", "A", None, 0)
                raise RuntimeError("handler crashed half-way")
        except RuntimeError:
            pass
        async with db.read() as repos:
            assert await repos.members.count() == 0
    finally:
        await db.close()


async def test_a_read_sees_the_last_commit_and_does_not_wait_for_a_running_transaction(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        async with db.transaction() as repos:
            await repos.members.register("test", "a", "A", None, 0)

        async def count_elsewhere() -> int:
            async with db.read() as reading:
                return await reading.members.count()

        async with db.transaction() as repos:
            await repos.members.register("test", "b", "B", None, 0)
            # Another task's read does not wait for this transaction and sees the last commit ...
            assert await asyncio.wait_for(asyncio.create_task(count_elsewhere()), 5) == 1
            async with db.read() as reading:  # ... while a read inside it sees its own writes
                assert await reading.members.count() == 2
            async with db.transaction() as nested:  # a nested transaction is a savepoint, not a deadlock
                await nested.members.register("test", "c", "C", None, 0)
        async with db.read() as reading:
            assert await reading.members.count() == 3
    finally:
        await db.close()


async def test_a_write_waits_for_another_process_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    db = await Database.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # e.g. a backup tool holding the write lock

        async def register() -> None:
            async with db.transaction() as repos:
                await repos.members.register("test", "a", "A", None, 0)

        task = asyncio.create_task(register())
        for _ in range(5):
            await asyncio.sleep(0)  # the loop keeps running while the write waits
        assert not task.done()
        other.execute("COMMIT")
        await asyncio.wait_for(task, 5)
        async with db.read() as repos:
            assert await repos.members.count() == 1
    finally:
        other.close()
        await db.close()


async def test_a_write_gives_up_when_the_lock_is_never_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_SECONDS", 0.05)
    path = tmp_path / "t.db"
    db = await Database.open(path)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            async with db.transaction() as repos:
                await repos.members.register("test", "a", "A", None, 0)
        other.execute("ROLLBACK")
        async with db.transaction() as repos:  # the connection is usable again
            await repos.members.register("test", "a", "A", None, 0)
    finally:
        other.close()
        await db.close()


async def test_a_cancelled_bulk_statement_rolls_back_and_leaves_the_connection_usable(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        started = asyncio.Event()

        async def fill() -> None:
            async with db.transaction() as repos:
                started.set()
                await repos.conn.execute(
                    "INSERT INTO members(display_name, joined_at, last_seen_at) WITH RECURSIVE n(i) AS"
                    " (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT 'm' || i, 0, 0 FROM n",
                    bulk=True,
                )

        task = asyncio.create_task(fill())
        await started.wait()
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with db.transaction() as repos:
            await repos.members.register("test", "a", "A", None, 0)
        async with db.read() as repos:
            assert await repos.members.count() == 1  # nothing of the cancelled fan-out
    finally:
        await db.close()


async def test_the_wal_is_checkpointed_into_the_database_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_AFTER_CHANGES", 10)
    path = tmp_path / "t.db"
    db = await Database.open(path)
    try:
        for i in range(12):
            async with db.transaction() as repos:
                await repos.members.register("test", f"u{i}", "U", None, 0)
        await db.idle()
        # immutable=1 reads the main file alone, ignoring the WAL: what is there was checkpointed.
        direct = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
        try:
            assert direct.execute("SELECT COUNT(*) FROM members").fetchone()[0] == 12
        finally:
            direct.close()
    finally:
        await db.close()


async def test_the_database_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="file"):
        await Database.open(":memory:")


@pytest.mark.parametrize("members", [3, 150])  # 150 runs as a bulk statement on the database thread
async def test_personal_copies_are_queued_in_one_statement_each_with_its_own_text(tmp_path: Path, members: int) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        async with db.transaction() as repos:
            ids = [(await repos.members.register("wechat", f"o{i}", f"M{i}", None, 0, private_chat=True))[0]
                   for i in range(members)]  # fmt: skip
            await repos.members.register("wechat", "group-only", "G", None, 0)  # cannot be messaged privately
            silent = (await repos.members.register("wechat", "group-only", "G", None, 0))[0]
            ann = await repos.announcements.create("winback", "personal", "-", 0, 0)
            bodies = [(member_id, f"你好 M{n}, code {n:04d}") for n, member_id in enumerate(ids)] + [(silent, "x")]
            queued = await repos.deliveries.queue_personal_many(ann, bodies, ["wechat"])
            again = await repos.deliveries.queue_personal_many(ann, bodies, ["wechat"])
        assert (queued, again) == (members, 0)
        async with db.read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT target, body FROM deliveries ORDER BY id")
        assert [tuple(r) for r in rows] == [(f"o{n}", f"你好 M{n}, code {n:04d}") for n in range(members)]
    finally:
        await db.close()


# --- rows mapped by column name ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Row:
    id: int
    name: str
    active: bool
    note: str = "none"


def test_rows_are_mapped_to_dataclasses_by_column_name_not_position() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT 'x' AS name, 1 AS active, 7 AS id").fetchone()  # another order than the fields
    assert from_row(_Row, row) == _Row(id=7, name="x", active=True)  # a missing field with a default keeps it
    assert from_row(_Row, row).active is True  # SQLite's 0/1 become a bool for a bool field
    assert from_row(_Row, row, name="given") == _Row(id=7, name="given", active=True)  # the caller's value wins
    with pytest.raises(IndexError, match=r"_Row\.active"):
        from_row(_Row, conn.execute("SELECT 7 AS id, 'x' AS name").fetchone())
    conn.close()


async def test_every_connection_gives_rows_with_column_names(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "t.db")
    try:
        async with db.transaction() as repos:
            member_id, _ = await repos.members.register("test", "a", "A", None, 5)
            mapped = await fetch_one_as(repos.conn, _Row, "SELECT id, display_name AS name, 1 AS active FROM members")
            assert mapped == _Row(id=member_id, name="A", active=True)
        async with db.read() as repos:
            found = await fetch_all_as(repos.conn, _Row, "SELECT 0 AS active, display_name AS name, id FROM members")
        assert found == [_Row(id=member_id, name="A", active=False)]
    finally:
        await db.close()


async def test_a_background_transaction_lets_every_waiting_transaction_go_first(tmp_path: Path) -> None:
    """An import's chunk (background) never begins while one of the bot's writes waits: the writes that queued
    behind a running transaction, before or after the chunk asked for its turn, all commit before the chunk."""
    db = await Database.open(tmp_path / "bot.db")
    order: list[str] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with db.transaction():
            holding.set()
            await release.wait()
        order.append("first")

    async def write(name: str, *, background: bool = False) -> None:
        async with db.transaction(background=background) as repos:
            await repos.members.register("telegram", name, name, None, 1)
        order.append(name)

    try:
        running = asyncio.create_task(first())
        await holding.wait()
        early = asyncio.create_task(write("early"))
        await asyncio.sleep(0)
        chunk = asyncio.create_task(write("chunk", background=True))
        await asyncio.sleep(0)
        late = asyncio.create_task(write("late"))  # asked after the chunk did, still goes before it
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(running, early, chunk, late)
        assert order == ["first", "early", "late", "chunk"]
        alone = asyncio.create_task(write("alone", background=True))  # with nobody waiting: at once
        await asyncio.wait_for(alone, 5)
        assert order[-1] == "alone"
    finally:
        await db.close()


async def test_each_outermost_transaction_is_timed_from_asking_for_the_lock_to_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Database.on_transaction` gets one duration per outermost transaction (committed, rolled back or in the
    background; a nested one is part of its outer one), the wait for the write lock included."""
    import time
    import types

    now = [100.0]  # the database module's perf_counter, moved by hand: no real waits
    monkeypatch.setattr(database, "time", types.SimpleNamespace(
        perf_counter=lambda: now[0], monotonic=time.monotonic, thread_time=time.thread_time,
    ))  # fmt: skip
    db = await Database.open(tmp_path / "bot.db")
    seen: list[float] = []
    holding, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with db.transaction() as repos:
            await repos.members.register("telegram", "h", "H", None, 1)
            now[0] += 1.0  # its own work took a second
            holding.set()
            await release.wait()

    async def waiter() -> None:
        async with db.transaction() as repos:
            now[0] += 0.25
            async with db.transaction() as inner:  # a savepoint: not timed on its own
                await inner.members.register("telegram", "w", "W", None, 1)
            async with db.read() as read:
                await read.conn.execute_fetchall("SELECT 1")
            await repos.members.register("telegram", "w2", "W2", None, 1)

    try:
        async with db.transaction():
            pass
        assert seen == []  # no observer: nothing timed
        db.on_transaction = seen.append
        held = asyncio.create_task(holder())
        await holding.wait()  # the holder asked at 100 and has the lock
        waiting = asyncio.create_task(waiter())
        for _ in range(5):
            await asyncio.sleep(0)  # the waiter asks at 101 and waits for the lock
        assert not waiting.done()
        now[0] += 2.5  # 2.5 s of waiting
        release.set()
        await asyncio.gather(held, waiting)
        assert seen == [3.5, 2.75]  # the holder 100 → 103.5; the waiter 2.5 s for the lock + 0.25 s of work

        with pytest.raises(RuntimeError, match="undo"):
            async with db.transaction():
                now[0] += 0.5
                raise RuntimeError("undo")
        async with db.transaction(background=True):
            now[0] += 0.125
        assert seen == [3.5, 2.75, 0.5, 0.125]

        def broken(seconds: float) -> None:
            raise ValueError("observer bug")

        db.on_transaction = broken
        async with db.transaction() as repos:  # an observer's error is logged: the commit stands
            await repos.members.register("telegram", "x", "X", None, 1)
        async with db.read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT display_name FROM members ORDER BY id")
        assert [r[0] for r in rows] == ["H", "W", "W2", "X"]
    finally:
        await db.close()


async def test_what_waits_is_counted_on_the_indexes_never_reading_the_history(tmp_path: Path) -> None:
    """The counts /metrics shows (pushes not settled, updates not handled, replies not sent), and how SQLite
    runs them: on deliveries_due and inbox_pending, so a shop's years of sent pushes and done updates are not
    read on each scrape."""
    from typing import Any

    from storage.repos import Repos

    path = tmp_path / "bot.db"
    await (await Database.open(path)).close()
    conn = sqlite3.connect(path)
    plans: list[str] = []

    class Planned:
        """Statements on a plain connection, keeping each query's plan."""

        async def execute(self, sql: str, params: Any = (), *, bulk: bool = False) -> sqlite3.Cursor:
            return conn.execute(sql, params)

        async def execute_fetchall(self, sql: str, params: Any = (), *, bulk: bool = False) -> list[Any]:
            plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            plans.append(" / ".join(str(row[3]) for row in plan))
            return conn.execute(sql, params).fetchall()

    try:
        with conn:
            conn.execute("PRAGMA foreign_keys=OFF")  # deliveries of an announcement this test does not need
            states = ["pending", "pending", "sending", "uncertain", "sent", "sent", "sent", "failed"]
            conn.executemany(
                "INSERT INTO deliveries(announcement_id, channel, target_kind, target, state)"
                " VALUES (1, ?, 'user', ?, ?)",
                [("telegram", str(i), state) for i, state in enumerate(states)],
            )
            conn.executemany(
                "INSERT INTO inbox(key, channel, received_at, done_at) VALUES (?, ?, 1, ?)",
                [("t:1", "telegram", None), ("t:2", "telegram", None), ("t:3", "telegram", 2), ("t:4", "telegram", 2),
                 ("w:1", "wechat", None), ("w:2", "wechat", 2)],
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO outbound(channel, chat_id, priority, payload, held, created_at)"
                " VALUES (?, ?, 1, '{}', ?, 1)",
                [("telegram", "1", 0), ("telegram", "2", 0), ("telegram", "3", 1), ("wechat", "o1", 1)],
            )
        repos = Repos(Planned())
        assert await repos.deliveries.waiting_counts() == {"pending": 2, "sending": 1, "uncertain": 1}
        assert "USING COVERING INDEX deliveries_due" in plans[-1] and "SCAN deliveries" not in plans[-1]
        assert await repos.inbox.pending_counts() == {"telegram": 2, "wechat": 1}
        assert "USING INDEX inbox_pending" in plans[-1]
        assert await repos.outbound.queued_counts() == {("telegram", False): 2, ("telegram", True): 1,
                                                        ("wechat", True): 1}  # fmt: skip
        with conn:
            conn.execute("DELETE FROM deliveries WHERE state IN ('pending', 'sending', 'uncertain')")
        assert await repos.deliveries.waiting_counts() == {}  # the settled rows are not counted as waiting
    finally:
        conn.close()


async def test_the_row_keys_migration_keeps_every_check_in_and_stored_update_in_order(tmp_path: Path) -> None:
    """0023 gives `checkins` and `inbox` an explicit `id` (PostgreSQL has no rowid): a database made before it
    keeps its rows, numbered as they were, and a check-in booked twice on the same day still books once."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")  # fmt: skip
    for version, name, sql in migration_scripts():
        if version < 23:
            conn.executescript(f"BEGIN;\n{sql}\nINSERT INTO schema_version(version, name) VALUES ({version}, '{name}');"
                               "\nCOMMIT;")  # fmt: skip
    conn.execute("INSERT INTO members(id, display_name, joined_at, last_seen_at) VALUES (1, 'A', 0, 0), (2, 'B', 0, 0)")
    conn.execute("INSERT INTO checkins(member_id, day, streak, points, created_at, chat)"
                 " VALUES (2, '2026-11-30', 1, 10, 5, 'test:g'), (1, '2026-12-01', 1, 10, 7, 'test:g')")  # fmt: skip
    conn.execute("INSERT INTO inbox(key, channel, payload, received_at)"
                 " VALUES ('t:1', 'test', '{}', 1), ('t:2', 'test', NULL, 2)")  # fmt: skip
    conn.commit()
    before = conn.execute("SELECT rowid, member_id, day FROM checkins ORDER BY rowid").fetchall()
    conn.close()

    db = await Database.open(path)
    try:
        async with db.read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT id, member_id, day FROM checkins ORDER BY id")
            stored = await repos.conn.execute_fetchall("SELECT id, key FROM inbox ORDER BY id")
        assert [tuple(r) for r in rows] == [tuple(r) for r in before] == [(1, 2, "2026-11-30"), (2, 1, "2026-12-01")]
        assert [tuple(r) for r in stored] == [(1, "t:1"), (2, "t:2")]
        async with db.transaction() as repos:
            again = await repos.checkins.record(1, "2026-12-01", "2026-11-30", 9, 10, 2, 10)
        assert again is None  # (member, day) is still unique
        assert await db.schema_version() >= 23
    finally:
        await db.close()
