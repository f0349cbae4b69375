"""Answers that must be right and private: codes never readable in a group, free text in a private chat
answered with a pointer to the menu and a ticket offered, silence for chatter in groups."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, RecordingPusher, local, settle
from tests.tg_harness import ALICE, BOB, GROUP, STAFF, STAFF_ID, fake_api, harness_settings, running_bot

CODE = re.compile(r"\b[RSG]-[A-Z0-9]{4,}\b")
"""A redemption (R-), claim (S-) or group-buy (G-) code as the bot writes them."""


async def test_no_code_is_ever_readable_in_the_group(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "codes.db"), clock) as bot:
            await bot.send(STAFF_ID, STAFF, "/start")  # staff may be messaged privately
            await bot.send(GROUP, ALICE, "/checkin")  # Alice and Bob never started the bot
            await bot.post(GROUP, BOB, "/checkin", "editMessageText")  # the board shows it
            await bot.send(GROUP, STAFF, "/award @alice 500")
            await bot.send(GROUP, STAFF, "/reward add Cup | cost=10")
            await bot.send(GROUP, STAFF, "/sale add Jade | price=9 stock=5 start=2026-03-10 10:00 --force")
            await bot.settle()  # its announcement is posted after the answer: not to be read as the next one
            clock.advance(timedelta(hours=1, minutes=1))
            await bot.send(GROUP, ALICE, "/redeem 1")
            await bot.send(GROUP, BOB, "/claim 1")
            await bot.settle()
            await bot.send(GROUP, STAFF, "/sale status 1")  # lists every claim code
            await bot.post(GROUP, STAFF, "/sale export 1", "sendDocument")  # the file alone, privately
            assert await bot.channel.idle(timeout=30)
            calls = api.sent() + api.sent("sendDocument")
            in_group = [str(p.get("text") or p.get("caption") or "") for p in calls if int(p["chat_id"]) == GROUP]
            assert not [text for text in in_group if CODE.search(text)], in_group
            assert "\n".join(in_group).count("private chat") == 2  # Alice and Bob are told to start the bot
            assert not any(int(p["chat_id"]) == GROUP for p in api.sent("sendDocument"))
            to_staff = "\n".join(p["text"] for p in api.sent() if int(p["chat_id"]) == STAFF_ID)
            assert "Bob" in to_staff and CODE.search(to_staff)  # the status went to the staff member privately
            # The codes wait for their members: each gets theirs once they open the private chat.
            before = len(api.sent())
            await bot.send(101, ALICE, "/start")
            assert await bot.channel.idle(timeout=30)
            mine = "\n".join(p["text"] for p in api.sent()[before:] if int(p["chat_id"]) == 101)
            assert re.search(r"\bR-[A-Z0-9]{4,}\b", mine), mine


async def test_group_buy_codes_stay_private(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "gb.db"), clock) as bot:
            await bot.send(STAFF_ID, STAFF, "/start")
            await bot.send(GROUP, STAFF, "/groupbuy add Tea set | price=300 group_price=199 min=2"
                                         " deadline=2026-03-12 20:00")  # fmt: skip
            await bot.settle()  # its announcement is posted after the answer: not to be read as the next one
            await bot.send(GROUP, ALICE, "/groupbuy join 1")  # Alice and Bob never started the bot
            await bot.send(GROUP, BOB, "/groupbuy join 1")
            await bot.settle()  # both joins are booked before the deadline comes
            clock.set(local(2026, 3, 12, 20, 0))  # the deadline: it succeeds, with a code for each
            await bot.runtime.planner.fire()
            assert await bot.channel.idle(timeout=30)
            await bot.send(GROUP, ALICE, "/groupbuy status 1")  # her own code
            await bot.send(GROUP, STAFF, "/groupbuy status 1")  # everyone's codes
            assert await bot.channel.idle(timeout=30)
            in_group = "\n".join(p["text"] for p in api.sent() if int(p["chat_id"]) == GROUP)
            assert "succeeded" in in_group or "is on" in in_group
            assert not CODE.search(in_group), in_group
            to_staff = "\n".join(p["text"] for p in api.sent() if int(p["chat_id"]) == STAFF_ID)
            assert len(set(CODE.findall(to_staff))) == 2  # the staff member reads both, privately
            before = len(api.sent())
            await bot.send(101, ALICE, "/start")
            assert await bot.channel.idle(timeout=30)
            mine = "\n".join(p["text"] for p in api.sent()[before:] if int(p["chat_id"]) == 101)
            assert re.search(r"\bG-[A-Z0-9]{4,}\b", mine), mine


async def test_free_text_in_a_private_chat_gets_a_pointer_and_a_ticket_offer(
    chat: ChatDriver, pusher: RecordingPusher
) -> None:
    for text in ("你好", "在吗？"):
        (answer,) = await chat.replies("alice", text, group=False)
        assert "/help" in answer.text and "/feedback" in answer.text, text
        data = [b.data for b in answer.buttons]
        assert data == ["v1:help:", f"v1:feedback:{text}"]
    # The offered button opens a ticket with what was written.
    pressed = dataclasses.replace(chat.inbound("alice", "", group=False), button="v1:feedback:在吗？")
    (received,) = await chat.runtime.dispatcher.handle(pressed, chat.port)
    assert "ticket #1" in received.text
    async with chat.runtime.deps.db.read() as repos:
        ticket = await repos.tickets.get(1)
    assert ticket is not None and ticket.body == "在吗？"
    # A long message does not fit a button: the answer still says how to send it to staff.
    (answer,) = await chat.replies("alice", "请问" * 40, group=False)
    assert [b.data for b in answer.buttons] == ["v1:help:"] and "/feedback" in answer.text
    # Members chat in the group: no answer there.
    assert await chat.replies("bob", "你好") == []
    await settle(chat.runtime)
