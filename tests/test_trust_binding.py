"""Trust in linked accounts and referrals: a binding code is given only in a private chat, links only
another channel, works once and for minutes, and wrong guesses are limited per member and overall; the
owner of a code hears of the link; /unlink never strands points, purchases or a birthday; an invite between
identities of one member earns nothing, before or after the link; a WeChat follower can still be invited.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.config import Settings
from handlers.core.clock import FakeClock
from tests import test_wechat as wxh
from tests.conftest import ChatDriver, RecordingPusher, settle
from tests.fakes.wechat_api import FakeWeChatApi

CODE = re.compile(r"Your link code: (B-[A-Z0-9]+)")


@pytest.fixture
def wechat(chat: ChatDriver) -> ChatDriver:
    """The same bot as `chat`, reached from a second channel (its users are other identities)."""
    return ChatDriver(chat.runtime, chat.port, channel="wechat")


async def link_code(chat: ChatDriver, who: str) -> str:
    match = CODE.search(await chat.say(who, "/bind", group=False))
    assert match is not None
    return match.group(1)


async def member_of(chat: ChatDriver, channel: str, who: str) -> tuple[int, int, int]:
    """(member id, balance, lifetime earned) of an identity, after checking the balance against the ledger."""
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity(channel, who)
        assert member is not None
        assert await repos.ledger.sum_for(member.id) == member.balance
        return member.id, member.balance, member.earned


async def stranded(chat: ChatDriver) -> list[int]:
    """Members with points, purchases or a birthday whom no identity leads to (and not merged away)."""
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall(
            "SELECT m.id FROM members m WHERE m.merged_into IS NULL"
            " AND (m.balance > 0 OR m.birthday IS NOT NULL OR EXISTS (SELECT 1 FROM purchases p"
            " WHERE p.member_id = m.id)) AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.member_id = m.id)"
        )
    return [r[0] for r in rows]


# --- where and for what a code works ---------------------------------------------------------------------
async def test_a_code_is_never_shown_in_a_group_and_never_links_two_accounts_on_one_platform(
    chat: ChatDriver,
) -> None:
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 700")
    asked_in_group = await chat.say("alice", "/bind")
    assert "private chat" in asked_in_group
    assert not CODE.search(asked_in_group) and "B-" not in asked_in_group
    async with chat.runtime.deps.db.read() as repos:
        assert (await repos.conn.execute_fetchall("SELECT COUNT(*) FROM bind_codes"))[0][0] == 0

    # Whoever read or guessed a code on the same platform cannot take the account over with it.
    code = await link_code(chat, "alice")
    assert "another platform" in await chat.say("mallory", f"绑定 {code}", group=False)
    alice, balance, _ = await member_of(chat, "test", "alice")
    mallory, mallory_balance, _ = await member_of(chat, "test", "mallory")
    assert mallory != alice and (balance, mallory_balance) == (700, 0)
    assert "700" not in await chat.say("mallory", "/points", group=False)

    # A code sent in a group is seen by all: it is refused there and no longer valid anywhere.
    assert "private chat" in await chat.say("alice", f"绑定 {code}")
    other_platform = ChatDriver(chat.runtime, chat.port, channel="wechat")
    assert "wrong or expired" in await other_platform.say("ann", f"绑定 {code}", group=False)


async def test_a_code_used_on_the_platform_it_came_from_is_refused_and_stays_valid(
    chat: ChatDriver, wechat: ChatDriver
) -> None:
    code = await link_code(chat, "alice")
    assert "another platform" in await chat.say("alice", f"绑定 {code}", group=False)
    assert "Linked!" in await wechat.say("ann", f"绑定 {code}", group=False)
    assert (await member_of(chat, "test", "alice"))[0] == (await member_of(wechat, "wechat", "ann"))[0]


async def test_a_code_works_once(chat: ChatDriver, wechat: ChatDriver) -> None:
    code = await link_code(chat, "alice")
    assert "Linked!" in await wechat.say("ann", f"绑定 {code}", group=False)
    assert "wrong or expired" in await wechat.say("bob", f"绑定 {code}", group=False)
    assert (await member_of(wechat, "wechat", "bob"))[0] != (await member_of(chat, "test", "alice"))[0]


async def test_a_code_lasts_minutes(chat: ChatDriver, wechat: ChatDriver, clock: FakeClock) -> None:
    assert "valid 5 minutes" in await chat.say("alice", "/bind", group=False)
    code = await link_code(chat, "alice")
    clock.advance(timedelta(minutes=6))
    assert "wrong or expired" in await wechat.say("ann", f"绑定 {code}", group=False)
    assert (await member_of(wechat, "wechat", "ann"))[0] != (await member_of(chat, "test", "alice"))[0]


async def test_wrong_guesses_are_limited_per_member_and_overall(
    chat: ChatDriver, wechat: ChatDriver, clock: FakeClock
) -> None:
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 500")
    code = await link_code(chat, "alice")
    guesses = [f"B-{n:08d}".replace("0", "Z").replace("1", "Y") for n in range(200)]
    assert code not in guesses
    answers = [await wechat.say("mallory", f"绑定 {guess}", group=False) for guess in guesses]
    assert all("wrong or expired" in a for a in answers[:5])
    assert all("Too many wrong link codes" in a for a in answers[5:])
    # Then even the right code is refused for a while.
    assert "Too many wrong link codes" in await wechat.say("mallory", f"绑定 {code}", group=False)
    assert (await member_of(wechat, "wechat", "mallory"))[0] != (await member_of(chat, "test", "alice"))[0]

    # Many identities guessing once each are stopped by the overall limit, which also holds the right code.
    answers = [await wechat.say(f"bot{n:03d}", f"绑定 {guess}", group=False) for n, guess in enumerate(guesses)]
    assert any("Too many wrong link codes" in a for a in answers)
    assert sum("wrong or expired" in a for a in answers) <= 50
    assert "Too many wrong link codes" in await wechat.say("ann", f"绑定 {code}", group=False)
    assert (await member_of(wechat, "wechat", "ann"))[0] != (await member_of(chat, "test", "alice"))[0]

    clock.advance(timedelta(minutes=16))  # the limits are counted per window: a later code works again
    code = await link_code(chat, "alice")
    assert "Linked!" in await wechat.say("ann", f"绑定 {code}", group=False)
    assert await member_of(wechat, "wechat", "ann") == await member_of(chat, "test", "alice")


async def test_the_owner_of_a_code_is_told_when_it_links_an_account(
    chat: ChatDriver, wechat: ChatDriver, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "/start", group=False)
    code = await link_code(chat, "alice")
    await settle(chat.runtime)
    before = len(pusher.to("alice"))
    assert "Linked!" in await wechat.say("ann", f"绑定 {code}", group=False)
    await settle(chat.runtime)
    (notice,) = pusher.to("alice")[before:]
    assert "WeChat" in notice and "Ann" in notice and "/unlink" in notice


# --- /unlink ---------------------------------------------------------------------------------------------
async def test_unlink_never_strands_points_purchases_or_a_birthday(chat: ChatDriver, wechat: ChatDriver) -> None:
    # A member linked twice on one platform (possible before codes were limited to another platform).
    await wechat.say("ann", "/birthday 05-20", group=False)
    await wechat.say("boss", "/purchase @ann 80")
    await wechat.say("ann2", "hi")
    ann = (await member_of(wechat, "wechat", "ann"))[0]
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.conn.execute("UPDATE identities SET member_id = ? WHERE external_id = 'ann2'", (ann,))
    answer = await wechat.say("boss", "/unlink @ann wechat")
    assert await stranded(chat) == []
    assert "ann2" in answer  # which account to take off is asked for
    assert "Unlinked" in await wechat.say("boss", "/unlink @ann wechat ann2")
    assert await stranded(chat) == []
    assert (await member_of(wechat, "wechat", "ann"))[1] == 80
    assert (await member_of(wechat, "wechat", "ann2"))[0] != ann

    # The last account of a member is never taken off it.
    assert "Unlinked" not in await wechat.say("boss", "/unlink @ann wechat")
    assert await stranded(chat) == []

    # Across platforms: the data stays with the account that remains.
    code = await link_code(chat, "alice")
    assert "Linked!" in await wechat.say("ann", f"绑定 {code}", group=False)
    assert (await member_of(chat, "test", "alice"))[1] == 80
    assert "Unlinked" in await chat.say("boss", "/unlink @alice test")
    assert await stranded(chat) == []
    assert (await member_of(wechat, "wechat", "ann"))[1] == 80
    assert (await member_of(chat, "test", "alice"))[1] == 0
    async with chat.runtime.deps.db.read() as repos:
        kept = await repos.members.by_identity("wechat", "ann")
        assert kept is not None and kept.birthday == "05-20"


# --- referrals between identities of one member ----------------------------------------------------------
async def invite_code(chat: ChatDriver, who: str) -> str:
    match = re.search(r"\?start=ref_([A-Z0-9]+)", await chat.say(who, "/invite"))
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("issuer", ["inviter", "invitee"])
async def test_inviting_ones_own_second_account_earns_nothing_when_linked_after_the_purchase(
    chat: ChatDriver, wechat: ChatDriver, issuer: str
) -> None:
    await chat.say("alice", "/checkin")  # 10 points of her own
    ref = await invite_code(chat, "alice")
    assert "joined through Alice's invitation" in await wechat.say("ann", f"邀请 {ref}", group=False)
    assert "Referral" in await wechat.say("boss", "/purchase @ann 20")
    assert (await member_of(chat, "test", "alice"))[1] == 110
    assert (await member_of(wechat, "wechat", "ann"))[1] == 70
    if issuer == "inviter":  # ann's account goes into alice's
        text = await wechat.say("ann", f"绑定 {await link_code(chat, 'alice')}", group=False)
    else:  # alice's account goes into ann's
        text = await chat.say("alice", f"绑定 {await link_code(wechat, 'ann')}", group=False)
    assert "Linked!" in text and "invite" in text
    merged = await member_of(chat, "test", "alice")
    assert merged == await member_of(wechat, "wechat", "ann")
    assert merged[1:] == (30, 30)  # her check-in and her purchase; both invite rewards are withdrawn
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.ledger.mismatched_balances() == []
        assert (await repos.referrals.stats(merged[0])).points == 0


@pytest.mark.parametrize("issuer", ["inviter", "invitee"])
async def test_inviting_ones_own_second_account_earns_nothing_when_linked_before_the_purchase(
    chat: ChatDriver, wechat: ChatDriver, issuer: str
) -> None:
    ref = await invite_code(chat, "alice")
    assert "joined through Alice's invitation" in await wechat.say("ann", f"邀请 {ref}", group=False)
    if issuer == "inviter":
        assert "Linked!" in await wechat.say("ann", f"绑定 {await link_code(chat, 'alice')}", group=False)
    else:
        assert "Linked!" in await chat.say("alice", f"绑定 {await link_code(wechat, 'ann')}", group=False)
    text = await wechat.say("boss", "/purchase @ann 20")
    assert "Referral" not in text
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.ledger.mismatched_balances() == []
        rows = await repos.conn.execute_fetchall("SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE reason = 'referral'")
        assert rows[0][0] == 0
    assert (await member_of(chat, "test", "alice"))[1:] == (20, 20)
    assert "That is your own invite" in await wechat.say("ann", f"邀请 {ref}", group=False)


async def test_an_invite_carried_over_by_a_link_pays_a_real_friend_once(chat: ChatDriver, wechat: ChatDriver) -> None:
    """Linking one's own accounts keeps an invite from someone else, for the member's first purchase only."""
    ref = await invite_code(chat, "alice")
    assert "joined through Alice's invitation" in await wechat.say("ann", f"邀请 {ref}", group=False)
    # ann's WeChat account goes into her new Telegram one: the invite follows her.
    assert "Linked!" in await wechat.say("ann", f"绑定 {await link_code(chat, 'annie')}", group=False)
    assert "Referral" in await chat.say("boss", "/purchase @annie 10")
    assert (await member_of(chat, "test", "alice"))[1] == 100
    assert (await member_of(wechat, "wechat", "ann"))[1] == 60

    # A customer who has bought before is no new member: an invite brought over by a link pays nothing.
    await chat.say("carol", "hi")
    assert "Referral" not in await chat.say("boss", "/purchase @carol 10")
    assert "joined through Alice's invitation" in await wechat.say("cathy", f"邀请 {ref}", group=False)
    assert "Linked!" in await wechat.say("cathy", f"绑定 {await link_code(chat, 'carol')}", group=False)
    assert "Referral" not in await chat.say("boss", "/purchase @carol 10")
    assert (await member_of(chat, "test", "alice"))[1] == 100
    assert (await member_of(chat, "test", "carol"))[1] == 20


# --- the WeChat invite ----------------------------------------------------------------------------------
@pytest.fixture
async def wx(tmp_path: Path, clock: FakeClock) -> AsyncIterator[wxh.WeChatHarness]:
    api = await FakeWeChatApi().start()
    harness = await wxh._start(wxh.wechat_settings(tmp_path, api), clock, api)
    try:
        yield harness
    finally:
        await wxh._stop(harness, api)


async def test_a_wechat_follower_can_still_be_invited_until_they_are_active(wx: wxh.WeChatHarness) -> None:
    chat = ChatDriver(wx.runtime)
    ref = await invite_code(chat, "alice")
    response = await wx.post(wxh.event_xml("o-new", "subscribe"))  # following the account makes the member
    assert response.status_code == 200 and "Welcome" in wxh.answer_text(response.text)
    assert "joined through Alice's invitation" in await wx.say("o-new", f"邀请 {ref}")
    async with wx.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("wechat", "o-new")
        assert member is not None
        referral = await repos.referrals.for_referred(member.id)
        alice = await repos.members.by_identity("test", "alice")
    assert referral is not None and alice is not None and referral.referrer_id == alice.id

    # A follower who has already been active (points, purchases, check-ins) is an existing member.
    await wx.post(wxh.event_xml("o-old", "subscribe"))
    await wx.say("o-old", "签到")
    assert "Only new members can be invited" in await wx.say("o-old", f"邀请 {ref}")


def test_binding_settings_have_sensible_defaults() -> None:
    rules = Settings().binding
    assert 1 <= rules.code_minutes <= 15
    assert rules.failures_per_member <= 10 and rules.failures_overall <= 100
