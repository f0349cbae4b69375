"""Both engines' schemas are the same: tables, columns (names, compatible types, NOT NULL), primary keys, unique
constraints, foreign keys and indexes (their columns, uniqueness, partial or not), each side read from the
database itself after its migrations (SQLite's PRAGMAs; PostgreSQL's catalogs). Skipped without PostgreSQL.

`schema_version` is the runner's own table (PostgreSQL's records a checksum too) and is left out; CHECK
constraints and triggers are not compared (neither engine lists them in a comparable form)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from storage.db.database import Database
from storage.db.database import migration_scripts as sqlite_scripts
from tests.pg import POSTGRES_URL, pg_template, pg_url, with_database  # noqa: F401 - pg_template, pg_url: fixtures

TYPES = {"INTEGER": "bigint", "TEXT": "text", "REAL": "double precision", "BLOB": "bytea"}
"""SQLite's declared type -> the PostgreSQL type the same column has."""
LEFT_OUT = {"schema_version"}

Schema = dict[str, Any]


def sqlite_schema(path: Path) -> Schema:
    conn = sqlite3.connect(path)
    try:
        tables = sorted(
            name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            ) if name not in LEFT_OUT
        )  # fmt: skip
        schema: Schema = {"tables": tables, "columns": {}, "primary": {}, "unique": {}, "foreign": {}, "indexes": {}}
        for table in tables:
            info = conn.execute(f"PRAGMA table_xinfo({table})").fetchall()  # with generated columns
            # a primary key column counts as NOT NULL (PostgreSQL's always is; SQLite's INTEGER one is the rowid)
            schema["columns"][table] = {
                name: (TYPES[kind.upper()], bool(notnull or pk)) for _cid, name, kind, notnull, _d, pk, _h in info
            }
            schema["primary"][table] = tuple(name for _pk, name in sorted((r[5], r[1]) for r in info if r[5]))
            unique, indexes = set(), {}
            for _seq, name, is_unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                columns = tuple(row[2] for row in conn.execute(f"PRAGMA index_info({name})"))
                if origin == "pk":
                    continue
                if is_unique:
                    unique.add((columns, bool(partial)))
                if origin == "c":  # made by CREATE INDEX: the same name on both engines
                    indexes[name] = (columns, bool(is_unique), bool(partial))
            schema["unique"][table] = unique
            schema["indexes"].update(indexes)
            schema["foreign"][table] = {
                (row[3], row[2], row[4] or _primary_of(conn, row[2])) for row in conn.execute(
                    f"PRAGMA foreign_key_list({table})"
                )
            }  # fmt: skip
        return schema
    finally:
        conn.close()


def _primary_of(conn: sqlite3.Connection, table: str) -> str:
    """The single primary key column of `table` (a REFERENCES without a column names it)."""
    (name,) = [row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[5]]
    return name


async def postgres_schema(url: str) -> Schema:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        tables = sorted(
            r["table_name"] for r in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE'"
            ) if r["table_name"] not in LEFT_OUT
        )  # fmt: skip
        schema: Schema = {"tables": tables, "columns": {}, "primary": {}, "unique": {}, "foreign": {}, "indexes": {}}
        for table in tables:
            schema["columns"][table] = {
                r["column_name"]: (r["data_type"], r["is_nullable"] == "NO") for r in await conn.fetch(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name = $1", table
                )
            }  # fmt: skip
            schema["unique"][table] = set()
            schema["foreign"][table] = set()
        index_rows = await conn.fetch(
            "SELECT i.relname AS name, t.relname AS table_name, x.indisunique AS is_unique,"
            " x.indisprimary AS is_primary, x.indpred IS NOT NULL AS partial,"
            " EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) AS of_constraint,"
            " array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)"
            "       JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum ORDER BY k.n) AS columns"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " JOIN pg_namespace s ON s.oid = t.relnamespace WHERE s.nspname = 'public'"
        )
        for r in index_rows:
            table = r["table_name"]
            if table in LEFT_OUT:
                continue
            columns = tuple(r["columns"])
            if r["is_primary"]:
                schema["primary"][table] = columns
                continue
            if r["is_unique"]:
                schema["unique"][table].add((columns, r["partial"]))
            if not r["of_constraint"]:  # made by CREATE INDEX
                schema["indexes"][r["name"]] = (columns, r["is_unique"], r["partial"])
        for r in await conn.fetch(
            "SELECT t.relname AS table_name, f.relname AS target, a.attname AS source_column,"
            " b.attname AS target_column FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " JOIN pg_class f ON f.oid = c.confrelid JOIN pg_namespace s ON s.oid = t.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]"
            " JOIN pg_attribute b ON b.attrelid = c.confrelid AND b.attnum = c.confkey[1]"
            " WHERE c.contype = 'f' AND s.nspname = 'public'"
        ):
            schema["foreign"][r["table_name"]].add((r["source_column"], r["target"], r["target_column"]))
        for table in tables:
            schema["primary"].setdefault(table, ())
        return schema
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def sqlite_side(tmp_path_factory: pytest.TempPathFactory) -> Schema:
    import asyncio

    path = tmp_path_factory.mktemp("parity") / "vipbot.db"

    async def migrate() -> None:
        db = await Database.open(path, readers=1)
        await db.close()

    asyncio.run(migrate())
    return sqlite_schema(path)


