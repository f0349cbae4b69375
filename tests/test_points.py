"""Points and tiers: staff bookings, the ledger as the only truth, lifetime-earned tiers."""

from __future__ import annotations

import asyncio

from tests.conftest import ChatDriver, RecordingPusher, settle


async def totals(chat: ChatDriver, who: str) -> tuple[int, int]:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
        assert member is not None
        assert await repos.ledger.sum_for(member.id) == member.balance
        return member.balance, member.earned


async def test_points_shows_balance_tier_and_next_tier(chat: ChatDriver) -> None:
    await chat.say("alice", "/checkin")
    text = await chat.say("alice", "积分")
    assert "Alice's points: 10" in text
    assert "Tier: Gold" in text
    assert "590 more points to Diamond" in text
    assert "+10 check-in" in text


async def test_points_lists_the_last_five_entries(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    for n in range(1, 8):
        await chat.say("boss", f"/award @alice {n} round {n}")
    text = await chat.say("alice", "/points")
    assert "round 7" in text and "round 3" in text
    assert "round 2" not in text


async def test_staff_award_by_username_id_and_reply(chat: ChatDriver) -> None:
    await chat.say("alice", "hello")
    assert "Gave Alice 50 points" in await chat.say("boss", "/award @alice 50 nice photo")
    assert "Gave Alice 5 points" in await chat.say("boss", "/award 1 5")  # member number, as /me shows
    assert "Gave Alice 7 points" in await chat.say("boss", "/award 7 thanks", reply_to="alice")
    assert await totals(chat, "alice") == (62, 62)


async def test_non_staff_get_a_polite_refusal(chat: ChatDriver) -> None:
    await chat.say("alice", "hello")
    for command, role in (("/award @alice 50", "manager"), ("/deduct @alice 1", "manager"),
                          ("/purchase @alice 10", "cashier")):  # fmt: skip
        assert await chat.say("mallory", command) == f"Sorry, only staff with the {role} role can use this command."
    assert await totals(chat, "alice") == (0, 0)


async def test_bad_arguments_get_the_usage_line(chat: ChatDriver) -> None:
    await chat.say("alice", "hello")
    assert (await chat.say("boss", "/award")).startswith("Usage: /award <@username|member no.> <points>")
    assert "Usage: /award" in await chat.say("boss", "/award @alice")
    assert "not a valid number of points" in await chat.say("boss", "/award @alice -5")
    assert "not a valid number of points" in await chat.say("boss", "/award @alice 1e9")
    assert "not a valid number of points" in await chat.say("boss", "/award @alice 100001")
    assert "Usage: /purchase" in await chat.say("boss", "/purchase @alice abc")
    assert "not a valid amount" in await chat.say("boss", "/purchase @alice 0")
    assert "not a valid amount" in await chat.say("boss", "/purchase @alice 1.999")
    assert "can't find the member @nobody" in await chat.say("boss", "/award @nobody 5")
    assert await totals(chat, "alice") == (0, 0)


async def test_deduct_never_goes_below_zero(chat: ChatDriver) -> None:
    await chat.say("alice", "/checkin")
    assert "has only 10 points; cannot take 11" in await chat.say("boss", "/deduct @alice 11")
    assert "Took 4 points from Alice. Balance 6." in await chat.say("boss", "/deduct @alice 4 typo")
    assert await totals(chat, "alice") == (6, 6)


async def test_concurrent_deductions_cannot_overdraw(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 100")
    texts = await asyncio.gather(*(chat.say("boss", "/deduct @alice 30") for _ in range(10)))
    assert sum("Took 30" in t for t in texts) == 3
    assert await totals(chat, "alice") == (10, 10)


async def test_purchase_earns_points_at_the_configured_rate(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    text = await chat.say("boss", "/purchase @alice ¥199.90 winter coat")
    assert "Recorded a ¥199.90 purchase for Alice, +199 points" in text
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", "alice")
        assert member is not None
        summary = await repos.purchases.summary(member.id)
    assert (summary.count, summary.total_fen) == (1, 19990)
    assert "Purchases: 1, ¥199.90 in all" in await chat.say("alice", "/me")


async def test_tier_by_lifetime_earned_and_congratulation(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    text = await chat.say("boss", "/award @alice 599")
    assert "Congratulations" not in text
    text = await chat.say("boss", "/purchase @alice 1")
    assert "Congratulations, Alice, you are now a Diamond member!" in text
    # Spending does not demote: the ledger's earned_delta of 0 leaves lifetime points alone.
    async with chat.runtime.deps.db.transaction() as repos:
        member = await repos.members.by_identity("test", "alice")
        assert member is not None
        await repos.ledger.append(member.id, -500, "redeem", "redeem:1", 0, earned_delta=0)
    text = await chat.say("alice", "/points")
    assert "Alice's points: 100" in text and "Tier: Diamond" in text
    assert "1200 more points to Black card" in text


async def test_repeated_update_never_awards_twice(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    first = chat.inbound("boss", "/award @alice 40", key="test:update:77")
    again = chat.inbound("boss", "/award @alice 40", key="test:update:77")
    assert (await chat.runtime.dispatcher.handle(first, chat.port))[0].text.startswith("Gave Alice 40")
    assert await chat.runtime.dispatcher.handle(again, chat.port) == []
    assert await totals(chat, "alice") == (40, 40)


async def test_ledger_idempotency_key_books_once(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    async with chat.runtime.deps.db.transaction() as repos:
        member = await repos.members.by_identity("test", "alice")
        assert member is not None
        first = await repos.ledger.append(member.id, 25, "award", "same-cause", 0)
        second = await repos.ledger.append(member.id, 25, "award", "same-cause", 0)
    assert first.booked and not second.booked
    assert second.balance == 25


async def test_a_member_hears_of_bookings_made_outside_their_group(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "/start", group=False)  # may be messaged privately
    await chat.say("bob", "hi")  # in the group only
    await chat.say("boss", "/award @alice 50 nice photo", group=False)
    await chat.say("boss", "/deduct @alice 10 typo", group=False)
    await chat.say("boss", "/purchase @alice 600", group=False)
    await chat.say("boss", "/award @bob 1", group=False)
    await settle(chat.runtime)
    assert pusher.to("alice") == [
        "Staff gave you 50 points (nice photo). You now have 50.",
        "10 points were taken from your balance (typo). You now have 40.",
        "Your ¥600.00 purchase is recorded: +600 points. You now have 640.\n"
        "🎉 Congratulations, you are now a Diamond member!",
    ]
    # Bob cannot be messaged privately: the group hears it, naming him.
    assert pusher.to("group") == ["@bob: Staff gave you 1 point. You now have 1."]
    # Said in the group, the staff member's answer there is enough: nothing more is sent.
    assert "645" in await chat.say("boss", "/award @alice 5")  # the balance, in the answer in the group
    await settle(chat.runtime)
    assert len(pusher.to("alice")) == 3 and len(pusher.to("group")) == 1
