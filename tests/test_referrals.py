"""Referrals (老带新): the personal invite link and code, attribution of new members only, both sides' points
on the first purchase alone, the referrer's monthly cap in the shop's zone, and /invite stats.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiosqlite
import pytest

from bot.app.config import Settings
from handlers.core.clock import FakeClock
from handlers.referrals.commands import invite_code, on_purchase
from storage.referrals import Referral
from tests.conftest import ChatDriver, RecordingPusher, local, settle, storage_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The default points (100 for the referrer, 50 for the new member) with a monthly cap of 2."""
    return Settings(locale="en", storage=storage_for(tmp_path / "vip.db"), referrals={"monthly_cap": 2})


async def code_of(chat: ChatDriver, who: str) -> str:
    """The member's invite code, as /invite hands it out."""
    match = re.search(r"\?start=ref_([A-Z0-9]+)", await chat.say(who, "/invite"))
    assert match is not None
    return match.group(1)


async def member_id(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
    assert member is not None
    return member.id


async def totals(chat: ChatDriver, who: str) -> tuple[int, int]:
    """(balance, lifetime earned), after checking the balance against the member's ledger."""
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
        assert member is not None
        assert await repos.ledger.sum_for(member.id) == member.balance
        return member.balance, member.earned


async def referral_of(chat: ChatDriver, who: str) -> Referral | None:
    referred = await member_id(chat, who)
    async with chat.runtime.deps.db.read() as repos:
        return await repos.referrals.for_referred(referred)


async def ledger_consistent(chat: ChatDriver) -> bool:
    async with chat.runtime.deps.db.read() as repos:
        return await repos.ledger.mismatched_balances() == []


async def invited(chat: ChatDriver, code: str, *names: str) -> None:
    """Each name starts the bot in a private chat through the link with `code`."""
    for name in names:
        assert "joined through Alice's invitation" in await chat.say(name, f"/start ref_{code}", group=False)


# --- the link and the code -------------------------------------------------------------------------------
async def test_invite_gives_a_personal_link_and_the_wechat_code(chat: ChatDriver) -> None:
    text = await chat.say("alice", "/invite")
    code = await code_of(chat, "alice")
    assert f"https://t.me/vipbot?start=ref_{code}" in text
    assert f"邀请 {code}" in text
    assert "you both earn points: +100 for you, +50 for them" in text
    assert invite_code(code) == code and len(code) == 6


async def test_the_code_is_stable_and_personal(chat: ChatDriver) -> None:
    first = await code_of(chat, "alice")
    assert await code_of(chat, "alice") == first
    assert f"ref_{first}" in await chat.say("alice", "邀请")  # the keyword alone is /invite
    assert await code_of(chat, "bob") != first


async def test_without_a_bot_username_only_the_code_is_given(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    chat.port.bot_username = None
    text = await chat.say("alice", "/invite")
    assert "t.me" not in text
    assert f"Your invite code: {code}" in text and f"“邀请 {code}”" in text


# --- attribution -----------------------------------------------------------------------------------------
async def test_a_new_member_starting_through_the_link_is_attributed(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    text = await chat.say("newbie", f"/start ref_{code}", group=False)
    assert "Welcome to the VIP club, Newbie" in text
    assert "You joined through Alice's invitation. Your first purchase earns you welcome points on top: +50!" in text
    referral = await referral_of(chat, "newbie")
    assert referral is not None
    assert (referral.referrer_id, referral.code, referral.state) == (await member_id(chat, "alice"), code, "joined")
    assert await totals(chat, "newbie") == (0, 0)  # nothing on joining
    assert await totals(chat, "alice") == (0, 0)


async def test_a_new_member_can_send_the_code_as_the_wechat_keyword(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    assert "joined through Alice's invitation" in await chat.say("wendy", f"邀请 {code.lower()}", group=False)
    referral = await referral_of(chat, "wendy")
    assert referral is not None and referral.referrer_id == await member_id(chat, "alice")


async def test_a_member_cannot_refer_themselves(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    text = await chat.say("alice", f"/start ref_{code}", group=False)
    assert "Welcome back, Alice" in text and "That is your own invite" in text
    assert "That is your own invite" in await chat.say("alice", f"邀请 {code}")
    assert await referral_of(chat, "alice") is None


async def test_an_existing_member_is_politely_refused_and_nothing_is_recorded(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    await chat.say("bob", "hello everyone")  # bob is a member from his first group message
    text = await chat.say("bob", f"/start ref_{code}", group=False)
    assert "Welcome back, Bob" in text
    assert "Only new members can be invited, and you are already a member" in text
    assert "Only new members can be invited" in await chat.say("bob", f"邀请 {code}", group=False)
    assert await referral_of(chat, "bob") is None
    # Not even through the keyword on someone else's second message.
    await chat.say("carol", "hi")
    assert "Only new members" in await chat.say("carol", f"邀请 {code}")
    assert await referral_of(chat, "carol") is None


async def test_unknown_codes_and_other_payloads(chat: ChatDriver) -> None:
    await code_of(chat, "alice")
    text = await chat.say("newbie", "/start ref_ZZZZZZ", group=False)
    assert "Welcome to the VIP club, Newbie" in text and "The invite code ZZZZZZ is not valid" in text
    assert (await chat.say("other", "/start promo2026", group=False)).startswith("Welcome to the VIP club, Other")
    assert (await chat.say("alice", "邀请 大家一起来")).startswith("Usage: /invite")
    for who in ("newbie", "other"):
        assert await referral_of(chat, who) is None


async def test_a_member_is_attributed_once_and_a_referral_is_never_to_oneself(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    await code_of(chat, "bob")
    await invited(chat, code, "newbie")
    alice, bob, newbie = [await member_id(chat, who) for who in ("alice", "bob", "newbie")]
    async with chat.runtime.deps.db.transaction() as repos:
        assert not await repos.referrals.attribute(bob, newbie, "X", "test", 0)  # UNIQUE referred member
    await chat.say("zed", "/start", group=False)  # a member with no activity yet could be attributed
    zed = await member_id(chat, "zed")
    with pytest.raises(aiosqlite.IntegrityError):
        async with chat.runtime.deps.db.transaction() as repos:
            await repos.referrals.attribute(zed, zed, code, "test", 0)
    async with chat.runtime.deps.db.transaction() as repos:  # alice has been active: she can be no one's
        assert not await repos.referrals.attribute(bob, alice, code, "test", 0)
    referral = await referral_of(chat, "newbie")
    assert referral is not None and referral.referrer_id == alice


# --- rewards ---------------------------------------------------------------------------------------------
async def test_both_sides_are_rewarded_on_the_first_purchase_only(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    await invited(chat, code, "newbie")
    text = await chat.say("boss", "/purchase @newbie 10 first order")
    assert "Recorded a ¥10.00 purchase for Newbie, +10 points" in text
    assert "Referral: first purchase of Newbie, invited by Alice. Points: Newbie +50, Alice +100." in text
    assert await totals(chat, "newbie") == (60, 60)
    assert await totals(chat, "alice") == (100, 100)
    referral = await referral_of(chat, "newbie")
    assert referral is not None
    assert (referral.state, referral.referrer_points, referral.referred_points) == ("rewarded", 100, 50)
    assert referral.reward_month == "2026-03" and referral.purchase_id is not None

    text = await chat.say("boss", "/purchase @newbie 20")
    assert "Referral" not in text
    assert await totals(chat, "newbie") == (80, 80)  # 60 + only the second purchase's own 20
    assert await totals(chat, "alice") == (100, 100)
    assert "invited by Alice" in await chat.say("newbie", "/points")  # the ledger entry's note
    assert await ledger_consistent(chat)


async def test_a_repeated_purchase_update_rewards_nothing_twice(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    await invited(chat, code, "newbie")
    first = chat.inbound("boss", "/purchase @newbie 10", key="test:update:500")
    again = chat.inbound("boss", "/purchase @newbie 10", key="test:update:500")
    assert any("Referral" in r.text for r in await chat.runtime.dispatcher.handle(first, chat.port))
    assert await chat.runtime.dispatcher.handle(again, chat.port) == []
    assert await totals(chat, "alice") == (100, 100)
    assert await totals(chat, "newbie") == (60, 60)


async def test_on_purchase_is_idempotent(chat: ChatDriver) -> None:
    code = await code_of(chat, "alice")
    await invited(chat, code, "newbie")
    await chat.say("boss", "/purchase @newbie 10")
    alice, newbie = await member_id(chat, "alice"), await member_id(chat, "newbie")
    referral = await referral_of(chat, "newbie")
    assert referral is not None and referral.purchase_id is not None
    async with chat.runtime.deps.db.transaction() as repos:
        assert await on_purchase(repos, chat.runtime.deps, newbie, referral.purchase_id) == []
        assert await on_purchase(repos, chat.runtime.deps, newbie, None) == []
        assert await on_purchase(repos, chat.runtime.deps, alice, 1) == []  # alice was not referred
    assert await totals(chat, "alice") == (100, 100)
    assert await totals(chat, "newbie") == (60, 60)


async def test_members_who_were_not_referred_just_earn_their_purchase(chat: ChatDriver) -> None:
    await chat.say("bob", "hi")
    assert "Referral" not in await chat.say("boss", "/purchase @bob 10")
    assert await totals(chat, "bob") == (10, 10)


async def test_monthly_cap_in_the_shop_zone_across_the_month_boundary(chat: ChatDriver, clock: FakeClock) -> None:
    code = await code_of(chat, "alice")
    await invited(chat, code, "carol", "dave", "erin", "frank", "gina")
    for who in ("carol", "dave"):
        assert "Alice +100." in await chat.say("boss", f"/purchase @{who} 1")
    # The third rewarded referral this month is over the cap of 2: the new member still gets their points.
    text = await chat.say("boss", "/purchase @erin 1")
    assert "Points: Erin +50; Alice has reached the monthly limit of rewarded invites (2)" in text
    assert await totals(chat, "erin") == (51, 51)
    assert await totals(chat, "alice") == (200, 200)
    referral = await referral_of(chat, "erin")
    assert referral is not None and referral.state == "capped" and referral.referrer_points == 0
    assert referral.outcome == "monthly cap of 2 rewarded referrals reached for 2026-03"

    clock.set(local(2026, 3, 31, 23, 50))  # still March in Shanghai
    assert "monthly limit" in await chat.say("boss", "/purchase @frank 1")
    clock.set(local(2026, 4, 1, 0, 10))  # April in Shanghai, though still 31 March in UTC
    assert "Alice +100." in await chat.say("boss", "/purchase @gina 1")
    assert await totals(chat, "alice") == (300, 300)
    gina = await referral_of(chat, "gina")
    assert gina is not None and (gina.state, gina.reward_month) == ("rewarded", "2026-04")
    assert await ledger_consistent(chat)


async def test_invite_stats_counts_joined_purchased_points_and_capped(chat: ChatDriver) -> None:
    assert "You haven't invited anyone yet" in await chat.say("alice", "/invite stats")
    code = await code_of(chat, "alice")
    await invited(chat, code, "carol", "dave", "erin", "frank")
    for who in ("carol", "dave", "erin"):
        await chat.say("boss", f"/purchase @{who} 5")
    text = await chat.say("alice", "/invite stats")
    assert text.startswith(
        "Your invites — joined: 4, made a first purchase: 3, points earned: 200, over the monthly limit (no points): 1."
    )
    assert "• Frank, joined 2026-03-10: no purchase yet" in text
    assert "• Erin, joined 2026-03-10: first purchase 2026-03-10, monthly limit reached, no points" in text
    assert "• Carol, joined 2026-03-10: first purchase 2026-03-10, your points +100" in text
    assert await chat.say("alice", "邀请 统计") == text
    assert "You haven't invited anyone yet" in await chat.say("carol", "/invite stats")
    assert await totals(chat, "alice") == (200, 200)
    assert await ledger_consistent(chat)


async def test_both_members_are_told_privately(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "/start", group=False)  # alice can be messaged privately
    code = await code_of(chat, "alice")
    await invited(chat, code, "newbie")
    await settle(chat.runtime)
    assert pusher.to("alice") == [
        "Newbie joined the VIP club through your invite. Their first purchase earns you points: +100."
    ]
    await chat.say("boss", "/purchase @newbie 10")
    await settle(chat.runtime)
    assert pusher.to("alice")[-1] == (
        "🎉 Newbie, whom you invited, made their first purchase: your points +100, balance 100."
    )
    assert pusher.to("newbie") == ["Welcome gift for joining through Alice's invitation: points +50, balance 60."]
