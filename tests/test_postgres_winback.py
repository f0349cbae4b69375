"""The win-back job's claim on real PostgreSQL connections (skipped without PostgreSQL): two leaders marking the
same lapsed members at once must each get a disjoint share, so every member's care message is queued once.

`SegmentRepo.mark_cared` claims with one `UPDATE … WHERE cared_at IS NULL RETURNING`: the second run's UPDATE
waits for the first's row locks and, under READ COMMITTED, re-checks `cared_at IS NULL` on the committed rows,
so it returns only what the first did not take. The race is forced with `race` (tests.test_postgres_races): the
first run marks and keeps its transaction open until the second is blocked on its locks (or done).

The check has teeth: the same race with a read-then-write claim (SELECT the uncared, then UPDATE them and return
what was read) hands the overlapping members to both runs, and the same assertion catches it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pg import pg_template, pg_url  # noqa: F401 - fixtures
from tests.test_postgres_races import race

NOW = 1_764_000_000
LAST_PURCHASE = NOW - 100 * 86_400


@pytest.fixture
async def pg(pg_url: str):  # noqa: F811 - the fixture imported above
    from storage.db.postgres import PostgresDatabase

    db = await PostgresDatabase.open(pg_url, readers=1, writers=4)
    try:
        yield db
    finally:
        await db.close()


async def _lapsed(db: Any, count: int) -> list[int]:
    """`count` members, each in a fresh dormant_high entry with no care message yet."""
    ids = []
    async with db.transaction() as repos:
        for i in range(count):
            member_id, _created = await repos.members.register("telegram", str(500 + i), f"M{i}", None, NOW, True)
            await repos.conn.execute(
                "INSERT INTO member_segments(member_id, segment, last_purchase_at, entered_at, cared_at)"
                " VALUES (?, 'dormant_high', ?, ?, NULL)",
                (member_id, LAST_PURCHASE, NOW - 86_400),
            )
            ids.append(member_id)
    return ids


async def _cared(db: Any) -> dict[int, int | None]:
    async with db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT member_id, cared_at FROM member_segments")
    return {int(r[0]): r[1] for r in rows}


def _claimed_twice(first: list[int], second: list[int]) -> set[int]:
    return set(first) & set(second)


async def _read_then_write(repos: Any, member_ids: list[int], now: int) -> list[int]:
    """The broken claim the check must catch: decide on a read, then write."""
    marks = ",".join("?" * len(member_ids))
    rows = await repos.conn.execute_fetchall(
        f"SELECT member_id FROM member_segments WHERE cared_at IS NULL AND member_id IN ({marks})", member_ids
    )
    chosen = sorted(int(r[0]) for r in rows)
    if chosen:
        await repos.conn.execute(
            f"UPDATE member_segments SET cared_at = ? WHERE member_id IN ({','.join('?' * len(chosen))})",
            (now, *chosen),
        )
    return chosen


async def test_two_winback_runs_at_once_claim_each_member_once(pg, pg_url: str) -> None:  # noqa: F811
    a, b, c, d = await _lapsed(pg, 4)

    first, second = await race(
        pg,
        pg_url,
        lambda repos: repos.segments.mark_cared([a, b, c], NOW),
        lambda repos: repos.segments.mark_cared([b, c, d], NOW + 1),
    )

    assert first == [a, b, c]  # the first run committed first: the overlap is its
    assert second == [d]
    assert _claimed_twice(first, second) == set()
    assert await _cared(pg) == {a: NOW, b: NOW, c: NOW, d: NOW + 1}


async def test_the_same_lapsed_list_on_two_leaders_is_messaged_once(pg, pg_url: str) -> None:  # noqa: F811
    due = await _lapsed(pg, 5)  # both leaders read the same care_due list before either marked

    first, second = await race(
        pg,
        pg_url,
        lambda repos: repos.segments.mark_cared(due, NOW),
        lambda repos: repos.segments.mark_cared(due, NOW),
    )

    assert sorted(first + second) == due  # every member exactly once across both runs
    assert second == []


async def test_a_read_then_write_claim_would_message_the_overlap_twice(pg, pg_url: str) -> None:  # noqa: F811
    """The race and the assertion above, with the claim done wrong: both runs get b and c."""
    a, b, c, d = await _lapsed(pg, 4)

    first, second = await race(
        pg,
        pg_url,
        lambda repos: _read_then_write(repos, [a, b, c], NOW),
        lambda repos: _read_then_write(repos, [b, c, d], NOW + 1),
    )

    assert _claimed_twice(first, second) == {b, c}
