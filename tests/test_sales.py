"""Flash sales: the promo rule, early access by tier, window edges, limits, stock, codes, holds, posts."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import timedelta

from handlers.core.clock import FakeClock
from handlers.sales.commands import expire_holds, live_posts
from tests.conftest import SHANGHAI, ChatDriver, RecordingPusher, local, settle

SALE = "/sale add Jade teapot | price=99 stock=3 start=2026-03-20 10:00"
START = local(2026, 3, 20, 10, 0)


async def customers(chat: ChatDriver) -> None:
    """gold (reachable privately), diamond, black; all in the VIP group."""
    await chat.say("gold", "/start", group=False)
    await chat.say("diamond", "hi")
    await chat.say("black", "hi")
    await chat.say("boss", "/award @diamond 600")
    await chat.say("boss", "/award @black 1800")


async def claimed(chat: ChatDriver, sale_id: int = 1) -> int:
    async with chat.runtime.deps.db.read() as repos:
        sale = await repos.sales.get(sale_id)
    assert sale is not None
    return sale.sold


async def test_creating_a_sale_plans_promos_early_access_and_the_start_post(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await customers(chat)
    text = await chat.say("boss", SALE)
    assert "Flash sale #1 created: Jade teapot, ¥99.00, stock 3, starting 2026-03-20 10:00." in text
    assert "· 5 days ahead: 2026-03-15 10:00" in text
    assert "· Black card early access: 2026-03-20 09:50" in text
    assert "· Diamond early access: 2026-03-20 09:55" in text
    assert "· starts and is posted in the groups: 2026-03-20 10:00" in text
    clock.set(START - timedelta(minutes=10))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert len(pusher.to("black")) == 0  # black can't be messaged privately (never /start-ed)
    clock.set(START)
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    post = pusher.to("group")[-1]
    assert "Members' flash sale #1: Jade teapot" in post and "3/3 left" in post
    assert pusher.buttons[-1] == ("v1:claim:1",)


async def test_the_five_day_rule_applies_to_sales(chat: ChatDriver, pusher: RecordingPusher) -> None:
    text = await chat.say("boss", "/sale add Cup | price=9 stock=5 start=2026-03-12 10:00")
    assert "at least a 5-day lead" in text and "Usage: /sale add" in text
    text = await chat.say("boss", "/sale add Cup | price=9 stock=5 start=2026-03-12 10:00 --force")
    assert "Flash sale #1 created" in text and "bending the rule" in text


async def test_early_access_by_tier_and_window_edges(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await customers(chat)
    await chat.say("boss", SALE.replace("stock=3", "stock=10") + " end=2026-03-20 11:00")
    clock.set(START - timedelta(minutes=10, seconds=1))
    assert "Not yet! You can claim from 2026-03-20 09:50" in await chat.say("black", "抢 1")
    clock.set(START - timedelta(minutes=10))
    assert "You got" in await chat.say("black", "抢 1")
    assert "Not yet! You can claim from 2026-03-20 09:55" in await chat.say("diamond", "/claim 1")
    assert "Not yet! You can claim from 2026-03-20 10:00" in await chat.say("gold", "/claim 1")
    clock.set(START - timedelta(minutes=5))
    assert "You got" in await chat.say("diamond", "秒杀 1")
    clock.set(START)
    assert "You got" in await chat.say("gold", "/claim 1")
    clock.set(local(2026, 3, 20, 11, 0))
    assert "has ended" in await chat.say("newbie", "/claim 1")
    assert await claimed(chat) == 3


async def test_limits_tier_membership_and_sold_out(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    await customers(chat)
    await chat.say("boss", "/sale add Cup | price=9 stock=3 start=2026-03-20 10:00 limit=2 tier=diamond")
    clock.set(START)
    assert "for Diamond members and above" in await chat.say("gold", "/claim 1")
    assert "You got" in await chat.say("diamond", "/claim 1")
    assert "You got" in await chat.say("diamond", "/claim 1")
    assert "You already have 2" in await chat.say("diamond", "/claim 1")
    chat.port.outsiders.add("black")
    assert "for members of the VIP group only" in await chat.say("black", "/claim 1", group=False)
    chat.port.outsiders.clear()
    assert "You claimed" in await chat.say("black", "/claim 1", group=False)
    assert "sold out" in await chat.say("black", "/claim 1")
    assert "There is no active flash sale #7" in await chat.say("black", "/claim 7")
    assert "Usage: /claim" in await chat.say("black", "/claim")
    assert await claimed(chat) == 3


async def test_concurrent_claims_never_oversell(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    names = [f"m{n}" for n in range(200)]
    for name in names:
        await chat.say(name, "hi")
    await chat.say("boss", "/sale add Cup | price=9 stock=20 start=2026-03-20 10:00 limit=2")
    clock.set(START)
    texts = await asyncio.gather(*(chat.say(name, "/claim 1") for name in names))
    assert sum("You got" in t for t in texts) == 20 and sum("sold out" in t for t in texts) == 180
    texts = await asyncio.gather(*(chat.say("solo", "/claim 1") for _ in range(50)))
    assert not any("You got" in t for t in texts)  # nothing left for solo
    await chat.say("boss", "/sale add Mug | price=5 stock=100 start=2026-03-26 10:00 limit=2")
    clock.set(local(2026, 3, 26, 10, 0))
    texts = await asyncio.gather(*(chat.say("solo", "/claim 2") for _ in range(50)))
    assert sum("You got" in t for t in texts) == 2 and sum("You already have 2" in t for t in texts) == 48
    async with chat.runtime.deps.db.read() as repos:
        claims = await repos.sales.claims(2)
    assert sorted(c.unit for c in claims) == [1, 2]


async def test_codes_are_never_for_the_group(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await customers(chat)
    await chat.say("boss", SALE)
    clock.set(START)
    reachable = await chat.replies("gold", "/claim 1")
    assert "code was sent to you privately" in reachable[0].text
    assert reachable[1].secret and "Your code: S-" in reachable[1].text
    unreachable = await chat.replies("diamond", "/claim 1")
    assert unreachable[1].secret and unreachable[1].mention is None  # the channel holds it for their private chat
    in_private = await chat.replies("black", "/claim 1", group=False)
    assert len(in_private) == 1 and "Your code: S-" in in_private[0].text


async def test_status_export_release_paid_and_cancel(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await customers(chat)
    await chat.say("boss", SALE)
    clock.set(START)
    first = (await chat.replies("gold", "/claim 1"))[1].text.split("Your code: ")[1].split("\n")[0]
    second = (await chat.replies("diamond", "/claim 1"))[1].text.split("Your code: ")[1].split("\n")[0]
    status = await chat.say("boss", "/sale status 1")
    assert "2 sold, 1/3 left; members who claimed: 2" in status and f"{first} Gold (awaiting payment)" in status
    assert f"Code {first} marked as paid." in await chat.say("boss", f"/sale paid {first}")
    assert f"Code {second} released" in await chat.say("boss", f"/sale release {second.lower()}")
    assert await claimed(chat) == 1
    assert "There is no open claim with code S-XXXX" in await chat.say("boss", "/sale release S-XXXX")
    (export,) = await chat.replies("boss", "/sale export 1")
    assert export.document is not None and export.document[0] == "sale-1-claims.csv"
    rows = list(csv.reader(io.StringIO(export.document[1].decode("utf-8-sig"))))
    assert rows[0][:5] == ["code", "member_id", "member", "unit", "state"]
    assert {(r[0], r[4]) for r in rows[1:]} == {(first, "paid"), (second, "released")}
    text = await chat.say("boss", "/sale cancel 1")
    assert "Flash sale #1 (Jade teapot) cancelled; unpaid codes released: 0." in text
    assert "There is no active flash sale #1" in await chat.say("black", "/claim 1")


async def test_unpaid_claims_are_released_after_the_hold_time(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await customers(chat)
    await chat.say("boss", SALE + " hold=15")
    clock.set(START)
    await chat.say("gold", "/claim 1")
    paid = (await chat.replies("diamond", "/claim 1"))[1].text.split("Your code: ")[1].split("\n")[0]
    await chat.say("boss", f"/sale paid {paid}")
    clock.advance(timedelta(minutes=14, seconds=59))
    assert await expire_holds(chat.runtime.deps) == 0
    clock.advance(timedelta(seconds=1))
    assert await expire_holds(chat.runtime.deps) == 1
    assert await claimed(chat) == 1
    await settle(chat.runtime)
    assert any("was not paid in time" in t for t in pusher.to("gold"))


async def test_the_group_post_shows_live_stock(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    await customers(chat)
    await chat.say("boss", SALE)
    clock.set(START)
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert await chat.runtime.outbox.edit_posts(await live_posts(chat.runtime.deps)) == 1  # first sync
    for who in ("gold", "diamond"):
        await chat.say(who, "/claim 1")
    assert await chat.runtime.outbox.edit_posts(await live_posts(chat.runtime.deps)) == 1
    assert "1/3 left" in pusher.edits[-1][2]
    assert await chat.runtime.outbox.edit_posts(await live_posts(chat.runtime.deps)) == 0  # nothing changed
    await chat.say("black", "/claim 1")
    await chat.runtime.outbox.edit_posts(await live_posts(chat.runtime.deps))
    assert "Sold out (all 3)" in pusher.edits[-1][2]


async def test_bad_sale_commands(chat: ChatDriver, pusher: RecordingPusher) -> None:
    at = "start=2026-03-20 10:00"
    bad_commands = [
        "", "add", "add Cup", f"add | price=1 stock=1 {at}", f"add Cup | price=abc stock=1 {at}",
        f"add Cup | price=1 stock=0 {at}", "add Cup | price=1 stock=1 start=tomorrow",
        f"add Cup | price=1 stock=1 {at} tier=gods", f"add Cup | price=1 stock=1 {at} limit=0",
        "add Cup | price=1 stock=1", "status x",
    ]  # fmt: skip
    for bad in bad_commands:
        assert "Usage: /sale" in await chat.say("boss", f"/sale {bad}"), bad
    assert "The end must come after the start" in await chat.say(
        "boss", "/sale add Cup | price=1 stock=1 start=2026-03-20 10:00 end=2026-03-20 09:00"
    )
    assert "only staff" in await chat.say("alice", "/sale status 1")
    assert SHANGHAI is not None


async def test_a_sale_starting_soon_counts_down_in_minutes_and_one_within_minutes_gets_no_promo_first(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await customers(chat)
    now = clock.now().astimezone(SHANGHAI)
    soon = (now + timedelta(minutes=40)).strftime("%Y-%m-%d %H:%M")
    replies = await chat.replies("boss", f"/sale add Cup | price=9 stock=5 start={soon} --force")
    assert len(replies) == 1 and "bending the rule" in replies[0].text  # one message, not two
    await settle(chat.runtime)
    assert len(pusher.to("group")) == 1 and "in 40 minutes" in pusher.to("group")[0]  # not "in 1 hours"
    pusher.pushes.clear()
    imminent = (now + timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M")
    replies = await chat.replies("boss", f"/sale add Mug | price=9 stock=5 start={imminent} --force")
    assert len(replies) == 1 and "Flash sale #2 created" in replies[0].text
    assert "bending the rule" not in replies[0].text and "· now:" not in replies[0].text
    await settle(chat.runtime)
    assert pusher.to("group") == []  # the post at the start is its announcement
    clock.set(now + timedelta(minutes=3))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert [t for t in pusher.to("group") if "Members' flash sale #2: Mug" in t]
