"""The database file: created with its folder, migrated once, WAL and foreign keys on."""

from __future__ import annotations

from pathlib import Path

from storage.database import Database, migration_scripts


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
            async with repos.conn.execute("SELECT COUNT(*) FROM schema_version") as cur:
                assert (await cur.fetchone())[0] == len(migration_scripts())
            async with repos.conn.execute("PRAGMA journal_mode") as cur:
                assert (await cur.fetchone())[0] == "wal"
            async with repos.conn.execute("PRAGMA foreign_keys") as cur:
                assert (await cur.fetchone())[0] == 1
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
