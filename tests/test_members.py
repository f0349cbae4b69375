"""Membership, the profile, birthdays, and arbitrary text kept as data."""

from __future__ import annotations

import pytest

from tests.conftest import ChatDriver


async def test_start_in_private_chat_welcomes_new_and_returning_members(chat: ChatDriver) -> None:
    assert "Welcome to the VIP club, Alice" in await chat.say("alice", "/start", group=False)
    assert "Welcome back, Alice" in await chat.say("alice", "/start", group=False)
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", "alice")
        assert member is not None
        (identity,) = await repos.members.identities(member.id)
    assert identity.can_message and identity.username == "alice"


async def test_first_message_in_a_vip_group_makes_a_member(chat: ChatDriver) -> None:
    assert await chat.say("dave", "good morning everyone") == ""
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", "dave")
        assert member is not None
        (identity,) = await repos.members.identities(member.id)
    assert member.display_name == "Dave" and not identity.can_message


async def test_messages_in_other_groups_make_no_member(chat: ChatDriver) -> None:
    chat.port.non_vip_chats.add("elsewhere")
    assert await chat.say("eve", "hi", chat="elsewhere") == ""
    assert "not a VIP group" in await chat.say("eve", "/checkin@vipbot", chat="elsewhere")
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.members.by_identity("test", "eve") is None


async def test_me_shows_the_profile(chat: ChatDriver) -> None:
    await chat.say("alice", "/checkin")
    text = await chat.say("alice", "/me")
    assert "Member: Alice (@alice)" in text
    assert "Joined: 2026-03-10" in text
    assert "Birthday: not set" in text
    assert "Check-in streak: 1 day\n" in text


@pytest.mark.parametrize(("given", "stored"), [("02-29", "02-29"), ("8-5", "08-05"), ("12/31", "12-31")])
async def test_birthday_accepts_real_dates(chat: ChatDriver, given: str, stored: str) -> None:
    assert "Birthday saved" in await chat.say("alice", f"/birthday {given}")
    assert f"Birthday: {stored}" in await chat.say("alice", "/me")


@pytest.mark.parametrize("given", ["02-30", "13-01", "00-10", "04-31", "tomorrow", "2026-02-01"])
async def test_birthday_refuses_impossible_dates(chat: ChatDriver, given: str) -> None:
    text = await chat.say("alice", f"/birthday {given}")
    assert "is not a valid date" in text and "Usage: /birthday MM-DD" in text
    assert "Birthday: not set" in await chat.say("alice", "/me")


async def test_birthday_without_argument_shows_usage(chat: ChatDriver) -> None:
    assert await chat.say("alice", "/birthday") == "Usage: /birthday MM-DD, e.g. /birthday 08-15"


@pytest.mark.parametrize(
    "odd",
    [
        "💎🎉 VIP 客户 🧧",
        "مرحبا بالعالم",  # right-to-left
        "'); DROP TABLE members; --",
        "x" * 4000,
        "{name} {0} %s",
    ],
)
async def test_arbitrary_text_is_stored_and_shown_as_data(chat: ChatDriver, odd: str) -> None:
    await chat.say("alice", "hi")
    assert "Gave Alice 3 points" in await chat.say("boss", f"/award @alice 3 {odd}")
    text = await chat.say("alice", "/points")
    assert odd[:500] in text
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.members.count() == 2


async def test_odd_display_names_are_kept(chat: ChatDriver) -> None:
    name = "'); DROP TABLE identities; -- 🐉"
    assert "+10" in await chat.say(name, "/checkin")
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", name)
    assert member is not None and member.display_name == name.title()
