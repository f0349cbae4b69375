"""Fan-outs to every member are bulk statements: holiday gifts are one INSERT … SELECT into the ledger (once per
member, balances equal to their ledger sums), the recipients of `/announce --segment` one INSERT … SELECT
into the delivery queue, and the day's birthdays a fixed number of statements (claims, gifts, wishes), so the
number of statements does not grow with the number of members."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.greetings.commands import plan_greetings, prepare_greeting, send_birthdays
from storage.db.database import InlineStatements, ThreadedStatements
from tests.conftest import ON_POSTGRES, ChatDriver, RecordingPusher, local, settle, storage_for

GIFT = 50


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(local(2027, 9, 10, 9, 0))  # five days before Mid-Autumn 2027


def gift_settings(path: Path) -> Settings:
    return Settings(locale="en", storage=storage_for(path), greetings={"gift_points": {"mid_autumn": GIFT}})


@asynccontextmanager
async def opened(path: Path, clock: FakeClock) -> AsyncIterator[Runtime]:
    runtime = await Runtime.open(gift_settings(path), clock)
    try:
        yield runtime
    finally:
        await runtime.close()


@contextmanager
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """Count every statement the repositories run (on the writer and on the reader), by kind of call."""
    calls: Counter[str] = Counter()
    classes: list[type] = [InlineStatements, ThreadedStatements]
    if ON_POSTGRES:
        from storage.db.postgres import PgStatements

        classes.append(PgStatements)
    with monkeypatch.context() as patch:
        for cls in classes:
            for name in ("execute", "execute_fetchall"):
                original: Callable[..., Any] = getattr(cls, name)
                patch.setattr(cls, name, _counted(original, name, calls))
        yield calls


def _counted(original: Callable[..., Any], name: str, calls: Counter[str]) -> Callable[..., Any]:
    async def counted(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return await original(self, sql, *args, **kwargs)

    return counted


async def add_members(runtime: Runtime, count: int, *, start: int = 0, private: bool = True) -> list[int]:
    """`count` members with a test identity each (who may be messaged privately when `private`)."""
    ids = []
    async with runtime.deps.db.transaction() as repos:
        for n in range(start, start + count):
            member_id, _ = await repos.members.register("test", f"u{n}", f"U{n}", None, 0, private_chat=private)
            ids.append(member_id)
    return ids


async def book_mid_autumn_gift(runtime: Runtime) -> None:
    """Prepare the planned Mid-Autumn greeting as the scheduler does when it is due: this books the gifts."""
    deps = runtime.deps
    async with deps.db.transaction() as repos:
        (ann, *_) = [a for a in await repos.announcements.pending(kind="greeting") if "Mid-Autumn" in a.text]
        await prepare_greeting(repos, deps, ann)


async def balances(runtime: Runtime, ids: list[int]) -> dict[int, int]:
    found = {}
    async with runtime.deps.db.read() as repos:
        for member_id in ids:
            member = await repos.members.get(member_id)
            assert member is not None
            found[member_id] = member.balance
    return found


async def gift_statements(tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, members: int) -> int:
    async with opened(tmp_path / f"gift{members}.db", clock) as runtime:
        ids = await add_members(runtime, members)
        await plan_greetings(runtime.deps)
        with counting(monkeypatch) as calls:
            await book_mid_autumn_gift(runtime)
        assert set((await balances(runtime, ids)).values()) == {GIFT}
        return sum(calls.values())


# --- holiday gifts ----------------------------------------------------------------------------------------------
async def test_holiday_gift_is_a_bounded_number_of_statements(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    few = await gift_statements(tmp_path, clock, monkeypatch, 10)
    many = await gift_statements(tmp_path, clock, monkeypatch, 200)
    assert few == many  # one statement books the gifts of every member, however many there are
    assert 0 < many < 10


async def test_holiday_gift_once_per_member_with_balances_equal_to_ledger_sums(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with opened(tmp_path / "vip.db", clock) as runtime:
        ids = await add_members(runtime, 30)
        async with runtime.deps.db.transaction() as repos:
            for n, member_id in enumerate(ids[:10]):  # some already hold points
                await repos.ledger.append(member_id, n + 1, "award", f"before:{member_id}", 0)
            row = await repos.conn.execute_fetchall(
                "INSERT INTO members(display_name, joined_at, last_seen_at) VALUES ('merged', 0, 0) RETURNING id"
            )
            merged = int(row[0][0])  # a member merged into another: no identity left, no gift
        before = await balances(runtime, [*ids, merged])
        await plan_greetings(runtime.deps)
        await book_mid_autumn_gift(runtime)
        await book_mid_autumn_gift(runtime)  # a second run (a retry, a restart on the day) books nothing more
        after = await balances(runtime, [*ids, merged])
        assert after == {**{m: before[m] + GIFT for m in ids}, merged: 0}
        async with runtime.deps.db.read() as repos:
            assert await repos.ledger.mismatched_balances() == []
            for member_id in ids:
                assert await repos.ledger.sum_for(member_id) == after[member_id]
            gifts = await repos.conn.execute_fetchall(
                "SELECT member_id, COUNT(*), MIN(idem_key) FROM ledger WHERE reason = 'greeting' GROUP BY member_id"
            )
        assert {(r[0], r[1], r[2]) for r in gifts} == {(m, 1, f"greeting:mid_autumn:2027:{m}") for m in ids}


async def test_gift_to_all_refuses_a_deduction(tmp_path: Path, clock: FakeClock) -> None:
    async with opened(tmp_path / "vip.db", clock) as runtime:
        await add_members(runtime, 2)
        with pytest.raises(ValueError):
            async with runtime.deps.db.transaction() as repos:
                await repos.ledger.gift_to_all(-5, "greeting", "minus:", 0)


# --- segment announcements ----------------------------------------------------------------------------------------
async def segment_statements(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, members: int
) -> tuple[int, str, int]:
    """Statements of one `/announce --segment never` to `members` members (every third has notices off);
    returns (statements, the reply, deliveries queued)."""
    async with opened(tmp_path / f"seg{members}.db", clock) as runtime:
        runtime.outbox.register(RecordingPusher())  # the test channel can push (the outbox is not started)
        chat = ChatDriver(runtime)
        await chat.say("boss", "hi")
        ids = await add_members(runtime, members)
        async with runtime.deps.db.transaction() as repos:
            for member_id in ids[::3]:
                await repos.members.set_notify(member_id, False)
        with counting(monkeypatch) as calls:
            reply = await chat.say("boss", "/announce --segment never Hello")
        async with runtime.deps.db.read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM deliveries WHERE target_kind = 'user'")
        return sum(calls.values()), reply, int(rows[0][0])


async def test_segment_announcement_recipients_are_a_bounded_number_of_statements(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    few, few_reply, few_queued = await segment_statements(tmp_path, clock, monkeypatch, 10)
    many, many_reply, many_queued = await segment_statements(tmp_path, clock, monkeypatch, 200)
    assert 0 < few == many
    # boss (group only) and the members: notices off for every third, so 6 of 10 and 133 of 200 are queued
    assert (few_queued, many_queued) == (6, 133)
    assert "6 messages (members in the segment: 11;" in few_reply
    assert "133 messages (members in the segment: 201;" in many_reply


async def test_segment_announcement_reaches_members_in_id_order(
    chat: ChatDriver, pusher: RecordingPusher, clock: FakeClock
) -> None:
    await chat.say("boss", "hi")
    ids = await add_members(chat.runtime, 5)
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.members.set_notify(ids[1], False)
    await chat.say("boss", "/announce --segment never Hello there")
    await settle(chat.runtime)
    assert [t for _, t, text in pusher.pushes if text == "Hello there"] == ["u0", "u2", "u3", "u4"]


# --- birthdays ------------------------------------------------------------------------------------------------
BIRTHDAY_GIFT = 88


async def birthday_statements(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, members: int
) -> tuple[int, list[tuple[int, str, int, int, str, int]]]:
    """Statements of one `send_birthdays` on a day when `members` members have their birthday (half of them can
    be messaged privately, the others only in the group); returns (statements, per member greeted: (member id,
    how, gift, announcements, their audiences, deliveries)). A second run greets nobody."""
    settings = Settings(
        locale="en", storage=storage_for(tmp_path / f"bd{members}.db"), birthdays={"gift_points": BIRTHDAY_GIFT}
    )
    runtime = await Runtime.open(settings, clock)
    try:
        runtime.outbox.register(RecordingPusher())  # the test channel can push (the outbox is not started)
        await ChatDriver(runtime).say("boss", "hi")  # the VIP group; boss has no birthday today
        ids = await add_members(runtime, members // 2)
        ids += await add_members(runtime, members - members // 2, start=members, private=False)
        async with runtime.deps.db.transaction() as repos:
            for member_id in ids:
                await repos.members.set_birthday(member_id, "09-10", 0)  # set long ago: a gift is due
        with counting(monkeypatch) as calls:
            assert await send_birthdays(runtime.deps) == members
        assert await send_birthdays(runtime.deps) == 0  # once per member and day, however often it runs
        assert set((await balances(runtime, ids)).values()) == {BIRTHDAY_GIFT}
        async with runtime.deps.db.read() as repos:
            rows = await repos.conn.execute_fetchall(
                "SELECT g.member_id, g.via, g.gift, COUNT(DISTINCT a.id), MIN(a.audience),"
                " COUNT(d.id) FROM birthday_greetings g"
                " LEFT JOIN announcements a ON a.kind = 'birthday' AND a.subject_kind = 'member'"
                "  AND a.subject_id = g.member_id"
                " LEFT JOIN deliveries d ON d.announcement_id = a.id"
                " GROUP BY g.member_id, g.via, g.gift ORDER BY g.member_id"
            )
            assert await repos.ledger.mismatched_balances() == []
        return sum(calls.values()), [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]
    finally:
        await runtime.close()


async def test_birthdays_are_a_bounded_number_of_statements_with_one_wish_and_gift_each(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    few, few_greeted = await birthday_statements(tmp_path, clock, monkeypatch, 10)
    many, many_greeted = await birthday_statements(tmp_path, clock, monkeypatch, 200)
    assert few == many  # claims, gifts and wishes of every birthday member in the same statements
    assert 0 < many < 20
    for greeted, members in ((few_greeted, 10), (many_greeted, 200)):
        assert len(greeted) == members
        private = [g for g in greeted if g[1] == "private"]
        assert len(private) == members // 2
        # one wish each: a private copy for those who can be messaged, a group post naming each of the others
        assert {g[2:] for g in private} == {(BIRTHDAY_GIFT, 1, "personal", 1)}
        assert {g[1:] for g in greeted if g not in private} == {("group", BIRTHDAY_GIFT, 1, "groups", 1)}
