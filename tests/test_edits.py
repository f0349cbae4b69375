"""Correcting what staff created by mistake: a flash sale edited before it opens (its promos planned anew), a
group buy edited before anyone joined, a poll deleted before its first answer."""

from __future__ import annotations

from datetime import timedelta

from handlers.core.clock import FakeClock
from handlers.core.kinds import SubjectKind
from handlers.group_buys.commands import live_posts
from handlers.shared.broadcast import LivePost
from tests.conftest import ChatDriver, RecordingPusher, local, settle

SALE = "/sale add Jade teapot | price=99 stock=3 start=2026-03-20 10:00"
START = local(2026, 3, 20, 10, 0)
MOVED = local(2026, 3, 21, 10, 0)


async def pending_of_sale(chat: ChatDriver, sale_id: int) -> list[tuple[str, int]]:
    async with chat.runtime.deps.db.read() as repos:
        return [(a.kind, a.due_at) for a in await repos.announcements.pending(subject=(SubjectKind.SALE, sale_id))]


async def test_a_sale_edited_before_it_opens_is_planned_anew(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "hi")
    await chat.say("boss", SALE)
    before = await pending_of_sale(chat, 1)
    assert ("sale_start", int(START.timestamp())) in before

    text = await chat.say("boss", "/sale edit 1 price=79 stock=5 start=2026-03-21 10:00")
    assert "Flash sale #1 changed: Jade teapot, ¥79.00, stock 5, starting 2026-03-21 10:00." in text
    assert "· 5 days ahead: 2026-03-16 10:00" in text
    assert "· Black card early access: 2026-03-21 09:50" in text
    after = await pending_of_sale(chat, 1)
    assert ("sale_start", int(MOVED.timestamp())) in after
    assert ("sale_start", int(START.timestamp())) not in after
    assert len(after) == len(before)

    clock.set(START)  # the old start: nothing is posted
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert not any("Members' flash sale #1" in t for t in pusher.to("group"))
    clock.set(MOVED)
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    post = pusher.to("group")[-1]
    assert "Members' flash sale #1: Jade teapot" in post and "¥79.00" in post and "5/5 left" in post


async def test_a_sale_cannot_be_edited_once_open_or_wrongly(chat: ChatDriver, clock: FakeClock) -> None:
    await chat.say("boss", SALE)
    assert "Usage: /sale edit" in await chat.say("boss", "/sale edit 1")
    assert "Usage: /sale edit" in await chat.say("boss", "/sale edit 1 price=abc")
    assert "Usage: /sale edit" in await chat.say("boss", "/sale edit 1 colour=red")
    assert "The end must come after the start." in await chat.say("boss", "/sale edit 1 end=2026-03-19 10:00")
    assert "at least a 5-day lead" in await chat.say("boss", "/sale edit 1 start=2026-03-12 10:00")
    assert "There is no active flash sale #7." in await chat.say("boss", "/sale edit 7 price=1")
    refusal = "Sorry, only staff with the manager role can use this command."
    assert await chat.say("alice", "/sale edit 1 price=1") == refusal
    clock.set(START - timedelta(minutes=9))  # black card early access opened at 09:50
    assert "can no longer be edited" in await chat.say("boss", "/sale edit 1 price=1")
    async with chat.runtime.deps.db.read() as repos:
        sale = await repos.sales.get(1)
    assert sale is not None and sale.price_fen == 9900


async def test_a_poll_is_deleted_before_its_first_answer_only(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("ann", "hi")
    await chat.say("boss", "/poll rating Wrong question? --hours 24")
    await settle(chat.runtime)
    text = await chat.say("boss", "/poll delete 1")
    assert 'Poll #1 ("Wrong question?") deleted: it takes no answers, and 1 group post of it is being deleted.' in text
    assert "is closed" in await chat.say("ann", "/vote 1 4")
    assert "does not exist or is closed already" in await chat.say("boss", "/poll delete 1")
    clock.advance(timedelta(hours=25))  # its closing was unplanned: no results are posted
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert not any("Results of poll #1" in t for t in pusher.to("group"))

    await chat.say("boss", "/poll rating How was your visit? --hours 24")
    assert "Your answer: 4" in await chat.say("ann", "/vote 2 4")
    assert "can no longer be deleted: it was answered already" in await chat.say("boss", "/poll delete 2")
    assert "There is no poll #9." in await chat.say("boss", "/poll delete 9")
    async with chat.runtime.deps.db.read() as repos:
        answered = await repos.polls.get(2)
    assert answered is not None and answered.state == "open"


GROUP_BUY = "/groupbuy add Tea set | price=300 group_price=199 min=3 deadline=2026-03-12 20:00"


async def test_a_group_buy_is_edited_before_anyone_joined(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("ann", "/start", group=False)
    await chat.say("boss", GROUP_BUY)
    await settle(chat.runtime)
    text = await chat.say("boss", "/groupbuy edit 1 group_price=179 min=2 deadline=2026-03-13 20:00")
    assert "Group buy #1 changed: Tea set, ¥300.00, group price ¥179.00, minimum to succeed: 2" in text
    assert "deadline 2026-03-13 20:00" in text
    await chat.runtime.outbox.edit_posts(await group_buy_posts(chat))
    assert "group price ¥179.00" in pusher.edits[-1][2]  # the post follows
    async with chat.runtime.deps.db.read() as repos:
        pending = await repos.announcements.pending(subject=(SubjectKind.GROUP_BUY, 1))
    assert [a.due_at for a in pending] == [int(local(2026, 3, 13, 20, 0).timestamp())]

    assert "1 more needed" in await chat.say("ann", "/groupbuy join 1")
    assert "can no longer be edited" in await chat.say("boss", "/groupbuy edit 1 price=350")
    assert "Usage: /groupbuy edit" in await chat.say("boss", "/groupbuy edit 1 group_price=400")
    refusal = "Sorry, only staff with the manager role can use this command."
    assert await chat.say("ann", "/groupbuy edit 1 price=1") == refusal
    clock.set(local(2026, 3, 12, 20, 0))  # the old deadline settles nothing
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    async with chat.runtime.deps.db.read() as repos:
        buy = await repos.group_buys.get(1)
    assert buy is not None and buy.state == "open" and buy.group_price_fen == 17900


async def group_buy_posts(chat: ChatDriver) -> list[LivePost]:
    return await live_posts(chat.runtime.deps)
