"""/void: a purchase or an award recorded by mistake is taken back by reversing ledger entries; lifetime
points and tier, statistics, segments and the referral reward it triggered follow; voiding twice books once;
points already spent are never overdrawn."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.app.config import Settings
from handlers.segments.commands import segment_bounds
from tests.conftest import ChatDriver, RecordingPusher, settle, storage_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(locale="en", storage=storage_for(tmp_path / "vip.db"), referrals={"monthly_cap": 2})


async def member(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.members.by_identity("test", who)
    assert found is not None
    return found.id


async def totals(chat: ChatDriver, who: str) -> tuple[int, int]:
    """(balance, lifetime earned), after checking the balance against the member's ledger."""
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.members.by_identity("test", who)
        assert found is not None
        assert await repos.ledger.sum_for(found.id) == found.balance
        return found.balance, found.earned


def number(text: str, label: str) -> int:
    """The record number an answer shows after `label` ('Purchase #12', 'Entry #7')."""
    found = re.search(rf"{label} #(\d+)", text)
    assert found is not None, text
    return int(found.group(1))


async def void_entries(chat: ChatDriver) -> int:
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM ledger WHERE reason = 'void'")
    return int(rows[0][0])


async def test_voiding_a_black_card_purchase_takes_everything_back(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "/start", group=False)  # may be messaged privately
    text = await chat.say("boss", "/purchase @alice 12990", group=False)
    assert "Congratulations, Alice, you are now a Black card member!" in text
    purchase_id = number(text, "Purchase")
    assert await totals(chat, "alice") == (12990, 12990)

    text = await chat.say("boss", f"/void purchase {purchase_id}", group=False)
    assert f"Voided purchase #{purchase_id} (¥12990.00) of Alice: took back 12990 points. Balance 0, tier Gold." in text
    assert await totals(chat, "alice") == (0, 0)
    points = await chat.say("alice", "/points", group=False)
    assert "Tier: Gold" in points
    assert "-12990 voided" in points and "adjustment" not in points  # the reversing entry says what it is
    await settle(chat.runtime)
    assert pusher.to("alice")[-1] == (
        "Sorry, a ¥12990.00 purchase was recorded for you by mistake and has been cancelled; its 12990 points were"
        " taken back. You now have 0.\nYour tier is now Gold."
    )
    async with chat.runtime.deps.db.read() as repos:  # the ledger keeps both entries
        entries = await repos.ledger.recent(await member(chat, "alice"))
        assert [e.delta for e in entries] == [-12990, 12990]
        assert (await repos.purchases.summary(await member(chat, "alice"))).count == 0


