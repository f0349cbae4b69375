"""Races that SQLite's single writer ruled out, run on real PostgreSQL connections (skipped without PostgreSQL):
the last place of an event, a capacity lowered while someone signs up, the first contact of a new user on two
workers, the referrer's monthly cap settled by two first purchases at once, a group buy's settlement racing a join,
an edit or a cancel, and a poll's close racing an answer or a withdrawal, its deletion racing the first answer.

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


# --- (d) group-buy settlement racing a join, an edit, a cancel ----------------------------------------------------


async def _group_buy(db: Any, min_members: int = 2) -> int:
    async with db.transaction() as repos:
        return await repos.group_buys.create("Tea set", 20_000, 15_000, min_members, NOW + 86_400, None, NOW)


async def _state_and_members(db: Any, group_buy_id: int) -> tuple[str, list[int]]:
    async with db.read() as repos:
        buy = await repos.group_buys.get(group_buy_id)
        people = await repos.group_buys.participants(group_buy_id)
    assert buy is not None
    return buy.state, [p.member_id for p in people]


def _settle(group_buy_id: int) -> Step:
    """What the deadline does: close the group buy, then read whom it closed on (they get the codes)."""

    async def settle(repos: Any) -> tuple[bool, list[int]]:
        settled = await repos.group_buys.settle(group_buy_id, True)
        return settled, [p.member_id for p in await repos.group_buys.participants(group_buy_id)]

    return settle


async def test_a_join_racing_a_settlement_in_flight_is_refused_after_it(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob, cy = await _members(pg, "Ann", "Bob", "Cy")
    buy_id = await _group_buy(pg)
    async with pg.transaction() as repos:
        assert await repos.group_buys.join(buy_id, ann, 0, NOW)
        assert await repos.group_buys.join(buy_id, bob, 0, NOW)

    settled, joined = await race(
        pg, pg_url, _settle(buy_id), lambda repos: repos.group_buys.join(buy_id, cy, 0, NOW + 60)
    )

    assert settled == (True, [ann, bob])
    assert joined is False  # the group buy was settled without Cy: Cy is not in it
    assert await _state_and_members(pg, buy_id) == ("succeeded", [ann, bob])


async def test_a_join_landing_before_the_settlement_is_settled_with_it(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob, cy = await _members(pg, "Ann", "Bob", "Cy")
    buy_id = await _group_buy(pg)
    async with pg.transaction() as repos:
        assert await repos.group_buys.join(buy_id, ann, 0, NOW)
        assert await repos.group_buys.join(buy_id, bob, 0, NOW)

    joined, settled = await race(
        pg, pg_url, lambda repos: repos.group_buys.join(buy_id, cy, 0, NOW + 60), _settle(buy_id)
    )

    assert joined is True
    assert settled == (True, [ann, bob, cy])  # Cy's join committed first: Cy gets a code too
    assert await _state_and_members(pg, buy_id) == ("succeeded", [ann, bob, cy])


async def test_an_edit_racing_the_first_join_does_not_change_a_group_buy_someone_joined(
    pg,
    pg_url: str,  # noqa: F811
) -> None:
    (ann,) = await _members(pg, "Ann")
    buy_id = await _group_buy(pg)

    joined, edited = await race(
        pg,
        pg_url,
        lambda repos: repos.group_buys.join(buy_id, ann, 0, NOW + 60),
        lambda repos: repos.group_buys.edit(buy_id, 30_000, 25_000, 3, NOW + 7 * 86_400, NOW + 60),
    )

    assert (joined, edited) == (True, False)
    async with pg.read() as repos:
        buy = await repos.group_buys.get(buy_id)
    assert buy is not None
    assert (buy.price_fen, buy.group_price_fen, buy.min_members, buy.joined) == (20_000, 15_000, 2, 1)


async def test_a_cancel_racing_a_settlement_lets_exactly_one_win(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob = await _members(pg, "Ann", "Bob")
    buy_id = await _group_buy(pg)
    async with pg.transaction() as repos:
        assert await repos.group_buys.join(buy_id, ann, 0, NOW)
        assert await repos.group_buys.join(buy_id, bob, 0, NOW)

    cancelled, settled = await race(
        pg, pg_url, lambda repos: repos.group_buys.cancel(buy_id), lambda repos: repos.group_buys.settle(buy_id, True)
    )

    assert (cancelled, settled) == (True, False)
    assert (await _state_and_members(pg, buy_id))[0] == "cancelled"


# --- (e) a poll's close racing an answer, its deletion racing the first answer ------------------------------------


async def _poll(db: Any) -> int:
    async with db.transaction() as repos:
        poll_id = await repos.polls.create("rating", "How was the tasting?", [], False, (), 0, "all", NOW + 86_400,
                                           None, NOW)  # fmt: skip
    assert poll_id is not None
    return poll_id


def _answer(poll_id: int, member_id: int, stars: int) -> Step:
    """An answer; "closed" when the poll refused it (PollClosed)."""
    from storage.polls import PollClosed

    async def answer(repos: Any) -> str:
        try:
            await repos.polls.answer(poll_id, member_id, stars, True, NOW + 60)
        except PollClosed:
            return "closed"
        return "recorded"

    return answer


def _close(poll_id: int) -> Step:
    """What closing does: close the poll, then tally the answers it closed on."""

    async def close(repos: Any) -> tuple[bool, dict[int, Any]]:
        closed = await repos.polls.close(poll_id, NOW + 60)
        return closed, {a.member_id: a.value for a in await repos.polls.answers(poll_id)}

    return close


async def _answers(db: Any, poll_id: int) -> dict[int, Any]:
    async with db.read() as repos:
        return {a.member_id: a.value for a in await repos.polls.answers(poll_id)}


async def test_an_answer_racing_a_close_in_flight_is_refused_after_the_tally(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob = await _members(pg, "Ann", "Bob")
    poll_id = await _poll(pg)
    async with pg.transaction() as repos:
        await repos.polls.answer(poll_id, ann, 4, True, NOW)

    closed, answered = await race(pg, pg_url, _close(poll_id), _answer(poll_id, bob, 2))

    assert closed == (True, {ann: 4})
    assert answered == "closed"
    assert await _answers(pg, poll_id) == {ann: 4}  # nothing the tally did not count


async def test_an_answer_landing_before_the_close_is_in_the_tally(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob = await _members(pg, "Ann", "Bob")
    poll_id = await _poll(pg)
    async with pg.transaction() as repos:
        await repos.polls.answer(poll_id, ann, 4, True, NOW)

    answered, closed = await race(pg, pg_url, _answer(poll_id, bob, 2), _close(poll_id))

    assert answered == "recorded"
    assert closed == (True, {ann: 4, bob: 2})
    assert await _answers(pg, poll_id) == {ann: 4, bob: 2}


async def test_a_delete_racing_the_first_answer_leaves_the_answered_poll(pg, pg_url: str) -> None:  # noqa: F811
    (ann,) = await _members(pg, "Ann")
    poll_id = await _poll(pg)

    answered, deleted = await race(
        pg, pg_url, _answer(poll_id, ann, 5), lambda repos: repos.polls.delete(poll_id, NOW + 60)
    )

    assert (answered, deleted) == ("recorded", False)
    async with pg.read() as repos:
        poll = await repos.polls.get(poll_id)
    assert poll is not None and poll.state == "open"
    assert await _answers(pg, poll_id) == {ann: 5}


async def test_a_withdrawal_racing_a_close_is_not_in_the_tally(pg, pg_url: str) -> None:  # noqa: F811
    ann, bob = await _members(pg, "Ann", "Bob")
    poll_id = await _poll(pg)
    async with pg.transaction() as repos:
        await repos.polls.answer(poll_id, ann, 4, True, NOW)
        await repos.polls.answer(poll_id, bob, 1, True, NOW)

    _, closed = await race(pg, pg_url, lambda repos: repos.polls.withdraw(poll_id, bob), _close(poll_id))

    assert closed == (True, {ann: 4})  # the tally is what stays
    assert await _answers(pg, poll_id) == {ann: 4}
