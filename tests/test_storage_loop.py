"""Nothing slow on the event loop: reads share a pool of reader connections, and a statement that runs too
long on the loop's thread fails loudly when the guard is on (tests and debug mode), unless it is marked bulk."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from bot.app.config import Settings
from storage.db.database import Database, SlowStatementError

COUNT = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c"
ADD_CHAT = "INSERT INTO chats(channel, chat_id, title, added_at) VALUES ('test', 'c1', 'one', 0)"
SLOW_ROWS = 1_000_000
"""Rows the recursive count above walks through: most of a second of work here, far past a 100 ms limit."""


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_a_read_holding_a_reader_does_not_block_another_read(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "r.db")
    try:
        holding = asyncio.Event()
        release = asyncio.Event()

        async def long_read() -> int:
            async with db.read() as repos:
                rows = await repos.conn.execute_fetchall("SELECT count(*) FROM members")
                holding.set()
                await release.wait()  # still inside its snapshot, still holding its reader
                return int(rows[0][0])

        first = asyncio.create_task(long_read())
        await holding.wait()

        async def quick_read() -> int:
            async with db.read() as repos:
                rows = await repos.conn.execute_fetchall("SELECT 41 + 1")
                return int(rows[0][0])

        # On one reader behind one lock this waits for the first read and times out.
        assert await asyncio.wait_for(quick_read(), timeout=5) == 42
        assert not first.done()
        release.set()
        assert await first == 0
    finally:
        await db.close()


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_two_slow_reads_run_at_the_same_time(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "r.db")
    try:
        finished: list[str] = []

        async def read(name: str, rows: int) -> None:
            async with db.read() as repos:
                got = await repos.conn.execute_fetchall(COUNT, (rows,))
            assert got[0][0] == rows
            finished.append(name)

        # The slow count starts first; the short one finishes while it still runs on its own reader.
        slow = asyncio.create_task(read("slow", SLOW_ROWS * 2))
        await asyncio.sleep(0)  # let the slow read take its reader and start
        await asyncio.wait_for(read("short", 1000), timeout=5)
        assert finished == ["short"]
        await slow
        assert finished == ["short", "slow"]
    finally:
        await db.close()


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_reads_beyond_the_pool_wait_for_a_free_reader(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "r.db", readers=2)
    try:
        holding = [asyncio.Event(), asyncio.Event()]
        release = asyncio.Event()

        async def hold(i: int) -> None:
            async with db.read() as repos:
                await repos.conn.execute_fetchall("SELECT 1")
                holding[i].set()
                await release.wait()

        holders = [asyncio.create_task(hold(i)) for i in range(2)]
        await asyncio.gather(*(h.wait() for h in holding))

        async def third() -> int:
            async with db.read() as repos:
                return int((await repos.conn.execute_fetchall("SELECT 3"))[0][0])

        waiting = asyncio.create_task(third())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()  # both readers are taken
        release.set()
        assert await asyncio.wait_for(waiting, timeout=5) == 3
        await asyncio.gather(*holders)
    finally:
        await db.close()


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_each_reader_reads_its_own_snapshot_and_a_unit_reads_its_own_writes(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "r.db", readers=2)
    try:
        async with db.read() as before:
            rows = await before.conn.execute_fetchall("SELECT count(*) FROM chats")  # the snapshot starts here
            assert rows[0][0] == 0
            async with db.transaction() as repos:  # another task's view: this read is not inside it
                await repos.conn.execute(ADD_CHAT)
                async with db.read() as own:
                    assert own is repos  # a read inside the unit sees its own writes
                    rows = await own.conn.execute_fetchall("SELECT count(*) FROM chats")
                    assert rows[0][0] == 1
            rows = await before.conn.execute_fetchall("SELECT count(*) FROM chats")
            assert rows[0][0] == 0  # the snapshot opened before the commit
        async with db.read() as after:
            rows = await after.conn.execute_fetchall("SELECT count(*) FROM chats")
            assert rows[0][0] == 1
    finally:
        await db.close()


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_a_slow_statement_on_the_loop_fails_loudly_unless_bulk(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "g.db", loop_statement_ms=100)
    try:
        with pytest.raises(SlowStatementError) as caught:
            async with db.transaction() as repos:
                await repos.conn.execute_fetchall(COUNT, (SLOW_ROWS,))
        message = str(caught.value)
        assert "WITH RECURSIVE c(x)" in message  # names the statement
        assert "bulk=True" in message  # and says what to do
        assert "100 ms" in message

        # The transaction was rolled back and the writer is usable again; marked bulk, the same statement runs
        # on the database thread, where no limit applies.
        async with db.transaction() as repos:
            rows = await repos.conn.execute_fetchall(COUNT, (SLOW_ROWS,), bulk=True)
            assert rows[0][0] == SLOW_ROWS
            await repos.conn.execute(ADD_CHAT)
            changed = await repos.conn.execute(
                "UPDATE chats SET title = 'two' WHERE chat_id = 'c1' AND ? > 0",
                (SLOW_ROWS,),
            )
            assert changed.rowcount == 1  # quick statements on the loop are not limited
        async with db.read() as repos:  # reads run on their readers' threads: not limited either
            rows = await repos.conn.execute_fetchall(COUNT, (SLOW_ROWS,))
            assert rows[0][0] == SLOW_ROWS
    finally:
        await db.close()


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_the_guard_is_off_by_default(tmp_path: Path) -> None:
    production = Settings(storage={"path": str(tmp_path / "p.db")}).storage
    db = await Database.open(production.path, loop_statement_ms=production.loop_statement_limit(debug=False))
    try:
        async with db.transaction() as repos:
            rows = await repos.conn.execute_fetchall(COUNT, (SLOW_ROWS,))
            assert rows[0][0] == SLOW_ROWS
    finally:
        await db.close()


def test_settings_turn_the_guard_on_only_in_debug_mode_or_when_asked(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    production = Settings(storage={"path": path})
    assert production.storage.readers == 4
    assert production.storage.loop_statement_limit(debug=False) is None
    assert production.storage.loop_statement_limit(debug=True) == 200
    asked = Settings(storage={"path": path, "loop_statement_ms": 50, "readers": 2})
    assert asked.storage.loop_statement_limit(debug=False) == 50
    assert asked.storage.readers == 2
    off = Settings(storage={"path": path, "loop_statement_ms": 0})
    assert off.storage.loop_statement_limit(debug=True) is None


def test_the_test_settings_turn_the_guard_on(settings: Settings) -> None:
    assert settings.storage.loop_statement_limit(debug=settings.log_level == "DEBUG") == 200


def _record_ends(db: Database) -> list[tuple[str, int]]:
    """(statement, thread) of every COMMIT and ROLLBACK the writer runs, as SQLite's trace callback sees them."""
    ends: list[tuple[str, int]] = []

    def trace(sql: str) -> None:
        word = sql.strip().split(" ", 1)[0].upper()
        if word in ("COMMIT", "ROLLBACK"):
            ends.append((word, threading.get_ident()))

    db._writer.set_trace_callback(trace)
    return ends


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_a_transaction_that_ran_a_bulk_statement_ends_off_the_loop(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "b.db")
    loop_thread = threading.get_ident()
    try:
        ends = _record_ends(db)
        async with db.transaction() as repos:
            async with db.transaction() as inner:  # a savepoint: its bulk statement counts for the transaction
                await inner.conn.execute_fetchall(COUNT, (1000,), bulk=True)
            await repos.conn.execute(ADD_CHAT)
        assert [word for word, _ in ends] == ["COMMIT"]
        assert ends[0][1] != loop_thread  # the COMMIT of a bulk write ran on the database thread

        ends.clear()
        with pytest.raises(LookupError):
            async with db.transaction() as repos:
                await repos.conn.execute("UPDATE chats SET title = 'two'", bulk=True)
                raise LookupError
        assert [word for word, _ in ends] == ["ROLLBACK"]
        assert ends[0][1] != loop_thread

        ends.clear()
        async with db.transaction() as repos:  # no bulk statement: a COMMIT of a few pages stays on the loop
            await repos.conn.execute("UPDATE chats SET title = 'three'")
        assert ends == [("COMMIT", loop_thread)]
        async with db.read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT title FROM chats")
        assert [r[0] for r in rows] == ["three"]  # the bulk one committed, the failed one rolled back
    finally:
        await db.close()


@pytest.mark.sqlite_only("the SQLite engine itself: its reader connections, thread and loop guard")
async def test_commit_callbacks_run_after_a_bulk_commit_and_not_after_its_rollback(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "c.db")
    try:
        called: list[str] = []
        async with db.transaction() as repos:
            await repos.conn.execute(ADD_CHAT, bulk=True)
            db.on_commit(lambda: called.append("committed"))
        assert called == ["committed"]
        with pytest.raises(LookupError):
            async with db.transaction() as repos:
                await repos.conn.execute("UPDATE chats SET title = 'x'", bulk=True)
                db.on_commit(lambda: called.append("rolled back"))
                raise LookupError
        assert called == ["committed"]
        async with db.transaction() as repos:  # the writer is usable again, the next transaction on the loop
            await repos.conn.execute("UPDATE chats SET title = 'y'")
            db.on_commit(lambda: called.append("again"))
        assert called == ["committed", "again"]
    finally:
        await db.close()
