"""Polls under bad input and odd timing: votes take whole decimal numbers only, forged native answers change
nothing, a tier-only poll reaches only its tiers, a finished ranking survives stray taps, and answers are
echoed the way they were given (choices as a list, counts with plural forms, Chinese without spaces)."""

from __future__ import annotations

import asyncio
import csv
import io
import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app.config import Settings
from handlers.core.clock import FakeClock
from storage.db.sql import fetch_one
from tests.conftest import ChatDriver, RecordingPusher, local, settle, storage_for
from tests.fakes.bot_api import FakeBotApi
from tests.tg_harness import ALICE, GROUP, STAFF, STAFF_ID, fake_api, harness_settings, running_bot


async def _members(chat: ChatDriver) -> None:
    for name in ("ann", "ben"):
        await chat.say(name, "/start", group=False)
    await chat.say("boss", "/award @ben 600")  # ben: diamond (from 600 points), ann: gold


async def _answer(chat: ChatDriver, poll_id: int, who: str) -> Any:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity(chat.channel, who)
        assert member is not None
        found = await repos.polls.answer_of(poll_id, member.id)
    return None if found is None else (found.value, found.complete)


async def _tap(chat: ChatDriver, who: str, data: str) -> str:
    msg = replace(chat.inbound(who, ""), button=data)
    return "\n".join(r.text for r in await chat.runtime.dispatcher.handle(msg, chat.port))


async def test_a_vote_is_a_whole_decimal_number_or_refused(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await _members(chat)
    await chat.say("boss", "/poll rating Service? --hours 5")
    await chat.say("boss", "/poll choice Colour? | Red | Green | Blue")
    await chat.say("boss", "/poll rank Order? | A | B | C")
    for bad in ("-1", "abc5", "5abc", "①", "²", "1.5", "+3", "4 5", "0", "6"):
        assert "That answer does not fit" in await chat.say("ann", f"/vote 1 {bad}"), bad
        assert await _answer(chat, 1, "ann") is None, bad
    assert "Your answer: 5" in await chat.say("ann", "/vote 1 ５")  # full-width digits are digits
    assert await _answer(chat, 1, "ann") == (5, True)
    assert "Your answer: 4" in await chat.say("ann", "/vote 1 4分")  # a score with its unit
    for bad in ("-1", "0", "4", "1-2", "x2"):
        assert "That answer does not fit" in await chat.say("ann", f"/vote 2 {bad}"), bad
    assert await _answer(chat, 2, "ann") is None
    assert "Your answer: Green" in await chat.say("ann", "/vote 2 ２")
    assert "That answer does not fit" in await chat.say("ann", "/vote 3 -3 1 2")
    assert await _answer(chat, 3, "ann") is None
    # a forged ranking tap is refused with the usage line, never a crash
    for bad in ("²", "-1", "9", "１x"):
        assert "Usage: /vote" in await _tap(chat, "ann", f"v1:rank:3 {bad}"), bad
    assert await _answer(chat, 3, "ann") is None
    # the same for the staff's numbers when creating a poll
    for bad in ("--hours ²", "--hours ①", "--points ³", "--points -5"):
        assert "Usage: /poll" in await chat.say("boss", f"/poll rating Q {bad}"), bad


async def test_a_forged_native_answer_changes_nothing(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await _members(chat)
    await chat.say("boss", "/poll choice Which tea? | Oolong | Pu'er | Jasmine")
    await settle(chat.runtime)

    async def native(options: str) -> None:
        msg = replace(chat.inbound("ann", "", group=False), button=f"v1:native_vote:native-1 {options}")
        assert await chat.runtime.dispatcher.handle(msg, chat.port) == []

    await native("1")
    assert await _answer(chat, 1, "ann") == ([1], True)
    for forged in ("0,1,2", "0,2", "-1", "3", "7", "1,x", "²"):
        await native(forged)
        assert await _answer(chat, 1, "ann") == ([1], True), forged
    assert "2. Pu'er: 1 vote\n" in await chat.say("boss", "/poll results 1")
    # the database refuses what does not fit the poll, whoever writes it
    async with chat.runtime.deps.db.read() as repos:
        ann = await repos.members.by_identity("test", "ann")
    assert ann is not None
    for value in ([0, 1], [3], [-1], [], 2, [0, 0]):
        with pytest.raises(sqlite3.IntegrityError):
            async with chat.runtime.deps.db.transaction() as repos:
                await repos.polls.answer(1, ann.id, value, True, chat.runtime.deps.now_ts())
    assert await _answer(chat, 1, "ann") == ([1], True)


async def test_a_forged_telegram_poll_answer_on_a_single_choice_poll_stores_nothing(tmp_path: Path) -> None:
    clock = FakeClock(local(2026, 3, 10, 9, 0))
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "vip.db"), clock) as bot:
        await bot.send(GROUP, ALICE, "/start")

        async def in_the_group(msg: Any) -> bool:  # the fake Bot API has no getChatMember: Alice is in the group
            return msg.sender.external_id == str(ALICE["id"])

        bot.channel.is_group_member = in_the_group  # type: ignore[method-assign]
        await bot.send(STAFF_ID, STAFF, "/poll choice Which tea? | Oolong | Pu'er | Jasmine")
        await api.wait_for(1, "sendPoll")
        native_id = await _native_id(api, bot.runtime.deps, 1)

        async def answer(option_ids: list[int]) -> None:
            persistent = [f"{native_id}-{n}" for n in option_ids]
            api.push_update({"update_id": api.next_update_id(), "poll_answer": {
                "poll_id": native_id, "user": ALICE, "option_ids": option_ids, "option_persistent_ids": persistent,
            }})  # fmt: skip
            await bot.send(ALICE["id"], ALICE, "/polls")  # Alice's updates are handled in order

        await answer([2])
        await answer([0, 1, 2])
        await answer([-1])
        await answer([5])
        async with bot.runtime.deps.db.read() as repos:
            answers = await repos.polls.answers(1)
        assert [(a.value, a.complete) for a in answers] == [([2], True)]