@pytest.fixture
async def postgres_side(pg_template: str) -> Schema:  # noqa: F811 - the fixture imported above
    return await postgres_schema(with_database(POSTGRES_URL, pg_template))


def test_both_engines_ship_the_same_migration_numbers() -> None:
    pytest.importorskip("asyncpg")
    from storage.db.postgres import migration_scripts as postgres_scripts

    assert [v for v, _n, _s in postgres_scripts()] == [v for v, _n, _s in sqlite_scripts()]
    assert [n for _v, n, _s in postgres_scripts()] == [n for _v, n, _s in sqlite_scripts()]


def test_the_sqlite_side_is_read_in_full(sqlite_side: Schema) -> None:
    # a reader that saw nothing would make every comparison below pass
    assert len(sqlite_side["tables"]) >= 40
    assert sqlite_side["primary"]["checkins"] == ("id",)  # the rowid itself since 0023
    assert (("member_id", "day"), False) in sqlite_side["unique"]["checkins"]
    assert sqlite_side["columns"]["announcements"]["event_id"] == ("bigint", False)  # a generated column
    assert (("idem_key",), False) in sqlite_side["unique"]["ledger"]
    assert sqlite_side["indexes"]["sale_claims_unit"] == (("sale_id", "member_id", "unit"), True, True)


async def test_the_same_tables(sqlite_side: Schema, postgres_side: Schema) -> None:
    assert postgres_side["tables"] == sqlite_side["tables"]


async def test_the_same_columns_with_compatible_types_and_nullability(sqlite_side: Schema, postgres_side: Schema):
    for table in sqlite_side["tables"]:
        assert postgres_side["columns"][table] == sqlite_side["columns"][table], table


async def test_the_same_primary_keys(sqlite_side: Schema, postgres_side: Schema) -> None:
    assert postgres_side["primary"] == sqlite_side["primary"]


async def test_the_same_unique_constraints(sqlite_side: Schema, postgres_side: Schema) -> None:
    assert postgres_side["unique"] == sqlite_side["unique"]


async def test_the_same_foreign_keys(sqlite_side: Schema, postgres_side: Schema) -> None:
    assert postgres_side["foreign"] == sqlite_side["foreign"]


async def test_the_same_indexes(sqlite_side: Schema, postgres_side: Schema) -> None:
    assert postgres_side["indexes"] == sqlite_side["indexes"]


async def test_a_difference_is_noticed(sqlite_side: Schema, pg_url: str) -> None:  # noqa: F811
    import asyncpg

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("DROP INDEX checkins_day; ALTER TABLE members ALTER COLUMN birthday SET NOT NULL")
        await conn.execute("ALTER TABLE referral_codes DROP CONSTRAINT referral_codes_code_key")
    finally:
        await conn.close()
    changed = await postgres_schema(pg_url)
    assert "checkins_day" not in changed["indexes"] and "checkins_day" in sqlite_side["indexes"]
    assert changed["columns"]["members"]["birthday"] != sqlite_side["columns"]["members"]["birthday"]
    assert changed["unique"]["referral_codes"] != sqlite_side["unique"]["referral_codes"]
