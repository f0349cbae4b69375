"""The PostgreSQL engine: the dialect layer's rewrites (no server needed), then transactions, savepoints, reads,
migrations and a few real repositories on a throw-away database (skipped without a reachable PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from storage.db.dialect import NonPortableStatement, bind, translate
from storage.db.rollback import Rollback
from storage.ledger import InsufficientPoints
from tests.pg import pg_empty_url, pg_template, pg_url  # noqa: F401 - fixtures

NOW = 1_764_000_000

# --- The dialect layer (no PostgreSQL needed) ------------------------------------------------------------------


def test_positional_placeholders_are_numbered_in_order() -> None:
    sql, args = bind("SELECT a FROM t WHERE b = ? AND c IN (?, ?)", (1, "x", 3))
    assert sql == "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
    assert args == [1, "x", 3]


def test_named_placeholders_repeat_one_number_and_take_the_mapping_in_that_order() -> None:
    sql, args = bind("UPDATE t SET a = :a, b = :b WHERE id = :id AND a <> :a", {"id": 7, "b": 2, "a": 1})
    assert sql == "UPDATE t SET a = $1, b = $2 WHERE id = $3 AND a <> $1"
    assert args == [1, 2, 7]


def test_placeholders_inside_literals_identifiers_and_comments_are_left_alone() -> None:
    sql, args = bind(
        "SELECT 'a?:b', \"odd?col\", x::text -- what? :no\n FROM t WHERE y = ? /* :nope ? */ AND z = 'it''s ?'",
        (5,),
    )
    assert sql == (
        "SELECT 'a?:b', \"odd?col\", x::text -- what? :no\n FROM t WHERE y = $1 /* :nope ? */ AND z = 'it''s ?'"
    )
    assert args == [5]


def test_wrong_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="2 placeholders, 1"):
        bind("SELECT ?, ?", (1,))
    with pytest.raises(ValueError, match=":b"):
        bind("SELECT :a, :b", {"a": 1})
    with pytest.raises(ValueError, match="named"):
        bind("SELECT :a", (1,))
    with pytest.raises(NonPortableStatement, match="mixes"):
        translate("SELECT ?, :a")


def test_a_statement_without_parameters_takes_none_either_way() -> None:
    assert bind("SELECT 1", ()) == ("SELECT 1", [])
    assert bind("SELECT 1", {}) == ("SELECT 1", [])


def test_insert_or_ignore_becomes_on_conflict_do_nothing_before_returning() -> None:
    assert translate("INSERT OR IGNORE INTO t(a) VALUES (?)").sql == (
        "INSERT INTO t(a) VALUES ($1) ON CONFLICT DO NOTHING"
    )
    assert translate("insert or ignore into t(a) values (?) returning a").sql == (
        "INSERT INTO t(a) values ($1) ON CONFLICT DO NOTHING returning a"
    )


def test_scalar_max_and_min_become_greatest_and_least_but_aggregates_stay() -> None:
    assert translate("SELECT MAX(0, MIN(a, b + 1)), MAX(c), min(d) FROM t").sql == (
        "SELECT GREATEST(0, LEAST(a, b + 1)), MAX(c), min(d) FROM t"
    )
    assert translate("SELECT MAX(COALESCE(a, 0), f(b, c)) FROM t").sql == (
        "SELECT GREATEST(COALESCE(a, 0), f(b, c)) FROM t"
    )
    assert translate("SELECT MAX(x) FROM t WHERE y = 'MAX(a, b)'").sql == "SELECT MAX(x) FROM t WHERE y = 'MAX(a, b)'"


def test_null_safe_comparison_with_a_parameter() -> None:
    assert translate("UPDATE t SET a = ? WHERE a IS NOT ? AND b IS ? AND c IS NOT NULL AND d IS NULL").sql == (
        "UPDATE t SET a = $1 WHERE a IS DISTINCT FROM $2 AND b IS NOT DISTINCT FROM $3 AND c IS NOT NULL AND d IS NULL"
    )


def test_null_safe_comparison_with_a_column() -> None:
    assert translate("SELECT CASE WHEN m.b IS excluded.b THEN 1 END, x IS NOT DISTINCT FROM y FROM m").sql == (
        "SELECT CASE WHEN m.b IS NOT DISTINCT FROM excluded.b THEN 1 END, x IS NOT DISTINCT FROM y FROM m"
    )


def test_a_subquery_in_from_without_an_alias_gets_one() -> None:
    assert translate("SELECT COUNT(*) FROM (SELECT a FROM t UNION SELECT a FROM u)").sql == (
        "SELECT COUNT(*) FROM (SELECT a FROM t UNION SELECT a FROM u) AS _sub1"
    )
    assert translate("SELECT n FROM (SELECT n FROM (SELECT 1 AS n) WHERE n > 0) ORDER BY n").sql == (
        "SELECT n FROM (SELECT n FROM (SELECT 1 AS n) AS _sub2 WHERE n > 0) AS _sub1 ORDER BY n"
    )
    kept = "SELECT x.a FROM (SELECT a FROM t) x JOIN (SELECT a FROM u) AS y ON y.a = x.a WHERE x.a IN (SELECT 1)"
    assert translate(kept).sql == kept


def test_a_parameter_as_a_case_condition_is_compared_with_zero() -> None:
    assert translate("SELECT CASE WHEN :p THEN 1 ELSE 2 END, CASE WHEN a = :p THEN 3 END").sql == (
        "SELECT CASE WHEN $1 <> 0 THEN 1 ELSE 2 END, CASE WHEN a = $1 THEN 3 END"
    )


def test_json_each_becomes_jsonb_array_elements_keeping_value_key_and_the_alias() -> None:
    assert translate("SELECT j.value FROM json_each(?) j WHERE true ORDER BY j.key").sql == (
        "SELECT j.value FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS j(value, key)"
        " WHERE true ORDER BY j.key"
    )
    assert translate("SELECT value->>1 FROM json_each(:rows) WHERE true").sql == (
        "SELECT value->>1 FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS json_each(value, key)"
        " WHERE true"
    )
    assert translate("DELETE FROM t WHERE id IN (SELECT value FROM json_each(?))").sql == (
        "DELETE FROM t WHERE id IN (SELECT value FROM jsonb_array_elements(CAST($1 AS jsonb))"
        " WITH ORDINALITY AS json_each(value, key))"
    )


def test_json_extract_of_an_array_item_and_strftime_now() -> None:
    assert translate("SELECT json_extract(j.value, '$[2]') FROM x").sql == "SELECT (j.value ->> 2) FROM x"
    assert translate("SELECT CAST(strftime('%s', 'now') AS INTEGER)").sql == (
        "SELECT CAST(CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) AS INTEGER)"
    )
    assert translate("SELECT IFNULL(a, 0) FROM t").sql == "SELECT COALESCE(a, 0) FROM t"


@pytest.mark.parametrize(
    ("sql", "named"),
    [
        ("UPDATE OR IGNORE t SET a = ?", "UPDATE OR"),
        ("INSERT OR REPLACE INTO t VALUES (?)", "INSERT OR REPLACE"),
        ("REPLACE INTO t VALUES (1)", "REPLACE INTO"),
        ("PRAGMA table_info(t)", "PRAGMA"),
        ("SELECT name FROM sqlite_master", "sqlite_master"),
        ("SELECT a FROM t ORDER BY rowid", "rowid"),
        ("SELECT a FROM t WHERE a GLOB 'x*'", "GLOB"),
        ("SELECT strftime('%Y', 'now')", "strftime"),
        ("SELECT json_extract(a, '$.b') FROM t", "json_extract"),
        ("SELECT group_concat(a) FROM t", "group_concat"),
    ],
)
def test_constructs_without_a_faithful_rewrite_are_refused_by_name(sql: str, named: str) -> None:
    with pytest.raises(NonPortableStatement, match=named):
        translate(sql)


def test_words_that_only_contain_a_refused_name_pass() -> None:
    assert translate("SELECT growid, rowid_count, changes_total FROM t").sql == (
        "SELECT growid, rowid_count, changes_total FROM t"
    )


def test_translations_are_cached_per_statement() -> None:
    sql = "SELECT a FROM cached_once WHERE b = ?"
    assert translate(sql) is translate(sql)


# --- The engine on PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
async def pg(pg_url: str):  # noqa: F811 - the fixture imported above
    from storage.db.postgres import PostgresDatabase

    db = await PostgresDatabase.open(pg_url, readers=2, writers=3)
    try:
        yield db
    finally:
        await db.close()


async def _register(repos, external_id: str = "42", name: str = "Ann") -> int:
    member_id, created = await repos.members.register("telegram", external_id, name, None, NOW, True)
    assert created
    return member_id


async def _names(db) -> list[str]:
    async with db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT display_name FROM members ORDER BY id")
    return [row["display_name"] for row in rows]


async def test_a_transaction_commits_and_one_that_raises_rolls_back(pg) -> None:
    async with pg.transaction() as repos:
        await _register(repos, "1", "Ann")
    with pytest.raises(RuntimeError):
        async with pg.transaction() as repos:
            await _register(repos, "2", "Bob")
            raise RuntimeError("boom")
    assert await _names(pg) == ["Ann"]


async def test_nested_transactions_of_one_task_are_savepoints(pg) -> None:
    async with pg.transaction() as repos:
        await _register(repos, "1", "Ann")
        with pytest.raises(Rollback):
            async with pg.transaction() as inner:
                await _register(inner, "2", "Bob")
                raise Rollback
        async with pg.transaction() as inner:
            await _register(inner, "3", "Cy")
        async with pg.read() as reading:  # a read inside the unit sees its writes
            seen = await reading.conn.execute_fetchall("SELECT display_name FROM members ORDER BY id")
        assert [row[0] for row in seen] == ["Ann", "Cy"]
        # another task reads on another connection: nothing committed yet
        assert await asyncio.create_task(_names(pg)) == []
    assert await _names(pg) == ["Ann", "Cy"]


async def test_a_failed_statement_inside_a_savepoint_leaves_the_transaction_usable(pg) -> None:
    async with pg.transaction() as repos:
        member_id = await _register(repos)
        with pytest.raises(InsufficientPoints):
            async with pg.transaction() as inner:
                await inner.ledger.append(member_id, -5, "deduct", "d:1", NOW)
        booked = await repos.ledger.append(member_id, 5, "award", "a:1", NOW)
    assert (booked.booked, booked.balance) == (True, 5)


async def test_a_read_is_one_snapshot(pg) -> None:
    async with pg.transaction() as repos:
        await _register(repos, "1", "Ann")
    async with pg.read() as reading:
        first = await reading.conn.execute_fetchall("SELECT COUNT(*) FROM members")
        async with pg.transaction() as repos:  # another connection (a read is no unit): commits meanwhile
            await _register(repos, "2", "Bob")
        again = await reading.conn.execute_fetchall("SELECT COUNT(*) FROM members")
    assert (first[0][0], again[0][0]) == (1, 1)
    assert await _names(pg) == ["Ann", "Bob"]


async def test_a_read_cannot_write(pg) -> None:
    with pytest.raises(Exception, match="read-only"):
        async with pg.read() as reading:
            await reading.conn.execute("INSERT INTO chats(channel, chat_id, added_at) VALUES ('t', '1', 0)")


async def test_on_commit_runs_after_the_commit_and_not_after_a_rollback(pg) -> None:
    seen: list[str] = []
    async with pg.transaction() as repos:
        await _register(repos)
        pg.on_commit(lambda: seen.append(f"committed, visible: {len(seen)}"))
        assert seen == []
    with pytest.raises(Rollback):
        async with pg.transaction():
            pg.on_commit(lambda: seen.append("rolled back"))
            raise Rollback
    pg.on_commit(lambda: seen.append("outside"))
    assert seen == ["committed, visible: 0", "outside"]


async def test_transactions_of_different_tasks_run_at_once_on_their_own_connections(pg) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with pg.transaction() as repos:
            await _register(repos, "1", "Ann")
            started.set()
            await release.wait()

    task = asyncio.create_task(holder())
    await started.wait()
    async with pg.transaction() as repos:  # does not wait for the open one
        await _register(repos, "2", "Bob")
    assert await _names(pg) == ["Bob"]
    release.set()
    await task
    assert sorted(await _names(pg)) == ["Ann", "Bob"]


async def test_a_check_in_booked_twice_books_once(pg) -> None:
    async with pg.transaction() as repos:
        member_id = await _register(repos)
        first = await repos.checkins.record(member_id, "2026-12-01", "2026-11-30", NOW, 10, 2, 10)
        again = await repos.checkins.record(member_id, "2026-12-01", "2026-11-30", NOW, 10, 2, 10)
        assert first is not None and (first.day, first.streak, first.points) == ("2026-12-01", 1, 10)
        assert again is None
        next_day = await repos.checkins.record(member_id, "2026-12-02", "2026-12-01", NOW, 10, 2, 10)
        assert next_day is not None and (next_day.streak, next_day.points) == (2, 12)
    async with pg.read() as repos:
        assert await repos.checkins.count_on("2026-12-01") == 1


async def test_two_check_ins_racing_on_two_connections_book_one(pg) -> None:
    async with pg.transaction() as repos:
        member_id = await _register(repos)

    async def check_in():
        async with pg.transaction() as repos:
            return await repos.checkins.record(member_id, "2026-12-01", "2026-11-30", NOW, 10, 2, 10)

    results = await asyncio.gather(check_in(), check_in(), check_in())
    assert sum(result is not None for result in results) == 1
    async with pg.read() as repos:
        assert await repos.checkins.count_on("2026-12-01") == 1


async def test_the_ledger_keeps_the_balance_by_trigger_and_refuses_an_overdraw(pg) -> None:
    async with pg.transaction() as repos:
        member_id = await _register(repos)
        booked = await repos.ledger.append(member_id, 30, "award", "a:1", NOW)
        repeat = await repos.ledger.append(member_id, 30, "award", "a:1", NOW)
        assert (booked.booked, booked.balance, booked.earned) == (True, 30, 30)
        assert (repeat.booked, repeat.balance, repeat.entry_id) == (False, 30, booked.entry_id)
    with pytest.raises(InsufficientPoints):
        async with pg.transaction() as repos:
            await repos.ledger.append(member_id, -31, "deduct", "d:1", NOW)
    async with pg.read() as repos:
        member = await repos.members.get(member_id)
        assert member is not None and (member.balance, member.earned) == (30, 30)
        assert await repos.ledger.sum_for(member_id) == 30
        assert await repos.ledger.mismatched_balances() == []


async def test_the_ledger_is_append_only(pg) -> None:
    async with pg.transaction() as repos:
        member_id = await _register(repos)
        await repos.ledger.append(member_id, 5, "award", "a:1", NOW)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        async with pg.transaction() as repos:
            await repos.conn.execute("UPDATE ledger SET delta = 6")


async def test_rows_read_by_name_and_position_and_a_missing_name_is_an_index_error(pg) -> None:
    async with pg.transaction() as repos:
        member_id = await _register(repos)
    async with pg.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT id, display_name FROM members WHERE id = ?", (member_id,))
        identities = await repos.members.identities(member_id)
    assert (rows[0][0], rows[0]["display_name"]) == (member_id, "Ann")
    with pytest.raises(IndexError):
        rows[0]["nope"]
    assert identities[0].can_message is True


async def test_sums_and_averages_come_back_as_numbers_like_sqlite(pg) -> None:
    async with pg.read() as repos:
        rows = await repos.conn.execute_fetchall(
            "SELECT SUM(x) AS s, AVG(x) AS a FROM (SELECT CAST(1 AS BIGINT) AS x UNION ALL SELECT 2) t"
        )
    assert (rows[0]["s"], type(rows[0]["s"])) == (3, int)
    assert (rows[0]["a"], type(rows[0]["a"])) == (1.5, float)


async def test_execute_reports_the_rows_changed(pg) -> None:
    async with pg.transaction() as repos:
        await _register(repos, "1")
        await _register(repos, "2")
        changed = await repos.conn.execute("UPDATE members SET notify = ? WHERE notify = 1", (0,))
        none = await repos.conn.execute("UPDATE members SET notify = 1 WHERE id = -1")
    assert (changed.rowcount, none.rowcount) == (2, 0)


async def test_ping_and_schema_version(pg) -> None:
    from storage.db.database import migration_scripts

    await pg.ping()
    assert await pg.schema_version() == migration_scripts()[-1][0]  # SQLite's newest: the same numbers


async def test_a_busy_worker_answers_the_ping_from_its_last_commit_and_an_idle_one_asks_the_server(pg) -> None:
    """With every writer connection at work, a ping that waits its turn would make a load balancer take a busy
    worker for a dead one; a commit a moment ago shows the server answers. Without one the ping asks."""
    import asyncio
    import contextlib

    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):  # every writer connection is in use
            await stack.enter_async_context(pg._writers.acquire())
        with pytest.raises(TimeoutError):  # nothing committed yet: the ping waits for a connection
            await asyncio.wait_for(pg.ping(), 0.5)
    async with pg.transaction() as repos:
        await _register(repos)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(3):
            await stack.enter_async_context(pg._writers.acquire())
        await asyncio.wait_for(pg.ping(), 0.5)  # the commit just now answers for the server
    pg._answered_at = float("-inf")  # long ago
    await asyncio.wait_for(pg.ping(), 5)  # connections free again: the ping asks, and the server answers


def test_database_faults_are_told_from_refusals() -> None:
    import asyncpg

    from storage.db.postgres import PostgresDatabase

    faults = (asyncpg.DiskFullError("disk full"), asyncpg.ConnectionDoesNotExistError("gone"), ConnectionResetError())
    for fault in faults:
        assert PostgresDatabase.is_storage_fault(fault), fault
    wrapped = RuntimeError("while booking")
    wrapped.__cause__ = asyncpg.ReadOnlySQLTransactionError("read-only")
    assert PostgresDatabase.is_storage_fault(wrapped)
    for refusal in (asyncpg.UniqueViolationError("dup"), sqlite3.IntegrityError("CHECK"), ValueError("x")):
        assert not PostgresDatabase.is_storage_fault(refusal), refusal


# --- Migrations ---------------------------------------------------------------------------------------------------


async def test_two_processes_opening_an_empty_database_together_migrate_it_once(pg_empty_url: str) -> None:  # noqa: F811
    from storage.db.postgres import PostgresDatabase, migration_scripts

    opened = await asyncio.gather(*(PostgresDatabase.open(pg_empty_url, readers=1, writers=1) for _ in range(3)))
    try:
        async with opened[0].read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [row[0] for row in rows] == [version for version, _name, _sql in migration_scripts()]
    finally:
        for db in opened:
            await db.close()


async def test_opening_refuses_a_database_whose_applied_migration_changed(pg_url: str) -> None:  # noqa: F811
    import asyncpg

    from storage.db.postgres import PostgresDatabase
    from storage.db.preflight import StorageError

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("UPDATE schema_version SET checksum = 'edited' WHERE version = 5")
    finally:
        await conn.close()
    with pytest.raises(StorageError, match=r"0005_feedback\.sql"):
        await PostgresDatabase.open(pg_url)


async def test_opening_refuses_a_database_from_a_newer_vipbot(pg_url: str) -> None:  # noqa: F811
    import asyncpg

    from storage.db.postgres import PostgresDatabase
    from storage.db.preflight import StorageError

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute("INSERT INTO schema_version(version, name, checksum) VALUES (999, '0999_x.sql', 'x')")
    finally:
        await conn.close()
    with pytest.raises(StorageError, match="newer vipbot"):
        await PostgresDatabase.open(pg_url)


async def test_opening_an_unreachable_server_is_a_one_line_storage_error() -> None:
    from storage.db.postgres import PostgresDatabase
    from storage.db.preflight import StorageError

    with pytest.raises(StorageError, match="cannot connect") as caught:
        await PostgresDatabase.open("postgresql://nobody:secret@127.0.0.1:1/none")
    assert "secret" not in str(caught.value) and "\n" not in str(caught.value)


async def test_members_an_import_numbered_itself_leave_fresh_ids_for_the_next_registration(pg) -> None:
    from dataclasses import replace

    from storage.customers import encode_import

    async with pg.transaction() as repos:
        first = await _register(repos, "1", "Ann")
        payload = encode_import(
            [(-1, "Imported One", None), (-2, "Imported Two", None)],
            [(-1, "13800138001", "", None, None, 0, 0), (-2, "13800138002", "", None, None, 0, 0)],
            [],
            [],
        )
        base = await repos.customers.last_member_id()
        await repos.customers.apply(replace(payload, base=base), NOW)
    async with pg.transaction() as repos:
        after = await _register(repos, "2", "Bo")  # without the trigger: a duplicate key on members_pkey
    assert (first, base, after) == (1, 1, 4)
    assert await _names(pg) == ["Ann", "Imported One", "Imported Two", "Bo"]


async def test_a_text_with_a_nul_character_is_stored_with_a_replacement_not_refused(pg) -> None:
    """PostgreSQL's text cannot hold NUL (SQLite's can): a member's name or message with one is still stored."""
    async with pg.transaction() as repos:
        await _register(repos, "7", "A\x00nn")
    assert await _names(pg) == ["A\ufffdnn"]


def test_the_engine_neutral_fault_check_knows_postgresql_faults_once_the_engine_is_loaded() -> None:
    """The dispatcher, the intake and the webhook ask `preflight.is_storage_fault`: a connection PostgreSQL
    dropped mid-handler is the database's fault (the update is tried again), not the handler's (marked done
    with an apology, which would lose a check-in to a retry on another worker)."""
    import asyncpg

    import storage.db.postgres  # noqa: F401 - loaded, as when storage.url names PostgreSQL
    from storage.db.preflight import is_storage_fault

    for fault in (asyncpg.AdminShutdownError("terminating connection"), asyncpg.ConnectionDoesNotExistError("gone")):
        assert is_storage_fault(fault), fault
    assert not is_storage_fault(asyncpg.UniqueViolationError("dup"))
    assert not is_storage_fault(ValueError("a handler's own bug"))
