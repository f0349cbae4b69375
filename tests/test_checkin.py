"""Daily check-in: once per business day in Asia/Shanghai, streaks, rollover hour, concurrency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, local


async def balance(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
    assert member is not None
    return member.balance


async def test_first_checkin_awards_base_points(chat: ChatDriver) -> None:
    text = await chat.say("alice", "/checkin")
    assert "+10 points (1-day streak)" in text
    assert await balance(chat, "alice") == 10


async def test_keyword_and_bot_suffix_work(chat: ChatDriver) -> None:
    assert "+10 points" in await chat.say("alice", "签到")
    assert "+10 points" in await chat.say("bob", "/checkin@VIPBot")
    assert await chat.say("carol", "/checkin@other_bot") == ""


async def test_second_checkin_same_day_awards_nothing(chat: ChatDriver, clock: FakeClock) -> None:
    await chat.say("alice", "/checkin")
    clock.advance(timedelta(hours=5))  # 14:00 local
    text = await chat.say("alice", "签到")
    assert "already checked in today (1-day streak)" in text
    assert "2026-03-11 00:00" in text and "(in 10 hours)" in text
    assert await balance(chat, "alice") == 10


async def test_streak_across_midnight_in_shanghai(chat: ChatDriver, clock: FakeClock) -> None:
    clock.set(local(2026, 3, 10, 23, 59))  # 15:59 UTC
    assert "1-day streak" in await chat.say("alice", "/checkin")
    clock.set(local(2026, 3, 11, 0, 1))  # 16:01 UTC, the same UTC day, the next Shanghai day
    assert "+12 points (2-day streak)" in await chat.say("alice", "/checkin")
    assert await balance(chat, "alice") == 22


async def test_streak_breaks_after_a_missed_day(chat: ChatDriver, clock: FakeClock) -> None:
    await chat.say("alice", "/checkin")
    clock.advance(timedelta(days=1))
    await chat.say("alice", "/checkin")
    clock.advance(timedelta(days=2))
    assert "+10 points (1-day streak)" in await chat.say("alice", "/checkin")


async def test_streak_bonus_is_capped(chat: ChatDriver, clock: FakeClock) -> None:
    gained = []
    for _ in range(15):
        before = await balance(chat, "alice") if gained else 0
        await chat.say("alice", "/checkin")
        gained.append(await balance(chat, "alice") - before)
        clock.advance(timedelta(days=1))
    # 10, 12, ..., 30 then stays at 10 + 20.
    assert gained[:3] == [10, 12, 14]
    assert gained[10:] == [30] * 5


async def test_rollover_hour_moves_the_business_day(settings: Settings, clock: FakeClock) -> None:
    settings.checkin.rollover_hour = 4
    runtime = await Runtime.open(settings, clock)
    try:
        chat = ChatDriver(runtime)
        clock.set(local(2026, 3, 10, 23, 0))
        assert "+10" in await chat.say("alice", "/checkin")
        clock.set(local(2026, 3, 11, 3, 30))  # still business day 03-10
        assert "already" in await chat.say("alice", "/checkin")
        clock.set(local(2026, 3, 11, 4, 0))
        assert "+12 points (2-day streak)" in await chat.say("alice", "/checkin")
    finally:
        await runtime.close()


async def test_concurrent_checkins_award_once(chat: ChatDriver) -> None:
    texts = await asyncio.gather(*(chat.say("alice", "/checkin") for _ in range(50)))
    assert sum("+10 points" in t for t in texts) == 1
    assert sum("already" in t for t in texts) == 49
    assert await balance(chat, "alice") == 10


async def test_checkin_in_private_chat(chat: ChatDriver) -> None:
    assert "+10" in await chat.say("alice", "/checkin", group=False)
    assert "already" in await chat.say("alice", "签到", group=True)