async def _native_id(api: FakeBotApi, deps: Any, poll_id: int) -> str:
    for _ in range(200):
        async with deps.db.read() as repos:
            row = await fetch_one(repos.conn, "SELECT native_id FROM poll_native WHERE poll_id = ?", (poll_id,))
        if row:
            return str(row[0])
        await asyncio.sleep(0.02)
    raise AssertionError("the native poll was never mapped")


async def test_a_tier_only_poll_reaches_only_those_tiers(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await _members(chat)
    created = await chat.say("boss", "/poll rating Diamond service? --tier diamond --hours 5")
    assert "Poll #1 posted to 1 recipient;" in created
    await settle(chat.runtime)
    assert [t for t in pusher.to("group") if "Poll #1" in t] == []
    assert [t for t in pusher.to("ann") if "Poll #1" in t] == []
    assert len([t for t in pusher.to("ben") if "Poll #1" in t]) == 1
    assert "Diamond service?" not in await chat.say("ann", "/polls", group=False)
    assert "Diamond service?" in await chat.say("ben", "/polls", group=False)
    assert "Your answer: 5" in await chat.say("ben", "/vote 1 5", group=False)
    # a group post would reach everyone: refused for a tier-only poll
    for audience in ("groups", "all"):
        assert "Usage: /poll" in await chat.say("boss", f"/poll rating Q --tier diamond --to {audience}")
    await chat.say("boss", "/poll close 1")
    await settle(chat.runtime)
    assert [t for t in pusher.to("group") if t.startswith("📊")] == []  # the results go where the poll went
    assert len([t for t in pusher.to("ben") if t.startswith("📊")]) == 1
    # closing on time: the same audience
    await chat.say("boss", "/poll nps Again? --tier diamond --hours 1")
    clock.advance(timedelta(hours=1))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert [t for t in pusher.to("group") if t.startswith("📊")] == []
    assert [t for t in pusher.to("ben") if t.startswith("📊 Results of poll #2")] != []


async def test_a_finished_ranking_stays_until_the_member_starts_over(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await _members(chat)
    await chat.say("boss", "/poll rank What matters most? | Price | Quality | Service --points 3")
    await settle(chat.runtime)
    assert pusher.buttons[0][-2:] == ("v1:rank:1 undo", "v1:rank:1 restart")
    for item in ("1", "0", "2"):
        await _tap(chat, "ann", f"v1:rank:1 {item}")
    assert await _answer(chat, 1, "ann") == ([1, 0, 2], True)
    for stray in ("0", "undo", "2"):
        reply = await _tap(chat, "ann", f"v1:rank:1 {stray}")
        assert "Your ranking is done: 1.Quality 2.Price 3.Service" in reply, stray
        assert await _answer(chat, 1, "ann") == ([1, 0, 2], True), stray
    assert "1 answered" in await chat.say("boss", "/poll results 1")
    reply = await _tap(chat, "ann", "v1:rank:1 restart")
    assert "your earlier one still counts: 1.Quality 2.Price 3.Service" in reply
    assert "1.Service (2 left)" in await _tap(chat, "ann", "v1:rank:1 2")
    assert await _answer(chat, 1, "ann") == ([1, 0, 2], True)  # the finished ranking still counts meanwhile
    assert "1 answered" in await chat.say("boss", "/poll results 1")
    await _tap(chat, "ann", "v1:rank:1 undo")
    await _tap(chat, "ann", "v1:rank:1 0")
    await _tap(chat, "ann", "v1:rank:1 2")
    done = await _tap(chat, "ann", "v1:rank:1 1")
    assert "Done, thank you! Your ranking: 1.Price 2.Service 3.Quality" in done
    assert await _answer(chat, 1, "ann") == ([0, 2, 1], True)
    (closed,) = await chat.replies("boss", "/poll close 1")
    assert "1 answered" in closed.text and "#1: Price (Borda 2" in closed.text
    async with chat.runtime.deps.db.read() as repos:
        ann = await repos.members.by_identity("test", "ann")
    assert ann is not None and ann.balance == 3  # participation points once


async def test_counts_in_english_have_plural_forms(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("ann", "/start", group=False)
    created = await chat.say("boss", "/poll choice Colour? | Red | Green --points 1 --to members")
    assert "Poll #1 posted to 1 recipient;" in created
    await settle(chat.runtime)
    (post,) = pusher.to("ann")
    assert "Answering earns 1 point\n" in post
    await chat.say("ann", "/vote 1 2")
    results = await chat.say("boss", "/poll results 1")
    assert "1. Red: 0 votes\n2. Green: 1 vote" in results
    (export,) = await chat.replies("boss", "/poll export 1")
    assert export.text == "Answers of poll #1: 1 row."


class TestInChinese:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return Settings(locale="zh_CN", storage=storage_for(tmp_path / "vip.db"))

    async def test_a_choice_answer_is_echoed_as_the_chosen_options(
        self, chat: ChatDriver, pusher: RecordingPusher
    ) -> None:
        await _members(chat)
        await chat.say("boss", "/poll choice 您喜欢哪款？ | 托特包 | 双肩包 | 斜挎包 --multi")
        reply = await chat.say("ann", "/vote 1 2,1")
        assert "您的答案：托特包、双肩包。" in reply and ">" not in reply
        await chat.say("boss", "/poll rank 最看重什么？ | 价格 | 质量 | 服务")
        assert "您的答案：1.服务 2.价格 3.质量。" in await chat.say("ann", "/vote 2 3 1 2")

    async def test_tiers_are_named_without_spaces_and_listed_with_the_chinese_comma(
        self, chat: ChatDriver, pusher: RecordingPusher
    ) -> None:
        await _members(chat)
        await chat.say("boss", "/poll nps 您会推荐我们吗？ --tier diamond,black")
        assert "这份调查只请钻石、黑卡会员作答。" in await chat.say("ann", "/vote 1 10", group=False)

    async def test_the_export_speaks_chinese_and_defuses_formulas(
        self, chat: ChatDriver, pusher: RecordingPusher
    ) -> None:
        await chat.say("=evil", "/start", group=False)
        await chat.say("boss", "/poll rating 满意吗？ --hours 5")
        await chat.say("=evil", "/vote 1 4")
        (export,) = await chat.replies("boss", "/poll export 1")
        assert export.document is not None
        rows = list(csv.reader(io.StringIO(export.document[1].decode("utf-8-sig"))))
        assert rows[0] == ["会员号", "会员", "答案", "完成", "作答时间"]
        assert rows[1][1:4] == ["'=Evil", "4", "是"]
