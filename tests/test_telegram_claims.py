"""Flash-sale claims on the real Telegram stack with concurrent updates: no oversell, no double claim."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from pathlib import Path

from telegram import Update

from handlers.clock import FakeClock
from tests.fakes.bot_api import callback_update, message_update, user
from tests.tg_harness import GROUP, STAFF, Harness, fake_api, harness_settings, running_bot


async def seed_members(bot: Harness, ids: list[int]) -> None:
    async with bot.runtime.deps.db.transaction() as repos:
        for uid in ids:
            await repos.members.register("telegram", str(uid), f"m{uid}", None, 0)


async def feed(bot: Harness, updates: list[dict]) -> None:  # type: ignore[type-arg]
    """Put updates straight into the Application's queue, as fast as it takes them."""
    application = bot.channel.application
    for data in updates:
        await application.update_queue.put(Update.de_json(data, application.bot))


async def test_1000_concurrent_claims_for_100_units_give_exactly_100_winners(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = harness_settings(
            api, tmp_path / "c.db", telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP],
                                               "rate_limiter": False, "concurrent_updates": 128},
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
            # Winners can't be messaged privately here, so each code is posted in the group with a mention.
            mentions = [p for p in api.sent() if p.get("parse_mode") == "HTML" and "Your code: S-" in p["text"]]
            assert len(mentions) == 100 and all(int(p["chat_id"]) == GROUP for p in mentions)


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

            def outcomes() -> Counter[str]:
                kinds = (("You got", "won"), ("You already have 2", "limit"), ("Your code: S-", "code"))
                return Counter(kind for p in api.sent()[before:] for mark, kind in kinds if mark in p["text"])

            for _ in range(1000):  # bounded wait for 50 answers and 2 codes
                if sum(outcomes().values()) >= 52:
                    break
                await asyncio.sleep(0.01)
            assert outcomes() == Counter({"won": 2, "limit": 48, "code": 2})
            codes = [p for p in api.sent()[before:] if "Your code: S-" in p["text"]]
            assert all(int(p["chat_id"]) == 4242 for p in codes)
