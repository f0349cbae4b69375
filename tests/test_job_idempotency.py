"""Every scheduled job that sends, run twice for the same period (a restart at the scheduled minute, or two bot
processes for a moment), sends each recipient its message once.

The weekly report claims its week (`job_runs`, migration 0022) in the transaction that queues it; the other jobs
key each message already (birthdays per member and day, expiry reminders per member and date, tier reviews per
member and year, the survey per day, a scheduled announcement by its state) and win-back marks each segment entry
with a conditional update before its message is queued. Time moves by the injectable clock; counts are literal.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.greetings.commands import send_birthdays
from handlers.loyalty.expiry import run_expiry
from handlers.loyalty.review import run_review
from handlers.polls.commands import start_survey
from handlers.segments.commands import winback
from handlers.shared.due import run_due
from handlers.stats.commands import weekly_report
from tests.conftest import ChatDriver, RecordingPusher, local, settle, storage_for
from tests.test_segments import buy, member


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        locale="en",
        storage=storage_for(tmp_path / "vip.db", loop_statement_ms=200),
        segments={"winback": True},
        birthdays={"gift_points": 88},
        points={"expiry": {"enabled": True}},
        tier_review={"enabled": True, "month": 1, "day": 1},
    )


def staff_pushes(pusher: RecordingPusher) -> list[str]:
    return [text for kind, _, text in pusher.pushes if kind == "staff"]


async def twice(job: object, *args: object) -> list[object]:
    """Run the job twice one after the other, then twice at the same time (as two leaders would)."""
    assert callable(job)
    results = [await job(*args), await job(*args)]
    results += await asyncio.gather(job(*args), job(*args))
    return results


# --- the weekly report -----------------------------------------------------------------------------------
async def test_the_weekly_report_goes_out_once_a_week_however_often_it_runs(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "签到")
    clock.set(local(2026, 3, 11, 9, 0))  # the week 03-04 .. 03-10
    assert await twice(weekly_report, chat.runtime.deps) == [True, False, False, False]
    clock.set(local(2026, 3, 11, 9, 40))  # a restart within the hour fires it again: still the same week
    assert await weekly_report(chat.runtime.deps) is False
    await settle(chat.runtime)
    assert len(staff_pushes(pusher)) == 1
    assert staff_pushes(pusher)[0].startswith("📈 Weekly report 2026-03-04 to 2026-03-10")
    assert len(pusher.images) == 1

    clock.set(local(2026, 3, 18, 9, 0))  # the next week: its own report, once
    assert await twice(weekly_report, chat.runtime.deps) == [True, False, False, False]
    await settle(chat.runtime)
    reports = staff_pushes(pusher)
    assert len(reports) == 2 and reports[1].startswith("📈 Weekly report 2026-03-11 to 2026-03-17")


@pytest.fixture
async def second(settings: Settings, clock: FakeClock) -> AsyncIterator[tuple[Runtime, RecordingPusher]]:
    """Another bot process's runtime on the same database file (what the instance lock prevents, and what two
    leaders for a moment amount to), with its own staff chat pusher and outbox."""
    runtime = await Runtime.open(settings, clock)
    recorder = RecordingPusher()
    runtime.outbox.register(recorder)
    await runtime.outbox.start()
    yield runtime, recorder
    await runtime.close()


async def test_two_processes_on_one_database_send_one_weekly_report(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher, second: tuple[Runtime, RecordingPusher]
) -> None:
    other, other_pusher = second
    clock.set(local(2026, 3, 11, 9, 0))
    sent = await asyncio.gather(weekly_report(chat.runtime.deps), weekly_report(other.deps))
    assert sorted(sent) == [False, True]
    await settle(chat.runtime)
    await settle(other)
    assert len(staff_pushes(pusher)) + len(staff_pushes(other_pusher)) == 1
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM announcements WHERE kind = 'staff'")
    assert rows[0][0] == 1


# --- the jobs that message members -----------------------------------------------------------------------
async def test_winback_twice_the_same_day_sends_one_care_message(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    alice = await member(chat, "alice", private=True)
    bob = await member(chat, "bob", private=True)
    await buy(chat.runtime, alice, local(2026, 3, 10, 9, 0))
    await buy(chat.runtime, bob, local(2026, 3, 10, 9, 0))
    clock.set(local(2026, 6, 8, 10, 30))  # 90 days on: both entered dormant_high
    assert await twice(winback, chat.runtime.deps) == [2, 0, 0, 0]
    await settle(chat.runtime)
    assert len(pusher.to("alice")) == 1 and len(pusher.to("bob")) == 1


async def test_birthdays_twice_the_same_day_greet_once(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(local(2026, 1, 5, 12, 0))
    for who in ("alice", "bob"):
        await chat.say(who, "/birthday 03-10", group=False)
    clock.set(local(2026, 3, 10, 9, 1))
    assert await twice(send_birthdays, chat.runtime.deps) == [2, 0, 0, 0]
    await settle(chat.runtime)
    for who in ("alice", "bob"):
        wishes = [t for t in pusher.to(who) if t.startswith("🎂 Happy birthday")]
        assert len(wishes) == 1, wishes


async def test_expiry_reminders_twice_the_same_day_remind_once(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(local(2025, 3, 10, 9, 0))
    for who in ("alice", "bob"):
        await chat.say(who, "/points", group=False)
        await chat.say("boss", f"/award @{who} 100")
    clock.set(local(2026, 12, 2, 0, 7))  # 30 days before the 2025 points expire
    runs = await twice(run_expiry, chat.runtime.deps)
    assert [run.reminded for run in runs] == [2, 0, 0, 0]  # type: ignore[attr-defined]
    await settle(chat.runtime)
    for who in ("alice", "bob"):
        assert len([t for t in pusher.to(who) if t.startswith("A friendly reminder")]) == 1


async def test_the_tier_review_twice_tells_each_member_once(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(local(2025, 3, 1, 9, 0))
    for who in ("alice", "bob"):
        await chat.say(who, "/points", group=False)
        await chat.say("boss", f"/award @{who} 2000")
    clock.set(local(2026, 1, 1, 1, 3))
    assert await twice(run_review, chat.runtime.deps) == [2, 0, 0, 0]
    await settle(chat.runtime)
    for who in ("alice", "bob"):
        assert len([t for t in pusher.to(who) if "so you stay Black card" in t]) == 1


async def test_the_survey_twice_the_same_day_is_posted_once(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("ann", "hi")  # the VIP group the survey is posted in
    results = await twice(start_survey, chat.runtime.deps)
    assert results[0] is not None and results[1:] == [None, None, None]
    await settle(chat.runtime)
    posts = Counter(target for _, target, text in pusher.pushes if "How satisfied are you" in text)
    assert posts == Counter({"group": 1})


async def test_a_due_announcement_run_twice_reaches_each_chat_once(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("ann", "hi")
    await chat.say("ann", "hi", chat="group-2")
    deps = chat.runtime.deps
    async with deps.db.transaction() as repos:
        await repos.announcements.create("scheduled", "groups", "Doors open at ten", deps.now_ts() + 60, deps.now_ts())
    clock.set(local(2026, 3, 10, 9, 1))
    results = await twice(run_due, deps)
    assert [len(r) for r in results] == [1, 0, 0, 0]  # type: ignore[arg-type]
    await settle(chat.runtime)
    assert Counter(target for _, target, text in pusher.pushes if text == "Doors open at ten") == Counter(
        {"group": 1, "group-2": 1}
    )
