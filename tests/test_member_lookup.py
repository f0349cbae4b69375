"""Looking a member up at the till: /member by phone, member number, @username and name; namesakes listed,
nobody found said plainly, the card's next steps as buttons, and staff only."""

from __future__ import annotations

from dataclasses import replace

import pytest

from handlers.core.messages import Identity, Reply
from tests.conftest import ChatDriver


async def member_id(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.members.by_identity(chat.channel, who)
    assert found is not None
    return found.id


async def give_phone(chat: ChatDriver, who: str, phone: str, note: str = "") -> None:
    mid = await member_id(chat, who)
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.conn.execute(
            "INSERT INTO customer_profiles(member_id, phone, note, updated_at) VALUES (?, ?, ?, 0)", (mid, phone, note)
        )


async def say_as(chat: ChatDriver, who: str, name: str, text: str) -> None:
    """A group message from `who` shown as `name` (namesakes)."""
    msg = chat.inbound(who, text)
    msg = replace(msg, sender=Identity(chat.channel, who, name, who))
    await chat.runtime.dispatcher.handle(msg, chat.port)


async def lookup(chat: ChatDriver, query: str, **kwargs: object) -> Reply:
    (reply,) = await chat.replies("boss", f"/member {query}", **kwargs)
    return reply


@pytest.fixture
async def alice(chat: ChatDriver) -> int:
    await chat.say("alice", "/checkin")
    await chat.say("alice", "/birthday 08-15")
    await chat.say("boss", "/purchase @alice 128 scarf")
    await give_phone(chat, "alice", "13800138000")
    return await member_id(chat, "alice")


@pytest.mark.parametrize(
    "query", ["13800138000", "+86 138-0013-8000", "138 0013 8000", "@alice", "@ALICE", "Alice", "alice", "ali"]
)
async def test_each_key_finds_the_member_and_shows_the_card(chat: ChatDriver, alice: int, query: str) -> None:
    reply = await lookup(chat, query)
    text = reply.text
    assert text.startswith(f"Member #{alice}: Alice\nPhone: 13800138000\nBirthday: 08-15\nJoined: 2026-03-10\n")
    assert "\nTier: Gold, 462 more points to Diamond\n" in text
    assert "Last purchases:\n· 2026-03-10 ¥128.00 (scarf)\n" in text
    assert "No unused codes." in text
    assert reply.buttons[0].data == f"v1:purchase:{alice}"
    assert reply.secret  # a phone number: never shown in a group


async def test_the_member_number_finds_the_member(chat: ChatDriver, alice: int) -> None:
    assert (await lookup(chat, str(alice))).text.startswith(f"Member #{alice}: Alice\n")
    assert (await lookup(chat, f"#{alice}")).text.startswith(f"Member #{alice}: Alice\n")


async def test_open_codes_are_listed_with_their_next_steps(chat: ChatDriver, alice: int) -> None:
    async with chat.runtime.deps.db.transaction() as repos:
        reward = await repos.rewards.create("Tote bag", 10, None, None, 0)
        await repos.rewards.record(reward, alice, "R-TOTE42", 10, 0)
        sale = await repos.sales.create("Silk scarf", 9900, 5, 0, None, 1, None, None, False, None, 0)
        assert await repos.sales.take_unit(sale, alice, "S-SILK77", 0, 0) is not None
    reply = await lookup(chat, "13800138000")
    assert "Unused codes:" in reply.text
    assert "· Redemption code R-TOTE42: Tote bag (to be handed over)" in reply.text
    assert "· Sale claim code S-SILK77: Silk scarf (to be paid)" in reply.text
    data = [b.data for b in reply.buttons]
    assert data[0] == f"v1:purchase:{alice}"
    assert "v1:redeemed:R-TOTE42" in data and "v1:sale:paid S-SILK77" in data
    # The button starts the existing command: the reward is handed over.
    press = replace(chat.inbound("boss", "", group=False), button="v1:redeemed:R-TOTE42")
    await chat.runtime.dispatcher.handle(press, chat.port)
    assert "R-TOTE42" not in (await lookup(chat, "13800138000")).text


async def test_the_purchase_button_starts_the_purchase_command(chat: ChatDriver, alice: int) -> None:
    press = replace(chat.inbound("boss", "", group=False), button=f"v1:purchase:{alice}")
    replies = await chat.runtime.dispatcher.handle(press, chat.port)
    assert "Usage: /purchase" in "\n".join(r.text for r in replies)


async def test_namesakes_are_listed_not_guessed(chat: ChatDriver) -> None:
    await say_as(chat, "wang_a", "小王", "hello")
    await say_as(chat, "wang_b", "小王", "hi")
    await give_phone(chat, "wang_b", "13912345678")
    a, b = await member_id(chat, "wang_a"), await member_id(chat, "wang_b")
    reply = await lookup(chat, "小王")
    lines = reply.text.split("\n")
    assert lines[0] == '2 members found for "小王":'
    assert lines[1] == f"1. 小王 (member no. {a}, no phone, Gold)"
    assert lines[2] == f"2. 小王 (member no. {b}, phone ending 5678, Gold)"
    assert [btn.data for btn in reply.buttons] == [f"v1:member:{a}", f"v1:member:{b}"]
    # The phone tells them apart.
    assert (await lookup(chat, "13912345678")).text.startswith(f"Member #{b}: 小王\n")


async def test_nobody_found_is_said_plainly(chat: ChatDriver, alice: int) -> None:
    for query in ("Zelda", "13700000000", "@nobody", "99999"):
        assert (await lookup(chat, query)).text.startswith(f'No member found for "{query}"')


async def test_without_a_query_it_shows_the_usage(chat: ChatDriver) -> None:
    assert (await chat.say("boss", "/member")).startswith("Usage: /member")


async def test_a_member_cannot_look_members_up(chat: ChatDriver, alice: int) -> None:
    text = await chat.say("bob", "/member 13800138000", group=False)
    assert "only staff" in text and "13800138000" not in text


async def test_an_erased_member_is_not_found_by_name_or_phone(chat: ChatDriver, alice: int) -> None:
    await chat.say("alice", "确认删除")
    await chat.say("boss", f"/forget confirm {alice}")
    assert (await lookup(chat, "13800138000")).text.startswith("No member found")
    assert (await lookup(chat, "Alice")).text.startswith("No member found")


async def test_a_voided_purchase_is_not_among_the_last_purchases(chat: ChatDriver, alice: int) -> None:
    mistake = await chat.say("boss", "/purchase @alice 12990 typo", group=False)
    purchase_id = mistake.split("Purchase #")[1].split()[0].rstrip(":.,)")
    assert "Voided purchase" in await chat.say("boss", f"/void purchase {purchase_id}", group=False)
    text = (await lookup(chat, "@alice")).text
    assert "Last purchases:\n· 2026-03-10 ¥128.00 (scarf)\n" in text and "typo" not in text
