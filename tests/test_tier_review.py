"""The yearly tier review (off by default): on the review day a member keeps their tier when the points earned in
the 12 months before reach it, and otherwise moves (told kindly) to the tier those points reach; lifetime points
stay, points earned afterwards count in full, and each member is reviewed once a year."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.loyalty.review import run_review
from tests.conftest import ChatDriver, RecordingPusher, local, settle, storage_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        locale="en",
        storage=storage_for(tmp_path / "vip.db", loop_statement_ms=200),
        tier_review={"enabled": True, "month": 1, "day": 1},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(local(2024, 6, 1, 9, 0))


async def earned(runtime: Runtime, who: str) -> int:
    async with runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
        assert member is not None and await repos.ledger.sum_for(member.id) == member.balance
        return member.earned


async def test_review_keeps_or_drops_tiers_by_the_last_12_months(
    chat: ChatDriver, pusher: RecordingPusher, clock: FakeClock
) -> None:
    for name in ("alice", "bob", "carol", "dave"):
        await chat.say(name, "/points", group=False)
    await chat.say("boss", "/award @bob 2000")  # 2024: black
    await chat.say("boss", "/award @carol 700")  # 2024: diamond
    await chat.say("boss", "/award @dave 50")  # 2024: gold, the lowest tier is never reviewed
    clock.set(local(2025, 3, 1, 9, 0))
    await chat.say("boss", "/award @alice 2000")  # black, earned within the 12 months
    await chat.say("boss", "/award @bob 700")  # only enough for diamond within the 12 months

    clock.set(local(2025, 12, 31, 23, 0))
    assert await run_review(chat.runtime.deps) == 0  # 2025 was not reviewed on its day: it waits for 2026
    clock.set(local(2026, 1, 1, 1, 3))
    assert await run_review(chat.runtime.deps) == 3
    assert await run_review(chat.runtime.deps) == 0  # once a year
    clock.set(local(2026, 7, 1, 1, 3))
    assert await run_review(chat.runtime.deps) == 0

    assert "Tier: Black card" in await chat.say("alice", "/points", group=False)
    bob = await chat.say("bob", "/tiers", group=False)
    assert "👉 Diamond: from 600 points (your tier)" in bob
    assert "You are Diamond with 700 tier points." in bob and "1100 more points to Black card" in bob
    assert "Tier: Gold" in await chat.say("carol", "/points", group=False)
    assert await earned(chat.runtime, "bob") == 2700  # lifetime points are not touched

    await settle(chat.runtime)
    assert "so you stay Black card" in pusher.to("alice")[-1]
    told = pusher.to("bob")[-1]
    assert told.startswith("Thank you for being with us!")
    assert "you earned 700, so your tier for now is Diamond" in told
    assert "1100 more points bring Black card back" in told
    assert "you earned 0, so your tier for now is Gold" in pusher.to("carol")[-1]
    assert not any("review" in text or "Thank you" in text for text in pusher.to("dave"))

    clock.set(local(2026, 2, 1, 9, 0))  # points earned after the review count in full
    await chat.say("boss", "/award @bob 1100")
    assert "Tier: Black card" in await chat.say("bob", "/points", group=False)

    clock.set(local(2027, 1, 1, 1, 3))  # next year's review: bob's 1100 of 2026 reach diamond, not black
    assert await run_review(chat.runtime.deps) == 2  # alice (no points in 2026) and bob; carol is gold now
    assert "You are Diamond with 1100 tier points." in await chat.say("bob", "/tiers", group=False)
    assert "Tier: Gold" in await chat.say("alice", "/points", group=False)


async def test_off_by_default(tmp_path: Path, clock: FakeClock) -> None:
    runtime = await Runtime.open(Settings(locale="en", storage=storage_for(tmp_path / "vip.db")), clock)
    try:
        assert runtime.scheduler.get_job("tier_review") is None
        chat = ChatDriver(runtime)
        await chat.say("alice", "hi")
        await chat.say("boss", "/award @alice 2000")
        clock.set(local(2026, 1, 1, 1, 3))
        assert await run_review(runtime.deps) == 0
        assert "Tier: Black card" in await chat.say("alice", "/points", group=False)
    finally:
        await runtime.close()


async def test_the_yearly_job_is_scheduled_when_on(runtime: Runtime) -> None:
    job = runtime.scheduler.get_job("tier_review")
    assert job is not None
    assert all(f"{field}='{value}'" in str(job.trigger) for field, value in (("month", 1), ("day", 1), ("hour", 1)))


GROUP_BUY = "/groupbuy add Tea set | price=300 group_price=199 min=3 deadline=2026-03-12 20:00"


async def _opened(path: Path, clock: FakeClock, *, reviewed: bool) -> Runtime:
    return await Runtime.open(
        Settings(
            locale="en",
            storage=storage_for(path, loop_statement_ms=200),
            tier_review={"enabled": reviewed, "month": 1, "day": 1},
            groupbuy={"no_deposit_tiers": ["black"]},  # by default diamond joins without a deposit too
        ),
        clock,
    )


@pytest.mark.parametrize("reviewed", [True, False], ids=["review_on", "review_turned_off"])
async def test_the_reviewed_tier_decides_everywhere(
    tmp_path: Path, clock: FakeClock, reviewed: bool
) -> None:
    """After bob's review (black -> diamond) sales, announcements, group buys, /me and /member follow his
    reviewed tier; with the review turned off again lifetime points decide, as before the review."""
    path = tmp_path / "vip.db"
    runtime = await _opened(path, clock, reviewed=True)
    try:
        chat = ChatDriver(runtime)
        for name in ("alice", "bob"):
            await chat.say(name, "/points", group=False)  # private: both can be messaged
        await chat.say("boss", "/award @bob 2000")  # 2024: black
        clock.set(local(2025, 3, 1, 9, 0))
        await chat.say("boss", "/award @alice 2000")  # black within the 12 months
        await chat.say("boss", "/award @bob 700")  # diamond within the 12 months
        clock.set(local(2026, 1, 1, 1, 3))
        assert await run_review(runtime.deps) == 2
    finally:
        await runtime.close()

    clock.set(local(2026, 3, 10, 9, 0))
    runtime = await _opened(path, clock, reviewed=reviewed)
    try:
        chat = ChatDriver(runtime, _ids=itertools.count(1000))  # message keys the first run has not seen
        runtime.outbox.register(RecordingPusher())  # a channel that can push: announcements count recipients
        tier = "Diamond" if reviewed else "Black card"
        assert f"Tier: {tier}\n" in await chat.say("bob", "/me")
        card = await chat.say("boss", "/member @bob", group=False)
        assert "(2700 earned in all)" in card
        assert (
            "Tier: Diamond, 1100 more points to Black card" if reviewed else "Tier: Black card (the top tier)"
        ) in card

        announced = await chat.say("boss", "/announce --tier black Black card evening")
        assert ("queued for 1 recipient." if reviewed else "queued for 2 recipients.") in announced

        await chat.say("boss", GROUP_BUY)
        joined = await chat.say("bob", "/groupbuy join 1")
        assert ("Please leave a deposit of ¥19.90" in joined) is reviewed

        start = local(2026, 3, 20, 10, 0)
        await chat.say("boss", "/sale add Cup | price=9 stock=3 start=2026-03-20 10:00 limit=1")
        await chat.say("boss", "/sale add Mug | price=9 stock=3 start=2026-03-20 10:00 limit=1 tier=black")
        clock.set(start - timedelta(minutes=10))  # black's early access; diamond's opens 5 minutes later
        early = await chat.say("bob", "/claim 1")
        assert ("Not yet! You can claim from 2026-03-20 09:55" in early) is reviewed
        assert ("You got" in early) is not reviewed
        clock.set(start)
        claimed = await chat.say("bob", "/claim 2")
        assert ("for Black card members and above" in claimed) is reviewed
        assert ("You got" in claimed) is not reviewed
    finally:
        await runtime.close()


async def test_a_merge_carries_the_standing_over(chat: ChatDriver) -> None:
    """Merging two members (TierReviewRepo.move) adds what the review set aside of the absorbed member's points
    to the member they join, whose tier points are then the sum of both; the absorbed member's row goes."""
    for name in ("alice", "bob"):
        await chat.say(name, "/points", group=False)
    async with chat.runtime.deps.db.transaction() as repos:
        alice = await repos.members.by_identity("test", "alice")
        bob = await repos.members.by_identity("test", "bob")
        assert alice is not None and bob is not None
        await repos.conn.execute(
            "INSERT INTO tier_standing(member_id, discount, reviewed_at) VALUES (?, 300, 1), (?, 200, 2)",
            (alice.id, bob.id),
        )
        await repos.tier_reviews.move(bob.id, alice.id)
        assert await repos.tier_reviews.discount(alice.id) == 500
        assert await repos.tier_reviews.discount(bob.id) == 0
        await repos.tier_reviews.move(alice.id, bob.id)  # into a member without a standing
        assert await repos.tier_reviews.discount(bob.id) == 500
        assert await repos.tier_reviews.discount(alice.id) == 0
        member = await repos.members.get(bob.id)
        assert member is not None and member.discount == 500
