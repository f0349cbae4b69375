"""The member merge names its tables explicitly (no schema reflection, so it runs on both engines): this checks
the list against SQLite's schema after every migration, so a new table referencing members cannot be missed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from storage.channels import KEPT_REFERENCES, MOVED_WITH_MEMBER
from storage.db.database import Database, migration_scripts


@pytest.fixture(scope="module")
def schema() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    for _version, _name, sql in migration_scripts():
        conn.executescript(sql)
    return conn


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return [r[0] for r in rows]


def _references_to_members(conn: sqlite3.Connection) -> set[tuple[str, str]]:
    return {
        (table, row[3]) for table in _tables(conn) for row in conn.execute(f"PRAGMA foreign_key_list({table})")
        if row[2] == "members"
    }  # fmt: skip


def test_every_foreign_key_to_members_is_moved_or_kept_on_purpose(schema: sqlite3.Connection) -> None:
    references = _references_to_members(schema)
    moved = {(table, "member_id") for table in MOVED_WITH_MEMBER}
    assert not moved & KEPT_REFERENCES
    assert references - moved - KEPT_REFERENCES == set(), "a reference to members the merge does not handle"
    assert (moved | KEPT_REFERENCES) - references == set(), "a listed reference the schema does not have"


def test_every_plain_member_id_column_is_moved(schema: sqlite3.Connection) -> None:
    with_column = {
        table for table in _tables(schema) for row in schema.execute(f"PRAGMA table_xinfo({table})")
        if row[1] == "member_id" and row[6] == 0  # not a generated column
    }  # fmt: skip
    assert with_column - {"ledger"} == set(MOVED_WITH_MEMBER)


def test_a_table_with_a_unique_key_on_member_id_says_when_the_place_is_taken(schema: sqlite3.Connection) -> None:
    for table, taken in MOVED_WITH_MEMBER.items():
        primary = [r[1] for r in sorted(schema.execute(f"PRAGMA table_info({table})"), key=lambda r: r[5]) if r[5]]
        keys = [primary] if "member_id" in primary else []  # an INTEGER PRIMARY KEY has no index of its own
        for _seq, name, unique, _origin, _partial in schema.execute(f"PRAGMA index_list({table})"):
            columns = [r[2] for r in schema.execute(f"PRAGMA index_info({name})")]
            if unique and "member_id" in columns:
                keys.append(columns)
        assert bool(keys) == bool(taken), table
        for columns in keys:
            for column in set(columns) - {"member_id"}:
                assert f"o.{column} = {table}.{column}" in taken, (table, column)


SEED = [
    "INSERT INTO members(id, display_name, joined_at, last_seen_at) VALUES (1, 'merged', 0, 0), (2, 'kept', 0, 0)",
    "INSERT INTO checkins(member_id, day, streak, points, created_at) VALUES"
    " (1, 'd1', 1, 1, 0), (1, 'd2', 1, 1, 0), (2, 'd2', 1, 1, 0), (2, 'd3', 1, 1, 0)",
    # a live claim of the same unit stays the kept member's; a released one is no conflict either way
    "INSERT INTO sale_claims(sale_id, member_id, unit, state, code, claimed_at) VALUES"
    " (1, 1, 1, 'held', 'a', 0), (1, 2, 1, 'paid', 'b', 0), (1, 1, 2, 'released', 'c', 0), (1, 2, 2, 'held', 'd', 0),"
    " (2, 1, 1, 'held', 'e', 0), (1, 1, 3, 'held', 'f', 0), (1, 2, 3, 'released', 'g', 0)",
    "INSERT INTO erasure_requests(member_id, state, asked_at, settled_at) VALUES"
    " (1, 'pending', 0, NULL), (2, 'pending', 0, NULL), (1, 'withdrawn', 0, 1), (2, 'withdrawn', 0, 1)",
    "INSERT INTO tier_standing(member_id, discount, reviewed_at) VALUES (1, 5, 0), (2, 7, 0)",
    "INSERT INTO member_segments(member_id, segment, last_purchase_at, entered_at) VALUES (1, 'new', 0, 0)",
    "INSERT INTO identities(channel, external_id, member_id, created_at) VALUES ('telegram', 'x', 1, 0)",
]


def _rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    try:
        return {table: sorted(conn.execute(f"SELECT * FROM {table}")) for table in MOVED_WITH_MEMBER}
    finally:
        conn.close()


async def test_the_merge_keeps_and_drops_the_rows_sqlite_own_conflict_resolution_would(tmp_path: Path) -> None:
    paths = []
    for name in ("oracle.db", "merge.db"):
        db = await Database.open(tmp_path / name)
        await db.close()
        conn = sqlite3.connect(tmp_path / name)  # without foreign keys: the sales and polls are left out
        for statement in SEED:
            conn.execute(statement)
        conn.commit()
        conn.close()
        paths.append(tmp_path / name)
    oracle = sqlite3.connect(paths[0])
    expected = {}
    for table in MOVED_WITH_MEMBER:  # what the merge did before it named its tables
        expected[table] = oracle.execute(f"UPDATE OR IGNORE {table} SET member_id = 2 WHERE member_id = 1").rowcount
        oracle.execute(f"DELETE FROM {table} WHERE member_id = 1")
    oracle.commit()
    oracle.close()

    db = await Database.open(paths[1])
    try:
        async with db.transaction() as repos:
            moved = await repos.channel_state.move_member_rows(1, 2)
    finally:
        await db.close()
    assert moved == expected
    assert {table: moved[table] for table in ("checkins", "sale_claims", "erasure_requests", "tier_standing")} == {
        "checkins": 1, "sale_claims": 3, "erasure_requests": 1, "tier_standing": 0,
    }  # fmt: skip
    assert moved["member_segments"] == 1 and moved["identities"] == 1
    assert _rows(paths[1]) == _rows(paths[0])
