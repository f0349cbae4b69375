"""Races that SQLite's single writer ruled out, run on real PostgreSQL connections (skipped without PostgreSQL):
the last place of an event, a capacity lowered while someone signs up, the first contact of a new user on two
workers, and the referrer's monthly cap settled by two first purchases at once.

Each race is forced, not hoped for: the first transaction does its part and keeps its transaction open until the
second has either done its part too (without a lock: both decided on what they saw before either committed) or
is waiting for a lock the first holds (what the fixes take); only then does the first commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from storage.events import SignupResult
from tests.pg import pg_template, pg_url  # noqa: F401 - fixtures

NOW = 1_764_000_000
MONTH = "2025-11"
WAIT_SECONDS = 20.0
"""A race that has not played out by then is a failure (a hang), not a result."""

Step = Callable[[Any], Awaitable[Any]]


@pytest.fixture
async def pg(pg_url: str):  # noqa: F811 - the fixture imported above
    from storage.db.postgres import PostgresDatabase

    db = await PostgresDatabase.open(pg_url, readers=1, writers=4)
    try:
        yield db
    finally:
        await db.close()


async def _blocked(watcher: Any, pid: int) -> bool:
    """Whether the backend `pid` is waiting for a lock another transaction holds."""
    return bool(await watcher.fetchval("SELECT cardinality(pg_blocking_pids($1)) > 0", pid))


async def race(db: Any, url: str, first: Step, second: Step) -> tuple[Any, Any]:
    """Run `first` and `second` in two transactions on two connections of `db`'s writers: `second` starts once
    `first` is done, and `first` commits only when `second` is done too or waits for a lock. Returns (what
    `first` returned, what `second` returned); an exception of either is raised."""
    import asyncpg

    first_done = asyncio.Event()
    second_done = asyncio.Event()
    second_pid: list[int] = []
    watcher = await asyncpg.connect(url)

    async def run_first() -> Any:
        async with db.transaction() as repos:
            result = await first(repos)
            first_done.set()
            while True:  # polling the server for a state, not timing anything
                if second_done.is_set() or (second_pid and await _blocked(watcher, second_pid[0])):
                    return result
                await asyncio.sleep(0.01)

    async def run_second() -> Any:
        async with db.transaction() as repos:
            rows = await repos.conn.execute_fetchall("SELECT pg_backend_pid()")
            second_pid.append(int(rows[0][0]))
            await first_done.wait()
            try:
                return await second(repos)
            finally:
                second_done.set()

    try:
        async with asyncio.timeout(WAIT_SECONDS):
            results = await asyncio.gather(run_first(), run_second(), return_exceptions=True)
    finally:
        await watcher.close()
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]


async def _members(db: Any, *names: str) -> list[int]:
    async with db.transaction() as repos:
        found = [await repos.members.register("telegram", str(100 + i), name, None, NOW, True) for i, name in
                 enumerate(names)]  # fmt: skip
    return [member_id for member_id, _created in found]


# --- (a) event capacity ------------------------------------------------------------------------------------------


async def _event(db: Any, capacity: int | None) -> int:
    async with db.transaction() as repos:
        return await repos.events.create("Tasting", "", NOW + 86_400, capacity, 0, False, None, NOW)


async def _joined(db: Any, event_id: int) -> int:
    async with db.read() as repos:
        event = await repos.events.get(event_id)
    assert event is not None
    return event.joined


async def test_two_members_racing_for_the_last_place_get_it_once(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob = await _members(pg, "Ann", "Bob")
    event_id = await _event(pg, 1)

    first, second = await race(
        pg,
        pg_url,
        lambda repos: repos.events.join(event_id, ann, NOW),
        lambda repos: repos.events.join(event_id, bob, NOW),
    )

    assert (first, second) == (SignupResult.JOINED, SignupResult.FULL)
    assert await _joined(pg, event_id) == 1


async def test_a_capacity_lowered_while_a_member_signs_up_never_leaves_more_than_it_allows(
    pg,
    pg_url: str,  # noqa: F811
) -> None:
    ann, bob, cy = await _members(pg, "Ann", "Bob", "Cy")
    event_id = await _event(pg, 3)
    async with pg.transaction() as repos:
        assert await repos.events.join(event_id, ann, NOW) is SignupResult.JOINED
        assert await repos.events.join(event_id, bob, NOW) is SignupResult.JOINED

    joined, lowered = await race(
        pg,
        pg_url,
        lambda repos: repos.events.join(event_id, cy, NOW),
        lambda repos: repos.events.set_capacity(event_id, 2),
    )

    assert joined is SignupResult.JOINED
    assert lowered is False  # three are signed up now: a capacity of 2 would not hold them
    async with pg.read() as repos:
        event = await repos.events.get(event_id)
    assert event is not None and (event.capacity, event.joined) == (3, 3)


# --- (b) first contact on two workers ------------------------------------------------------------------------------


async def test_a_new_user_arriving_on_two_workers_at_once_becomes_one_member(pg, pg_url: str) -> None:  # noqa: F811
    def first_contact(name: str) -> Step:
        return lambda repos: repos.members.register("wechat", "o-new-user", name, None, NOW, True)

    first, second = await race(pg, pg_url, first_contact("Ann"), first_contact("Ann W"))

    member_id = first[0]
    assert first == (member_id, True)
    assert second == (member_id, False)  # the other worker's member, touched: not created twice
    async with pg.read() as repos:
        members = await repos.conn.execute_fetchall("SELECT id, display_name FROM members")
        identities = await repos.conn.execute_fetchall("SELECT member_id, display_name FROM identities")
    assert [tuple(row) for row in members] == [(member_id, "Ann W")]
    assert [tuple(row) for row in identities] == [(member_id, "Ann W")]


# --- (c) the referrer's monthly cap --------------------------------------------------------------------------------


async def test_two_first_purchases_settling_at_once_respect_the_referrers_monthly_cap(pg, pg_url: str) -> None:  # noqa: F811
    referrer, bob, cy = await _members(pg, "Ann", "Bob", "Cy")
    async with pg.transaction() as repos:
        assert await repos.referrals.claim_code(referrer, "ANN1", NOW) == "ANN1"
        for referred in (bob, cy):
            assert await repos.referrals.attribute(referrer, referred, "ANN1", "telegram", NOW)
        purchases = {m: await repos.purchases.record(m, 10_000, "", f"p:{m}", NOW, None) for m in (bob, cy)}

    def first_purchase(referred: int) -> Step:
        async def settle(repos: Any) -> str | None:
            purchase_id = purchases[referred]
            assert purchase_id is not None
            settled = await repos.referrals.settle(referred, purchase_id, MONTH, 1, 50, 20, "cap reached", NOW)
            return settled.state if settled is not None else None

        return settle

    first, second = await race(pg, pg_url, first_purchase(bob), first_purchase(cy))

    assert (first, second) == ("rewarded", "capped")
    async with pg.read() as repos:
        assert await repos.referrals.rewarded_in_month(referrer, MONTH) == 1
        assert (await repos.referrals.stats(referrer)).points == 50
