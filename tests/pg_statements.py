"""Which of the repositories' statements run on PostgreSQL, found by running tests: a pytest plugin.

Loaded with `-p tests.pg_statements`, it records every distinct statement the (SQLite) test run executes through
the repositories' `Statements`, with one call's parameters and the line of storage/ that ran it. When the run
ends it replays each statement on a throw-away PostgreSQL database migrated to the newest schema, through the
dialect layer, in a transaction that is rolled back, and writes a report grouped by what went wrong: refused
by the dialect layer (a construct it cannot rewrite), refused by PostgreSQL when preparing (syntax, types,
unknown functions or operators), or failing with the recorded parameters (types of values). A constraint
violation counts as running (it depends on the data the replay does not have).

    .venv/bin/python -m pytest -q -p no:randomly -p tests.pg_statements tests/test_events.py tests/test_sales.py

The report goes to `VIPBOT_PG_STATEMENTS_REPORT` (default: pg_statements.txt in the current folder); the server
is the tests' (`tests.pg`). Without a reachable PostgreSQL nothing is replayed and the report says why.
"""

from __future__ import annotations

import asyncio
import os
import traceback
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from storage.db import database

REPORT = os.environ.get("VIPBOT_PG_STATEMENTS_REPORT") or "pg_statements.txt"
_ROOT = str(Path(__file__).resolve().parent.parent) + os.sep
_seen: dict[str, tuple[Any, str]] = {}
"""Statement text -> (the parameters of its first call, where it was run from)."""


def _origin() -> str:
    """The innermost line of the project outside storage/db that ran the statement (a repository's, mostly)."""
    frames = [f for f in traceback.extract_stack(limit=40)[:-2] if f.filename.startswith(_ROOT)]
    outside = [f for f in frames if f"{os.sep}storage{os.sep}db{os.sep}" not in f.filename
               and not f.filename.endswith("pg_statements.py")]  # fmt: skip
    for preferred in ([f for f in outside if f"{os.sep}storage{os.sep}" in f.filename], outside):
        if preferred:
            frame = preferred[-1]
            return f"{frame.filename[len(_ROOT):]}:{frame.lineno}"
    return "?"


def _recording(method: Callable[..., Any]) -> Callable[..., Any]:
    async def recorded(self: Any, sql: str, params: Any = (), *, bulk: bool = False) -> Any:
        if sql not in _seen:
            _seen[sql] = (dict(params) if isinstance(params, dict) else list(params), _origin())
        return await method(self, sql, params, bulk=bulk)

    return recorded


def pytest_configure(config: pytest.Config) -> None:
    for cls in (database.InlineStatements, database.ThreadedStatements):
        cls.execute = _recording(cls.execute)  # type: ignore[method-assign]
        cls.execute_fetchall = _recording(cls.execute_fetchall)  # type: ignore[method-assign]


async def replay(statements: dict[str, tuple[Any, str]]) -> dict[str, list[tuple[str, str, str]]]:
    """Each statement's outcome on PostgreSQL: {kind: [(where, why, sql)]}; kind 'ok' for those that ran."""
    import asyncpg

    from storage.db.dialect import NonPortableStatement, translate
    from storage.db.postgres import PostgresDatabase, Row, init_connection
    from tests.pg import scratch_database

    found: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    async with scratch_database() as url:
        await (await PostgresDatabase.open(url, readers=1, writers=1)).close()  # migrates
        conn = await asyncpg.connect(url, record_class=Row)
        await init_connection(conn)
        try:
            for sql, (params, where) in statements.items():
                try:
                    translation = translate(sql)
                    args = translation.args(params)
                except (NonPortableStatement, ValueError) as exc:
                    found["refused by the dialect layer"].append((where, str(exc), sql))
                    continue
                transaction = conn.transaction()
                await transaction.start()
                try:
                    try:
                        prepared = await conn.prepare(translation.sql)
                    except asyncpg.PostgresError as exc:
                        found[f"refused by PostgreSQL: {type(exc).__name__}"].append(
                            (where, str(exc).splitlines()[0], sql)
                        )
                        continue
                    try:
                        await prepared.fetch(*args)
                        found["ok"].append((where, "", sql))
                    except asyncpg.IntegrityConstraintViolationError:
                        found["ok"].append((where, "a constraint (data-dependent)", sql))
                    except (asyncpg.DataError, TypeError, OverflowError, asyncpg.PostgresError) as exc:
                        found[f"failed with its parameters: {type(exc).__name__}"].append(
                            (where, str(exc).splitlines()[0], sql)
                        )
                finally:
                    await transaction.rollback()
        finally:
            await conn.close()
    return found


def report(found: dict[str, list[tuple[str, str, str]]]) -> str:
    lines = [", ".join(f"{kind}: {len(items)}" for kind, items in sorted(found.items()))]
    for kind, items in sorted(found.items()):
        if kind == "ok":
            continue
        lines.append(f"\n## {kind} ({len(items)})")
        for where, why, sql in sorted(items):
            lines.append(f"- {where}: {why}\n    {' '.join(sql.split())}")
    return "\n".join(lines) + "\n"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.pg import skip_reason

    why = skip_reason()
    text = f"nothing replayed: {why}\n" if why else report(asyncio.run(replay(dict(_seen))))
    Path(REPORT).write_text(text, encoding="utf-8")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    first = Path(REPORT).read_text(encoding="utf-8").splitlines()[0] if Path(REPORT).exists() else ""
    terminalreporter.write_line(f"pg_statements: {len(_seen)} statements recorded; {first} (report: {REPORT})")
