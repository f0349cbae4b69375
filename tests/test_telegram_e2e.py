"""End to end through the real python-telegram-bot Application, polling a fake Bot API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app.config import Settings
from bot.telegram.channel import split_text
from handlers.core.clock import FakeClock
from tests.conftest import storage_for
from tests.fakes.bot_api import BOT_USERNAME, message_update, user
from tests.tg_harness import (
    ADMIN,
    ADMIN_ID,
    ALICE,
    BOB,
    GROUP,
    OTHER_GROUP,
    STAFF,
    Harness,
    fake_api,
    harness_settings,
    running_bot,
)


@pytest.fixture
async def tg(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "tg.db"), clock) as harness:
        yield harness


async def test_group_checkin_flow_with_points_after_each_step(tg: Harness) -> None:
    board = await tg.send(GROUP, ALICE, f"/checkin@{BOT_USERNAME}")
    # The first check-in of the day posts the board, with the check-in button.
    assert "1 member has checked in" in board and "Alice (1-day streak)" in board
    post = tg.api.sent()[-1]
    assert int(post["chat_id"]) == GROUP
    assert post["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "v1:checkin:"
    # Alice never opened a private chat: her points are answered in the group, quoting her.
    assert "Alice's points: 10" in await tg.send(GROUP, ALICE, "/points")
    assert tg.api.sent()[-1]["reply_parameters"]["message_id"] > 0

    assert "already checked in today" in await tg.send(GROUP, ALICE, "签到")
    assert "Alice's points: 10" in await tg.send(GROUP, ALICE, f"/POINTS@{BOT_USERNAME.upper()}")

    # Bob's check-in is confirmed by an edit of the same board, not by a new message.
    edited = await tg.post(GROUP, BOB, "签到", "editMessageText")
    assert "2 members have checked in" in edited and "Bob (1-day streak)" in edited
    assert "Bob's points: 10" in await tg.send(GROUP, BOB, "积分")
    assert await tg.balance(ALICE) == 10
    assert sum("checked in" in t for t in tg.api.texts(GROUP)) == 2  # the board and Alice's repeat


async def test_commands_for_other_bots_and_bot_senders_are_ignored(tg: Harness) -> None:
    await tg.silent(GROUP, ALICE, "/checkin@some_other_bot")
    await tg.silent(GROUP, user(999, "Spam", is_bot=True), "/checkin")
    await tg.silent(GROUP, None, "/checkin", sender_chat={"id": GROUP, "type": "supergroup", "title": "VIP"})
    async with tg.runtime.deps.db.read() as repos:
        assert await repos.members.by_identity("telegram", "101") is None
        assert await repos.members.by_identity("telegram", "999") is None
        assert await repos.members.count() == 1  # only the /help sender of silent()


async def test_a_repeated_update_is_handled_once(tg: Harness) -> None:
    await tg.send(GROUP, ALICE, "/checkin")  # posts the board
    update = message_update(tg.api, GROUP, STAFF, "/award @alice 50 thanks")
    before = len(tg.api.sent())
    tg.api.push_update(update)
    tg.api.push_update(update)  # Telegram re-delivers the very same update
    assert "Gave Alice 50 points" in await tg.answer(before)
    await tg.channel.receive(update)  # and once more by webhook, after it was handled
    assert "Alice's points: 60" in await tg.send(GROUP, ALICE, "/points")
    assert sum("Gave Alice" in t for t in tg.api.texts()) == 1
    assert await tg.balance(ALICE) == 60


async def test_staff_from_config_and_group_admins_may_award_others_may_not(tg: Harness) -> None:
    await tg.send(GROUP, ALICE, "/checkin")
    assert "only staff" in await tg.send(GROUP, BOB, "/award @alice 5")
    assert "Gave Alice 5 points" in await tg.send(GROUP, STAFF, "/award @alice 5")
    assert "Gave Alice 6 points" in await tg.send(GROUP, ADMIN, "/award 6 great review", reply_to=ALICE)
    # A group admin is staff in a private chat too; the admin list is fetched once and cached.
    assert "Recorded a ¥88.00 purchase for Alice" in await tg.send(ADMIN_ID, ADMIN, "/purchase @alice 88")
    await tg.settle()  # Alice's notice in the group comes after the answer: not to be read as the next one
    assert len(tg.api.sent("getChatAdministrators")) == 1
    assert "only staff" in await tg.send(102, BOB, "/deduct @alice 1")
    assert "Alice's points: 109" in await tg.send(GROUP, ALICE, "/points")


async def test_reply_goes_to_the_same_forum_topic(tg: Harness) -> None:
    assert "Alice (1-day streak)" in await tg.send(GROUP, ALICE, "签到", thread_id=42)
    assert tg.api.sent()[-1]["message_thread_id"] == 42  # the board is posted where the day's first came from
    assert "Alice's points: 10" in await tg.send(GROUP, ALICE, "/points", thread_id=42)
    assert tg.api.sent()[-1]["message_thread_id"] == 42
    await tg.send(GROUP, ALICE, "/points")
    assert "message_thread_id" not in tg.api.sent()[-1]


async def test_private_start_and_unknown_commands(tg: Harness) -> None:
    assert "Welcome to the VIP club, Alice" in await tg.send(101, ALICE, "/start")
    assert "Send /help" in await tg.send(101, ALICE, "/nonsense")
    async with tg.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("telegram", "101")
        assert member is not None
        (identity,) = await repos.members.identities(member.id)
    assert identity.can_message and identity.username == "alice"


async def test_groups_outside_the_vip_list_are_not_served(tg: Harness) -> None:
    await tg.silent(OTHER_GROUP, ALICE, "签到")
    assert "not a VIP group" in await tg.send(OTHER_GROUP, ALICE, f"/checkin@{BOT_USERNAME}")
    async with tg.runtime.deps.db.read() as repos:
        assert await repos.members.by_identity("telegram", "101") is None


async def test_a_message_of_4096_characters_is_kept_as_data(tg: Harness) -> None:
    head = "/award @alice 1 "
    text = head + ("长'); DROP TABLE ledger; -- 🎉" * 200)[: 4096 - len(head)]
    await tg.send(GROUP, ALICE, "/checkin")
    assert "Gave Alice 1 point." in await tg.send(GROUP, STAFF, text)
    points = await tg.send(GROUP, ALICE, "/points")
    assert "Alice's points: 11" in points and "DROP TABLE ledger" in points
    assert all(len(p["text"]) <= 4096 for p in tg.api.sent())


def test_split_text_prefers_line_breaks() -> None:
    assert split_text("abc") == ["abc"]
    pieces = split_text("a" * 10 + "\n" + "b" * 10, limit=15)
    assert pieces == ["a" * 10, "b" * 10]
    assert split_text("x" * 30, limit=15) == ["x" * 15, "x" * 15]


async def test_the_default_configuration_answers_under_telegrams_limits(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = Settings(
            locale="en",
            storage=storage_for(tmp_path / "rl.db"),
            telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP]},
        )
        async with running_bot(api, settings, clock) as harness:
            assert "Alice (1-day streak)" in await harness.send(GROUP, ALICE, "签到")
            assert "Alice's points: 10" in await harness.send(101, ALICE, "/points")
