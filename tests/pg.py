"""Finding a PostgreSQL server for the tests, and throw-away databases on it.

The server is `VIPBOT_TEST_POSTGRES_URL` (read when this module is imported, before the tests' clean
environment), by default postgresql://postgres@127.0.0.1:5432/postgres. A test that needs it takes the fixture
`pg_url`: the URL of a fresh database migrated to the newest schema (a copy of a template migrated once per
test module), dropped after the test; without a reachable server (a 2 s try) the test is skipped, saying why.

`.venv/bin/python -m tests.pg` prints whether PostgreSQL is reachable, and where (without the password), and
exits 0 only when it is: `make test` (tests/run_engines.sh) runs the suite on PostgreSQL then.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import cache
from urllib.parse import urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
POSTGRES_URL = os.environ.get("VIPBOT_TEST_POSTGRES_URL") or DEFAULT_URL
"""The server the tests use (its database is where throw-away databases are created from)."""
CONNECT_TIMEOUT_SECONDS = 2.0
PREFIX = "vipbot_test_"


def with_database(url: str, name: str) -> str:
    """`url` naming the database `name` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def unreachable(url: str = POSTGRES_URL, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str | None:
    """None when PostgreSQL answers at `url` within `timeout`, else why not (one line)."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install 'vipbot[postgres]')"
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except Exception as exc:  # any failure means "not reachable", said in the skip reason
        return f"PostgreSQL not reachable at {redacted(url)}: {type(exc).__name__}: {exc}"
    try:
        await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    return None


@cache
def skip_reason() -> str | None:
    """Whether (once per test run) the server can be used; why not."""
    return asyncio.run(unreachable())


async def _admin(sql: str, url: str = POSTGRES_URL) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(template: str | None = None, url: str = POSTGRES_URL) -> str:
    """Create an empty database (or a copy of `template`) with a random name; returns its URL."""
    name = f"{PREFIX}{secrets.token_hex(6)}"
    await _admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""), url)
    return with_database(url, name)


async def drop_database(db_url: str, url: str = POSTGRES_URL) -> None:
    name = urlsplit(db_url).path.lstrip("/")
    if not name.startswith(PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not a throw-away database")
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', url)


@asynccontextmanager
async def scratch_database(template: str | None = None, url: str = POSTGRES_URL) -> AsyncIterator[str]:
    """A throw-away database (empty, or a copy of `template`) for the duration of the block: its URL."""
    db_url = await create_database(template, url)
    try:
        yield db_url
    finally:
        await drop_database(db_url, url)


def require_postgres() -> None:
    """Skip the calling test (or fixture) when PostgreSQL cannot be reached."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)


def redacted(url: str) -> str:
    """`url` without its password (for headers and messages)."""
    from storage.db.open import redacted_url

    return redacted_url(url)


async def _migrated_template() -> str:
    from storage.db.postgres import PostgresDatabase

    db_url = await create_database()
    db = await PostgresDatabase.open(db_url, readers=1, writers=1)
    await db.close()
    return db_url


async def migrated_template_name() -> str:
    """Create a database migrated to the newest schema (to copy with CREATE DATABASE ... TEMPLATE): its name."""
    return urlsplit(await _migrated_template()).path.lstrip("/")


@cache
def _dropper() -> ThreadPoolExecutor:
    """Where used databases are dropped, in the background: DROP DATABASE waits for a checkpoint (seconds on a
    busy server; drops at the same time share one). The process waits for the last drops when it exits."""
    return ThreadPoolExecutor(max_workers=4, thread_name_prefix="pg-drop")


def drop_later(db_url: str) -> None:
    """Drop a throw-away database in the background (see `_dropper`)."""
    _dropper().submit(lambda: asyncio.run(drop_database(db_url)))


@pytest.fixture(scope="module")
def pg_template() -> Iterator[str]:
    """The name of a database migrated to the newest schema, once per test module (dropped afterwards)."""
    require_postgres()
    db_url = asyncio.run(_migrated_template())
    try:
        yield urlsplit(db_url).path.lstrip("/")
    finally:
        drop_later(db_url)


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """The URL of a fresh migrated database of its own for this test (dropped afterwards)."""
    db_url = asyncio.run(create_database(pg_template))
    try:
        yield db_url
    finally:
        drop_later(db_url)


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """The URL of a fresh empty database (no schema) for this test (dropped afterwards)."""
    require_postgres()
    db_url = asyncio.run(create_database())
    try:
        yield db_url
    finally:
        drop_later(db_url)


if __name__ == "__main__":
    why = asyncio.run(unreachable())
    print(why or f"PostgreSQL reachable at {redacted(POSTGRES_URL)}")
    sys.exit(1 if why else 0)
