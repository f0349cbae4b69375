"""RFM segments: exact day edges, every member in one segment, /segments and /segment for staff, the
announcement audience helper, and win-back care messages once per segment entry."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.core.deps import Deps
from handlers.core.rules import SegmentRules
from handlers.segments.commands import segment_audience, segment_bounds, segment_member_ids, winback
from storage.segments import SEGMENTS
from tests.conftest import ChatDriver, RecordingPusher, local, settle

_keys = itertools.count(1)
NOW = local(2026, 3, 10, 9, 0)
NOW_TS = int(NOW.timestamp())


async def member(chat: ChatDriver, who: str, *, private: bool = False) -> int:
    await chat.say(who, "/start" if private else "hi", group=not private)
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.members.by_identity("test", who)
    assert found is not None
    return found.id


async def buy(runtime: Runtime, member_id: int, *when: datetime) -> None:
    async with runtime.deps.db.transaction() as repos:
        for instant in when:
            await repos.purchases.record(member_id, 9900, "", f"seg:{next(_keys)}", int(instant.timestamp()), None)


async def segment_of(runtime: Runtime, member_id: int) -> str:
    """The one segment holding the member (fails if none or several do)."""
    rules = runtime.deps.rules.segments
    async with runtime.deps.db.read() as repos:
        holding = [s for s in SEGMENTS if member_id in await segment_member_ids(repos, rules, s, runtime.deps.now_ts())]
    assert len(holding) == 1, holding
    return holding[0]


def with_winback(deps: Deps, on: bool = True) -> Deps:
    return replace(deps, rules=deps.rules.model_copy(update={"segments": SegmentRules(winback=on)}))


# --- classification ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("purchases", "age", "expected"),
    [
        (0, None, "never"),
        (1, timedelta(0), "new"),
        (1, timedelta(days=45), "new"),
        (1, timedelta(days=45, seconds=1), "cooling"),
        (2, timedelta(days=45), "active"),
        (2, timedelta(days=45, seconds=1), "cooling"),
        (3, timedelta(days=90, seconds=-1), "cooling"),
        (1, timedelta(days=90), "dormant_high"),
        (2, timedelta(days=90), "dormant_high"),
        (1, timedelta(days=180, seconds=-1), "dormant_high"),
        (1, timedelta(days=180), "dormant_low"),
        (2, timedelta(days=360), "dormant_low"),
        (1, timedelta(days=360, seconds=1), "lost"),
        (5, timedelta(days=800), "lost"),
    ],
)
async def test_known_histories_fall_in_one_segment(
    chat: ChatDriver, clock: FakeClock, purchases: int, age: timedelta | None, expected: str
) -> None:
    alice = await member(chat, "alice")
    if age is not None:
        # Earlier purchases a year apart; only the count and the last one matter.
        await buy(chat.runtime, alice, *(NOW - age - timedelta(days=365 * k) for k in range(purchases)))
    assert await segment_of(chat.runtime, alice) == expected


async def test_one_purchase_travels_through_the_segments_at_exact_day_edges(chat: ChatDriver, clock: FakeClock) -> None:
    alice = await member(chat, "alice")
    bought = NOW
    await buy(chat.runtime, alice, bought)
    second = timedelta(seconds=1)
    walk = [
        (timedelta(0), "new"),
        (timedelta(days=45), "new"),
        (timedelta(days=45) + second, "cooling"),
        (timedelta(days=90) - second, "cooling"),
        (timedelta(days=90), "dormant_high"),
        (timedelta(days=180) - second, "dormant_high"),
        (timedelta(days=180), "dormant_low"),
        (timedelta(days=360), "dormant_low"),
        (timedelta(days=360) + second, "lost"),
    ]
    for age, expected in walk:
        clock.set(bought + age)
        assert await segment_of(chat.runtime, alice) == expected, age


async def test_bounds_follow_the_configured_days(chat: ChatDriver) -> None:
    rules = SegmentRules(new_days=30, active_days=60, dormant_high_days=(100, 200), dormant_low_days=(200, 400),
                         lost_days=400)  # fmt: skip
    bounds = segment_bounds(rules, 1_000_000_000)
    day = 86_400
    assert bounds.new_since == 1_000_000_000 - 30 * day
    assert bounds.active_since == 1_000_000_000 - 60 * day
    assert bounds.dormant_high_until == 1_000_000_000 - 100 * day
    assert bounds.dormant_low_until == 1_000_000_000 - 200 * day
    assert bounds.lost_before == 1_000_000_000 - 400 * day


async def test_member_ids_accept_dashes_and_reject_unknown_names(chat: ChatDriver) -> None:
    alice, bob = await member(chat, "alice"), await member(chat, "bob")
    await buy(chat.runtime, alice, NOW - timedelta(days=100))
    rules = chat.runtime.deps.rules.segments
    async with chat.runtime.deps.db.read() as repos:
        assert await segment_member_ids(repos, rules, "dormant-high", NOW_TS) == [alice]
        assert await segment_member_ids(repos, rules, "never", NOW_TS) == [bob]
        with pytest.raises(ValueError):
            await segment_member_ids(repos, rules, "vip", NOW_TS)


async def test_segment_audience_and_size_select_the_same_members(chat: ChatDriver) -> None:
    alice, bob, carol = await member(chat, "alice"), await member(chat, "bob"), await member(chat, "carol")
    await buy(chat.runtime, alice, NOW - timedelta(days=100))
    await buy(chat.runtime, carol, NOW - timedelta(days=120), NOW - timedelta(days=95))
    rules = chat.runtime.deps.rules.segments
    bounds = segment_bounds(rules, NOW_TS)
    expected = {"dormant_high": [alice, carol], "never": [bob]}
    async with chat.runtime.deps.db.read() as repos:
        for segment in SEGMENTS:
            audience = segment_audience(rules, segment.replace("_", "-"), NOW_TS)
            rows = await repos.conn.execute_fetchall(
                f"SELECT member_id FROM ({audience.sql}) ORDER BY 1", audience.params
            )
            assert [r[0] for r in rows] == expected.get(segment, []), segment
            assert await repos.segments.size(bounds, segment) == len(expected.get(segment, [])), segment
    with pytest.raises(ValueError):
        segment_audience(rules, "vip", NOW_TS)


# --- staff commands -------------------------------------------------------------------------------------
async def test_segments_shows_counts_per_segment(chat: ChatDriver) -> None:
    ids = [await member(chat, name) for name in ("alice", "bob", "carol", "dave", "erin")]
    await chat.say("boss", "hi")  # staff are members too: one more who never bought
    await buy(chat.runtime, ids[0], NOW - timedelta(days=3))
    await buy(chat.runtime, ids[1], NOW - timedelta(days=50), NOW - timedelta(days=10))
    await buy(chat.runtime, ids[2], NOW - timedelta(days=120))
    await buy(chat.runtime, ids[3], NOW - timedelta(days=200))
    text = await chat.say("boss", "/segments")
    assert "Segments by recorded purchases, 2026-03-10 (6 members)" in text
    assert "• New (1 purchase, within 45 days): 1 (16.7%)" in text
    assert "• Active (2+ purchases, the last within 45 days): 1 (16.7%)" in text
    assert "• Cooling (last purchase more than 45 and under 90 days ago): 0 (0.0%)" in text
    assert "• Dormant-high (last purchase 90 to under 180 days ago, easy to win back): 1 (16.7%)" in text
    assert "• Dormant-low (last purchase 180 to 360 days ago, harder to win back): 1 (16.7%)" in text
    assert "• Lost (no purchase for more than 360 days): 0 (0.0%)" in text
    assert "• Never bought (no purchase recorded): 2 (33.3%)" in text
    assert "Repurchase rate: 25.0% (repeat buyers 1 of 4)" in text
    assert await chat.say("alice", "/segments") == "Sorry, only staff with the manager role can use this command."


async def test_segment_lists_members_twenty_per_page(chat: ChatDriver) -> None:
    runtime = chat.runtime
    now = int(NOW.timestamp())
    async with runtime.deps.db.transaction() as repos:
        for n in range(25):
            member_id, _ = await repos.members.register("test", f"m{n}", f"Member {n}", None, now)
            # Member n last bought 100 + n days ago (dormant_high), twice.
            for k, days in enumerate((300, 100 + n)):
                await repos.purchases.record(member_id, 100, "", f"p{n}:{k}", now - days * 86_400, None)
    first = await chat.say("boss", "/segment dormant-high")
    lines = first.splitlines()
    assert lines[0] == "Dormant-high: 25 members, page 1 of 2 (last purchase first):"
    assert lines[1] == "1. #1 Member 0: last purchase 2025-11-30 (100 days ago), 2 purchases"
    assert len([line for line in lines if "purchases" in line]) == 20
    assert lines[-1] == "Next page: /segment dormant_high 2"
    second = (await chat.say("boss", "/segment Dormant-high 2")).splitlines()
    assert second[0] == "Dormant-high: 25 members, page 2 of 2 (last purchase first):"
    assert second[1].startswith("21. #21 Member 20: last purchase")
    assert len(second) == 6
    assert await chat.say("boss", "/segment dormant_high 3") == "There is no page 3: Dormant-high has 2 pages."
    assert await chat.say("boss", "/segment lost") == "No members in segment Lost right now."
    never = await chat.say("boss", "/segment never")
    assert "Never bought: 1 member," in never and "1. #26 Boss" in never
    usage = await chat.say("boss", "/segment vip")
    assert usage.startswith("Usage: /segment <name> [page]") and "dormant_high" in usage
    assert (await chat.say("boss", "/segment new 0")).startswith("Usage:")


# --- win-back ----------------------------------------------------------------------------------------------
async def test_winback_sends_once_per_segment_entry(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    runtime = chat.runtime
    deps = with_winback(runtime.deps)
    alice = await member(chat, "alice", private=True)
    await buy(runtime, alice, NOW)

    async def run_at(age: timedelta) -> int:
        clock.set(NOW + age)
        sent = await winback(deps)
        await settle(runtime)
        return sent

    assert await run_at(timedelta(days=89)) == 0
    assert await run_at(timedelta(days=90)) == 1
    assert await run_at(timedelta(days=91)) == 0
    assert await run_at(timedelta(days=179)) == 0
    assert await run_at(timedelta(days=180)) == 1  # dormant_low is a new entry
    assert await run_at(timedelta(days=300)) == 0
    texts = pusher.to("alice")
    assert len(texts) == 2
    assert texts[0].startswith("Hi Alice, we have missed you! It has been 90 days")
    assert texts[1].startswith("Hi Alice, it has been a long time (180 days)")

    # A new purchase makes her active; dormant again later is a new entry.
    await buy(runtime, alice, NOW + timedelta(days=300))
    assert await run_at(timedelta(days=301)) == 0
    async with runtime.deps.db.read() as repos:
        entry = await repos.segments.entry_of(alice)
    assert entry is not None and entry[0] == "active"
    assert await run_at(timedelta(days=300 + 90)) == 1
    assert await run_at(timedelta(days=300 + 95)) == 0
    assert len(pusher.to("alice")) == 3


async def test_winback_waits_for_members_who_cannot_be_reached(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    runtime = chat.runtime
    deps = with_winback(runtime.deps)
    bob = await member(chat, "bob")  # only seen in the group: cannot be messaged privately
    carol = await member(chat, "carol", private=True)
    await chat.say("carol", "/notify off", group=False)
    await buy(runtime, bob, NOW)
    await buy(runtime, carol, NOW)
    clock.set(NOW + timedelta(days=100))
    assert await winback(deps) == 0
    assert await winback(replace(deps, rules=runtime.deps.rules)) == 0  # off by default
    await chat.say("bob", "/start", group=False)
    clock.set(NOW + timedelta(days=101))
    assert await winback(deps) == 1
    await settle(runtime)
    assert len(pusher.to("bob")) == 1 and pusher.to("carol") == []
    assert await winback(deps) == 0
