"""The rewards shop: listing, redeeming (never a negative balance or stock), handing over."""

from __future__ import annotations

import asyncio

from tests.conftest import ChatDriver


async def points_of(chat: ChatDriver, who: str) -> tuple[int, int]:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
        assert member is not None
        assert await repos.ledger.sum_for(member.id) == member.balance
        return member.balance, member.earned


async def test_staff_define_rewards_and_members_see_what_they_can_afford(chat: ChatDriver) -> None:
    assert "Added: #1 Tea sample — points: 50" in await chat.say("boss", "/reward add Tea sample | cost=50")
    await chat.say("boss", "/reward add Teapot | cost=100 stock=3")
    await chat.say("boss", "/reward add Tea ceremony | cost=120 tier=diamond")
    await chat.say("boss", "/reward add Gift box | cost=1000")
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 80")
    text = await chat.say("alice", "积分商城")
    assert "Rewards shop (your points: 80)" in text
    can, close, later = (text.index(h) for h in ("You can redeem now", "Almost there", "Keep going"))
    assert can < text.index("#1 Tea sample") < close < text.index("#2 Teapot — points: 100, 3 left") < later
    assert text.index("Tea ceremony") > later and "Diamond and above" in text
    assert "(20 more to go)" in text


async def test_redeem_deducts_points_and_stock_and_gives_a_code(chat: ChatDriver) -> None:
    await chat.say("boss", "/reward add Teapot | cost=100 stock=1")
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 700")
    text = await chat.say("alice", "兑换 1")
    assert "Redeemed: Teapot (points -100). Your code: R-" in text and "Balance 600." in text
    assert await points_of(chat, "alice") == (600, 700)  # spending does not lower lifetime points
    assert "Tier: Diamond" in await chat.say("alice", "/points")
    assert '"Teapot" is all gone.' in await chat.say("alice", "/redeem 1")
    code = text.split("Your code: ")[1].split(";")[0]
    assert "marked as handed over" in await chat.say("boss", f"/redeemed {code.lower()}")
    assert "already handed over" in await chat.say("boss", f"/redeemed {code}")
    assert "There is no redemption code R-NOPE" in await chat.say("boss", "/redeemed r-nope")


async def test_insufficient_points_and_tier_rules(chat: ChatDriver) -> None:
    await chat.say("boss", "/reward add Teapot | cost=100")
    await chat.say("boss", "/reward add Ceremony | cost=10 tier=diamond")
    await chat.say("alice", "/checkin")
    assert '"Teapot" needs points: 100; your balance is 10.' in await chat.say("alice", "/redeem 1")
    assert '"Ceremony" is for Diamond members and above.' in await chat.say("alice", "/redeem 2")
    assert await points_of(chat, "alice") == (10, 10)
    async with chat.runtime.deps.db.read() as repos:
        reward = await repos.rewards.get(1)
    assert reward is not None and reward.redeemed == 0  # the stock taken was rolled back


async def test_concurrent_redemptions_never_overdraw(chat: ChatDriver) -> None:
    await chat.say("boss", "/reward add Cup | cost=30")
    await chat.say("boss", "/reward add Pot | cost=10 stock=5")
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 100")
    texts = await asyncio.gather(*(chat.say("alice", "/redeem 1") for _ in range(10)))
    assert sum("Redeemed" in t for t in texts) == 3
    assert await points_of(chat, "alice") == (10, 100)
    names = [f"m{n}" for n in range(20)]
    for name in names:
        await chat.say(name, "hi")
        await chat.say("boss", f"/award @{name} 10")
    texts = await asyncio.gather(*(chat.say(name, "/redeem 2") for name in names))
    assert sum("Redeemed" in t for t in texts) == 5 and sum("all gone" in t for t in texts) == 15
    async with chat.runtime.deps.db.read() as repos:
        pot = await repos.rewards.get(2)
        assert await repos.ledger.mismatched_balances() == []
    assert pot is not None and pot.redeemed == pot.stock == 5


async def test_reward_edit_remove_and_bad_input(chat: ChatDriver) -> None:
    await chat.say("boss", "/reward add Cup | cost=30")
    assert "Updated: #1 Big cup — points: 40, 2 left" in await chat.say(
        "boss", "/reward edit 1 cost=40 stock=2 name=Big cup"
    )
    assert "Reward #1 removed." in await chat.say("boss", "/reward remove 1")
    assert "There is no reward #1 to redeem." in await chat.say("alice", "/redeem 1")
    assert "empty" in await chat.say("alice", "/rewards")
    bad_commands = [
        "/reward", "/reward add | cost=5", "/reward add Cup", "/reward add Cup | cost=abc",
        "/reward add Cup | cost=5 tier=gold-plated", "/reward add Cup | cost=5 colour=red", "/reward edit x cost=5",
    ]  # fmt: skip
    for bad in bad_commands:
        assert "Usage: /reward" in await chat.say("boss", bad), bad
    assert "only staff" in await chat.say("alice", "/reward add Cup | cost=1")
    assert "Usage: /redeem" in await chat.say("alice", "/redeem")


async def test_reward_edit_reads_every_option_wherever_the_name_is(chat: ChatDriver) -> None:
    await chat.say("boss", "/reward add 护理套装 | cost=300")
    text = await chat.say("boss", "/reward edit 1 name=皮具护理套装 stock=5")
    assert "#1 皮具护理套装 —" in text and "stock=" not in text and "5 left" in text
    assert await reward_row(chat) == ("皮具护理套装", 300, 5, None)
    text = await chat.say("boss", "/reward edit 1 name=Leather care kit cost=350 tier=diamond")
    assert "#1 Leather care kit —" in text and "350" in text and "Diamond and above" in text
    assert "Usage: /reward" in await chat.say("boss", "/reward edit 1 name=Kit colour=red")
    assert "Usage: /reward" in await chat.say("boss", "/reward edit 1 name= stock=2")
    assert "Usage: /reward" in await chat.say("boss", "/reward edit 1 stray words cost=5")
    assert await reward_row(chat) == ("Leather care kit", 350, 5, "diamond")


async def reward_row(chat: ChatDriver) -> tuple[str, int, int | None, str | None]:
    async with chat.runtime.deps.db.read() as repos:
        reward = await repos.rewards.get(1)
    assert reward is not None
    return reward.name, reward.cost, reward.stock, reward.min_tier