async def test_a_void_books_once(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    purchase_id = number(await chat.say("boss", "/purchase @alice 100"), "Purchase")
    assert "took back 100 points" in await chat.say("boss", f"/void purchase {purchase_id}")
    assert "was already voided; nothing more was booked" in await chat.say("boss", f"/void purchase #{purchase_id}")
    assert await void_entries(chat) == 1
    assert await totals(chat, "alice") == (0, 0)
    assert "There is no purchase #999." in await chat.say("boss", "/void purchase 999")
    assert "Usage: /void" in await chat.say("boss", "/void purchase x")
    assert "Usage: /void" in await chat.say("boss", "/void")
    refusal = "Sorry, only staff with the manager role can use this command."
    assert await chat.say("alice", f"/void purchase {purchase_id}") == refusal


async def test_statistics_and_segments_forget_a_voided_purchase(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    await chat.say("bob", "hi")
    await chat.say("boss", "/purchase @alice 10")
    second = number(await chat.say("boss", "/purchase @alice 20"), "Purchase")
    only = number(await chat.say("boss", "/purchase @bob 30"), "Purchase")
    deps = chat.runtime.deps
    bounds = segment_bounds(deps.rules.segments, deps.now_ts())
    async with deps.db.read() as repos:
        before = await repos.segments.counts(bounds)
    assert (before.buyers, before.repeat_buyers) == (2, 1)
    assert "Repurchase rate: 50.0% (repeat buyers 1 of 2)" in await chat.say("boss", "/segments")

    await chat.say("boss", f"/void purchase {second}")
    await chat.say("boss", f"/void purchase {only}")
    async with deps.db.read() as repos:
        after = await repos.segments.counts(bounds)
        active = await repos.stats.active_members("2000-01-01", 0)
    assert (after.buyers, after.repeat_buyers) == (1, 0)
    assert after.members["new"] == 1 and after.members["active"] == 0
    assert active == 1  # bob's only purchase was voided
    bob = await member(chat, "bob")
    async with deps.db.read() as repos:
        assert bob in await repos.segments.member_ids(bounds, "never")
    assert "Repurchase rate: 0.0% (repeat buyers 0 of 1)" in await chat.say("boss", "/segments")


async def test_voiding_a_first_purchase_withdraws_the_referral_reward(
    chat: ChatDriver, pusher: RecordingPusher
) -> None:
    match = re.search(r"\?start=ref_([A-Z0-9]+)", await chat.say("alice", "/invite", group=False))
    assert match is not None
    await chat.say("newbie", f"/start ref_{match.group(1)}", group=False)
    text = await chat.say("boss", "/purchase @newbie 10")
    assert "Points: Newbie +50, Alice +100." in text
    assert await totals(chat, "alice") == (100, 100)

    text = await chat.say("boss", f"/void purchase {number(text, 'Purchase')}")
    assert "took back 60 points" in text  # the purchase's 10 and the welcome 50
    assert "the referral reward is withdrawn (Alice gives back 100 points)" in text
    assert await totals(chat, "newbie") == (0, 0)
    assert await totals(chat, "alice") == (0, 0)
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.stats.referrals() == 0
        assert (await repos.referrals.stats(await member(chat, "alice"))).points == 0
    await settle(chat.runtime)
    assert "the referral reward for it (100 points) was taken back. You now have 0." in pusher.to("alice")[-1]
    # The next purchase is no first one: it earns its own points only.
    assert "Referral" not in await chat.say("boss", "/purchase @newbie 20")
    assert await totals(chat, "alice") == (0, 0)


async def test_voiding_an_award(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "/start", group=False)
    text = await chat.say("boss", "/award @alice 700 wrong member", group=False)
    entry = number(text, "Entry")
    assert await totals(chat, "alice") == (700, 700)
    text = await chat.say("boss", f"/void award {entry}", group=False)
    assert f"Voided entry #{entry}: took back 700 points from Alice. Balance 0, tier Gold." in text
    assert await totals(chat, "alice") == (0, 0)
    assert "already voided" in await chat.say("boss", f"/void award {entry}")
    assert await void_entries(chat) == 1
    await settle(chat.runtime)
    assert pusher.to("alice")[-1] == (
        "Sorry, 700 points were given to you by mistake (wrong member) and have been taken back. You now have 0.\n"
        "Your tier is now Gold."
    )
    await chat.say("alice", "/checkin")
    async with chat.runtime.deps.db.read() as repos:
        checkin = (await repos.ledger.recent(await member(chat, "alice"), 1))[0]
    assert f"Entry #{checkin.id} is not an award" in await chat.say("boss", f"/void award {checkin.id}")


async def test_spent_points_are_never_overdrawn(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    entry = number(await chat.say("boss", "/award @alice 100"), "Entry")
    async with chat.runtime.deps.db.transaction() as repos:  # a reward redeemed with 60 of them
        await repos.ledger.append(await member(chat, "alice"), -60, "redeem", "redeem:test", 0, earned_delta=0)
    text = await chat.say("boss", f"/void award {entry}")
    assert "Cannot void: it takes back 100 points from Alice, who has only 40 (60 points already spent)." in text
    assert await totals(chat, "alice") == (40, 100)
    assert await void_entries(chat) == 0
    await chat.say("boss", "/award @alice 60 the redemption undone")
    assert "took back 100 points" in await chat.say("boss", f"/void award {entry}")
    assert await totals(chat, "alice") == (0, 60)
