"""Flash-sale claims on the real Telegram stack with concurrent updates: no oversell, no double claim."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from handlers.core.clock import FakeClock
from tests.fakes.bot_api import callback_update, message_update, user
from tests.tg_harness import GROUP, STAFF, Harness, fake_api, harness_settings, running_bot


async def seed_members(bot: Harness, ids: list[int]) -> None:
    async with bot.runtime.deps.db.transaction() as repos:
        for uid in ids:
            await repos.members.register("telegram", str(uid), f"m{uid}", None, 0)


async def feed(bot: Harness, updates: list[dict]) -> None:  # type: ignore[type-arg]
    """Store updates straight into the inbox, as a webhook burst would, for the workers to take."""
    assert bot.channel.intake is not None
    await bot.channel.intake.store(updates)


async def test_1000_concurrent_claims_for_100_units_give_exactly_100_winners(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = harness_settings(
            api, tmp_path / "c.db", telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP],
                                               "concurrent_updates": 128},
        )  # fmt: skip
        async with running_bot(api, settings, clock) as bot:
            reply = await bot.send(
                GROUP, STAFF, "/sale add Jade cup | price=9 stock=100 start=2026-03-10 10:00 --force"
            )
            assert "Flash sale #1 created" in reply
            clock.advance(timedelta(hours=1, minutes=1))
            ids = list(range(10_000, 11_000))
            await seed_members(bot, ids)
            await feed(bot, [callback_update(api, GROUP, user(uid), "v1:claim:1") for uid in ids])
            answers = await api.wait_for(1000, method="answerCallbackQuery", timeout=120)
            won = [a for a in answers if "You got" in a["text"]]
            assert len(won) == 100 and sum("sold out" in a["text"] for a in answers) == 900
            async with bot.runtime.deps.db.read() as repos:
                sale = await repos.sales.get(1)
                claims = await repos.sales.claims(1)
            assert sale is not None and sale.sold == 100
            assert len(claims) == 100 and len({c.member_id for c in claims}) == 100
            # Winners can't be messaged privately yet: no code is ever posted in the group; each one waits
            # for its member's private chat, and the group is told (coalesced, within its budget).
            assert await bot.channel.idle(timeout=60)
            assert not any("Your code" in p.get("text", "") for p in api.sent())
            async with bot.runtime.deps.db.read() as repos:
                held = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM outbound WHERE held = 1")
            assert held[0][0] == 100
            # Each winner reads the hint to start the bot in their own toast, not in the group.
            assert sum("/start" in a["text"] for a in answers) == 100
            assert not any("/start" in p["text"] for p in api.sent() if int(p["chat_id"]) == GROUP)
            assert api.group_load(GROUP) <= 20


async def test_50_concurrent_claims_by_one_member_with_limit_2_give_2(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "l.db"), clock) as bot:
            await bot.send(GROUP, STAFF, "/sale add Cup | price=9 stock=100 start=2026-03-10 10:00 limit=2 --force")
            clock.advance(timedelta(hours=2))
            solo = user(4242, "Solo")
            await bot.send(4242, solo, "/start")  # reachable privately: codes go to the private chat
            await bot.runtime.outbox.idle()
            before = len(api.sent())
            await feed(bot, [message_update(api, GROUP, solo, "/claim 1") for _ in range(50)])

            assert await bot.channel.idle(timeout=60)
            codes = [p for p in api.sent()[before:] if "Your code: S-" in p["text"]]
            assert len(codes) == 2 and all(int(p["chat_id"]) == 4242 for p in codes)  # privately, never the group
            group = "\n".join(p["text"] for p in api.sent()[before:] if int(p["chat_id"]) == GROUP)
            assert "You got" in group and "You already have 2" in group
            async with bot.runtime.deps.db.read() as repos:
                claims = await repos.sales.claims(1)
            assert sorted(c.unit for c in claims) == [1, 2]
