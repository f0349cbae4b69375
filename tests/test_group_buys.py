"""Group buys: the post with a join button, deposits by tier, success and failure at the deadline."""

from __future__ import annotations

from datetime import timedelta

from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, RecordingPusher, local, settle

GROUP_BUY = "/groupbuy add Tea set | price=300 group_price=199 min=3 deadline=2026-03-12 20:00"
DEADLINE = local(2026, 3, 12, 20, 0)


async def people(chat: ChatDriver, names: list[str]) -> None:
    for name in names:
        await chat.say(name, "/start", group=False)


async def test_opening_posts_with_a_join_button(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("bob", "hi")
    text = await chat.say("boss", GROUP_BUY)
    assert "Group buy #1 opened: Tea set, deadline 2026-03-12 20:00." in text
    await settle(chat.runtime)
    (post,) = pusher.to("group")
    assert "Usual price ¥300.00, group price ¥199.00" in post and "0 joined, 3 more needed" in post
    assert pusher.buttons[0] == ("v1:groupbuy:join 1",)


async def test_deposits_by_tier_and_success_at_the_deadline(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await people(chat, ["ann", "ben", "cat"])
    await chat.say("boss", "/award @cat 600")  # diamond: no deposit
    await chat.say("boss", GROUP_BUY)
    assert "2 more needed. Please leave a deposit of ¥19.90" in await chat.say("ann", "团购 join 1")
    assert "already in the group buy" in await chat.say("ann", "/groupbuy join 1")
    button = chat.inbound("ben", "")
    pressed = await chat.runtime.dispatcher.handle(
        type(button)(**{**{f: getattr(button, f) for f in button.__slots__}, "button": "v1:groupbuy:join 1"}),
        chat.port,
    )
    assert "1 more needed" in pressed[0].text
    assert "it's on! Your tier joins without a deposit." in await chat.say("cat", "/groupbuy join 1")
    assert "#1 Tea set at ¥199.00, 0 more needed" in await chat.say("dan", "/groupbuy list")
    clock.set(DEADLINE - timedelta(seconds=1))
    await chat.runtime.planner.fire()
    clock.set(DEADLINE)
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert any('Group buy #1 "Tea set" is on! 3 joined' in t for t in pusher.to("group"))
    for name in ("ann", "ben", "cat"):
        (personal,) = [t for t in pusher.to(name) if "your code: G-" in t]
        assert "Group price ¥199.00" in personal
    status = await chat.say("ann", "/groupbuy status 1")
    assert "succeeded" in status and "Your group buy code: G-" in status
    assert "closed or does not exist" in await chat.say("dan", "/groupbuy join 1")


async def test_failure_at_the_deadline_tells_everyone(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await people(chat, ["ann"])
    await chat.say("boss", GROUP_BUY)
    await chat.say("ann", "/groupbuy join 1")
    clock.set(DEADLINE + timedelta(hours=9))  # even when the bot was down long, the deadline is settled
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert any("did not reach its minimum (1/3)" in t for t in pusher.to("group"))
    assert any("Nobody is charged" in t for t in pusher.to("ann"))
    assert "did not reach its minimum" in await chat.say("ann", "/groupbuy status 1")


async def test_cancel_and_bad_input(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await people(chat, ["ann"])
    assert "only staff" in await chat.say("ann", GROUP_BUY)
    await chat.say("boss", GROUP_BUY)
    await chat.say("ann", "/groupbuy join 1")
    assert "Group buy #1 (Tea set) cancelled; 1 member was told." in await chat.say("boss", "/groupbuy cancel 1")
    await settle(chat.runtime)
    assert any("is cancelled. Nobody is charged" in t for t in pusher.to("ann"))
    assert "No group buys are open" in await chat.say("ann", "/groupbuy")
    assert "cannot be above the usual price" in await chat.say(
        "boss", "/groupbuy add Set | price=100 group_price=120 min=3 deadline=2026-03-12 20:00"
    )
    assert "is in the past" in await chat.say(
        "boss", "/groupbuy add Set | price=100 group_price=90 min=3 deadline=2026-03-01 20:00"
    )
    for bad in ("/groupbuy add", "/groupbuy add Set | price=100 min=3", "/groupbuy join x", "/groupbuy frob",
                "/groupbuy add Set | price=100 group_price=90 min=1 deadline=2026-03-12 20:00"):  # fmt: skip
        assert "Usage: /groupbuy" in await chat.say("boss", bad), bad
