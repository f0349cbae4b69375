"""Points expiry (off by default): points earned in a year expire when the year after it ends, oldest first
(spending uses up the oldest points), as 'expire' ledger entries that lower the balance but never the lifetime
points or the tier; a re-run books nothing twice; one reminder 30 days before each expiry date."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.loyalty.expiry import ExpiryRun, run_expiry
from tests.conftest import ChatDriver, RecordingPusher, local, settle, storage_for


def _settings(tmp_path: Path, **expiry: Any) -> Settings:
    return Settings(
        locale="en",
        storage=storage_for(tmp_path / "vip.db", loop_statement_ms=200),
        points={"expiry": {"enabled": True, **expiry}},
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(local(2025, 3, 10, 9, 0))


async def totals(runtime: Runtime, who: str) -> tuple[int, int]:
    """(balance, lifetime points), checking that the balance equals the ledger."""
    async with runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
        assert member is not None
        assert await repos.ledger.sum_for(member.id) == member.balance
        assert await repos.ledger.mismatched_balances() == []
        return member.balance, member.earned


async def test_points_expire_at_the_end_of_the_following_year_oldest_first(
    chat: ChatDriver, clock: FakeClock
) -> None:
    await chat.say("alice", "/points", group=False)
    await chat.say("boss", "/award @alice 100 spring")  # earned in 2025
    clock.set(local(2026, 5, 1, 12, 0))
    await chat.say("boss", "/award @alice 30 summer")  # earned in 2026
    await chat.say("boss", "/reward add Teapot | cost=60")
    assert "Teapot" in await chat.say("alice", "/redeem 1")  # spends 60 of the 2025 points first
    assert await totals(chat.runtime, "alice") == (70, 130)

    clock.set(local(2026, 12, 31, 23, 59))
    assert (await run_expiry(chat.runtime.deps)).expired == 0  # not before the year is over
    assert await totals(chat.runtime, "alice") == (70, 130)

    clock.set(local(2027, 1, 1, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).expired == 1
    assert await totals(chat.runtime, "alice") == (30, 130)  # 40 expired; lifetime points (and tier) unchanged
    assert (await run_expiry(chat.runtime.deps)).expired == 0  # a re-run books nothing twice
    clock.set(local(2027, 1, 2, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).expired == 0
    assert await totals(chat.runtime, "alice") == (30, 130)

    text = await chat.say("alice", "/points", group=False)
    assert "-40 expired · earned before 2026-01-01" in text
    assert "Tier: Gold" in text and "470 more points to Diamond" in text  # 600 - 130: lifetime points decide

    clock.set(local(2028, 1, 1, 0, 7))  # the 30 points of 2026 go when 2027 is over
    assert (await run_expiry(chat.runtime.deps)).expired == 1
    assert await totals(chat.runtime, "alice") == (0, 130)


async def test_spending_everything_leaves_nothing_to_expire(chat: ChatDriver, clock: FakeClock) -> None:
    await chat.say("bob", "hi")
    await chat.say("boss", "/award @bob 100")
    clock.set(local(2026, 2, 1, 9, 0))
    await chat.say("boss", "/award @bob 50")
    await chat.say("boss", "/deduct @bob 120")  # a correction: all of 2025 and 20 of 2026 (and lifetime points)
    clock.set(local(2027, 1, 1, 3, 0))
    assert await run_expiry(chat.runtime.deps) == ExpiryRun(expired=0, reminded=0)
    assert await totals(chat.runtime, "bob") == (30, 30)


async def test_one_reminder_30_days_before(chat: ChatDriver, pusher: RecordingPusher, clock: FakeClock) -> None:
    await chat.say("alice", "/points", group=False)  # alice can be messaged privately
    await chat.say("boss", "/award @alice 100")
    clock.set(local(2026, 6, 1, 9, 0))
    await chat.say("boss", "/deduct @alice 60")
    clock.set(local(2026, 12, 1, 0, 7))  # 31 days before the points expire
    assert (await run_expiry(chat.runtime.deps)).reminded == 0
    clock.set(local(2026, 12, 2, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).reminded == 1
    await settle(chat.runtime)
    reminders = [text for text in pusher.to("alice") if "reminder" in text]
    assert reminders == [
        "A friendly reminder: 40 of your points expire after 2026-12-31."
        " Use them before then: /rewards shows what you can redeem."
    ]
    assert "40 points expire after 2026-12-31." in await chat.say("alice", "/points", group=False)
    for day in (3, 20, 31):
        clock.set(local(2026, 12, day, 0, 7))
        assert (await run_expiry(chat.runtime.deps)).reminded == 0  # once per member and expiry date
    clock.set(local(2027, 1, 1, 0, 7))
    assert await run_expiry(chat.runtime.deps) == ExpiryRun(expired=1, reminded=0)
    await settle(chat.runtime)
    assert "40 of your points (earned before 2026-01-01) have expired" in pusher.to("alice")[-1]
    assert await totals(chat.runtime, "alice") == (0, 40)  # the deduction was a correction; expiry is not


async def test_turned_on_mid_year_nothing_expires_before_the_next_year_end(
    chat: ChatDriver, clock: FakeClock
) -> None:
    clock.set(local(2023, 5, 1, 9, 0))
    await chat.say("carol", "hi")
    await chat.say("boss", "/award @carol 80")  # should have expired at the end of 2024 already
    clock.set(local(2026, 6, 10, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).expired == 0  # no surprise: members are reminded first
    clock.set(local(2027, 1, 1, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).expired == 1
    assert await totals(chat.runtime, "carol") == (0, 80)


async def test_months_rule(tmp_path: Path, clock: FakeClock) -> None:
    runtime = await Runtime.open(_settings(tmp_path, rule="months", months=12), clock)
    try:
        chat = ChatDriver(runtime)
        clock.set(local(2025, 3, 15, 9, 0))
        await chat.say("dave", "hi")
        await chat.say("boss", "/award @dave 25")
        clock.set(local(2025, 4, 2, 9, 0))
        await chat.say("boss", "/award @dave 5")  # April's points expire a month later
        clock.set(local(2026, 3, 31, 23, 0))
        assert (await run_expiry(runtime.deps)).expired == 0
        clock.set(local(2026, 4, 1, 0, 7))
        assert (await run_expiry(runtime.deps)).expired == 1
        assert await totals(runtime, "dave") == (5, 30)
        clock.set(local(2026, 5, 1, 0, 7))
        assert (await run_expiry(runtime.deps)).expired == 1
        assert await totals(runtime, "dave") == (0, 30)
    finally:
        await runtime.close()


async def test_off_by_default(tmp_path: Path, clock: FakeClock) -> None:
    runtime = await Runtime.open(Settings(locale="en", storage=storage_for(tmp_path / "vip.db")), clock)
    try:
        assert runtime.scheduler.get_job("expire_points") is None
        chat = ChatDriver(runtime)
        await chat.say("erin", "hi")
        await chat.say("boss", "/award @erin 10")
        clock.set(local(2030, 1, 1, 0, 7))
        assert await run_expiry(runtime.deps) == ExpiryRun(0, 0)
        assert await totals(runtime, "erin") == (10, 10)
    finally:
        await runtime.close()


async def test_the_daily_job_is_scheduled_when_on(runtime: Runtime) -> None:
    job = runtime.scheduler.get_job("expire_points")
    assert job is not None and "hour='0'" in str(job.trigger) and "minute='7'" in str(job.trigger)


async def test_a_whole_shop_expires_in_a_few_bulk_statements(
    chat: ChatDriver, pusher: RecordingPusher, clock: FakeClock
) -> None:
    """1,000 members with points of 2025: one run books and tells them all (the statements guard of the test
    settings fails any statement that runs long on the event loop without being marked bulk)."""
    now = chat.runtime.deps.now_ts()
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)"
            " INSERT INTO members(id, display_name, joined_at, last_seen_at) SELECT 1000 + i, 'm' || i, ?, ? FROM n",
            (now, now),
            bulk=True,
        )
        await repos.conn.execute(
            "INSERT INTO identities(channel, external_id, member_id, can_message, created_at)"
            " SELECT 'test', 'u' || id, id, 1, ? FROM members WHERE id > 1000",
            (now,),
            bulk=True,
        )
        await repos.ledger.gift_to_all(25, "greeting", "gift:", now)
    clock.set(local(2026, 12, 2, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).reminded == 1000
    clock.set(local(2027, 1, 1, 0, 7))
    assert (await run_expiry(chat.runtime.deps)).expired == 1000
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.ledger.mismatched_balances() == []
        row = await repos.conn.execute_fetchall("SELECT SUM(balance), SUM(earned) FROM members WHERE id > 1000")
        assert tuple(row[0]) == (0, 25_000)
    await settle(chat.runtime)
    assert "25 of your points (earned before 2026-01-01) have expired" in pusher.to("u2000")[-1]
