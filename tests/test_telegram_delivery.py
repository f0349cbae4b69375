"""Pushes on the real Telegram stack: 429 with retry_after, blocked users, buttons, restarts."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from handlers.core.clock import FakeClock
from tests.conftest import local
from tests.fakes.bot_api import callback_update, message_update, user
from tests.tg_harness import ALICE, GROUP, STAFF, STAFF_CHAT, fake_api, harness_settings, running_bot

BLOCKED = "Forbidden: bot was blocked by the user"


async def start_members(harness, count: int) -> list[int]:
    """`count` members who opened a private chat with the bot (so they can receive notices)."""
    ids = [2000 + n for n in range(count)]
    before = len(harness.api.sent())
    for uid in ids:
        harness.api.push_update(message_update(harness.api, uid, user(uid), "/start"))
    await harness.api.wait_for(before + count)
    return ids


async def test_a_flood_wait_costs_no_attempt_and_pauses_only_its_chat(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "d.db"), clock) as bot:
            bot.allow_floods = True  # this test makes Telegram answer 429 itself
            ids = await start_members(bot, 12)
            refused: list[float] = []

            def flood(params: dict) -> tuple[int, dict] | None:  # type: ignore[type-arg]
                # The group is in flood wait six times in a row for 14 s: more than the 5 attempts a push has.
                if int(params["chat_id"]) == GROUP and params.get("text") == "Big news" and len(refused) < 6:
                    refused.append(api.now())
                    return 429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 14",
                                 "parameters": {"retry_after": 14}}  # fmt: skip
                return None

            api.fail["sendMessage"] = flood
            reply = await bot.send(GROUP, STAFF, "/announce Big news")
            assert "queued for 13 recipients" in reply  # the group and twelve members
            assert await bot.runtime.outbox.idle(timeout=30)
            news = [c for c in api.calls if c.params.get("text") == "Big news" and c.status == 200]
            delivered = Counter(int(c.params["chat_id"]) for c in news)
            assert delivered == Counter([GROUP, *ids])  # every recipient exactly once, the group too
            assert len(refused) == 6
            group_at = next(c.at for c in news if int(c.params["chat_id"]) == GROUP)
            assert group_at - refused[-1] >= 14  # waited as told each time
            assert max(c.at for c in news if int(c.params["chat_id"]) != GROUP) < refused[1]  # the others did not
            assert "13 recipients, 13 sent, 0 pending, 0 failed" in await bot.send(GROUP, STAFF, "/delivery 1")


async def test_a_blocked_user_is_recorded_and_the_rest_delivered(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "b.db"), clock) as bot:
            ids = await start_members(bot, 3)
            blocked = ids[1]

            def refuse(params: dict) -> tuple[int, dict] | None:  # type: ignore[type-arg]
                if int(params["chat_id"]) == blocked:
                    return 403, {
                        "ok": False,
                        "error_code": 403,
                        "description": "Forbidden: bot was blocked by the user",
                    }
                return None

            api.fail["sendMessage"] = refuse
            await bot.send(GROUP, STAFF, "/announce Hello")
            assert await bot.runtime.outbox.idle(timeout=10)
            status = await bot.send(GROUP, STAFF, "/delivery 1")
            assert "4 recipients, 3 sent, 0 pending, 1 failed" in status
            assert f"failed: {blocked} — {BLOCKED}" in status


async def test_the_join_button_signs_up_and_answers_on_screen(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "j.db"), clock) as bot:
            await bot.send(GROUP, STAFF, "/event add 2026-03-20 19:30 Tasting")
            api.push_update(callback_update(api, GROUP, ALICE, "v1:join:1"))
            (answer,) = await api.wait_for(1, method="answerCallbackQuery")
            assert "Alice is signed up: Tasting" in answer["text"]
            assert "#1 2026-03-20 19:30 Tasting (1 signed up)" in await bot.send(GROUP, ALICE, "/events")


async def test_promos_survive_a_restart_and_go_out_once(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = harness_settings(api, tmp_path / "r.db")
        async with running_bot(api, settings, clock) as bot:
            reply = await bot.send(GROUP, STAFF, "/event add 2026-03-20 19:30 Tasting | ten new teas")
            assert "Event #1 created" in reply
            await bot.settle()  # the new event's own post goes out after the answer, before this run ends
        sent_before = len(api.sent())
        clock.set(local(2026, 3, 15, 19, 30) + timedelta(minutes=30))  # down across the 5-day promo
        for _ in range(2):
            async with running_bot(api, settings, clock) as bot:
                assert await bot.runtime.outbox.idle(timeout=10)
        pushed = api.sent()[sent_before:]
        promos = [p for p in pushed if int(p["chat_id"]) == GROUP]
        assert len(promos) == 1 and "Tasting" in promos[0]["text"] and "in 5 days" in promos[0]["text"]
        assert promos[0]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "v1:join:1"
        staff = [p["text"] for p in pushed if int(p["chat_id"]) == STAFF_CHAT]
        assert len(staff) == 1 and "sent 30 min late" in staff[0]


def test_telegram_errors_are_classified_for_the_queue() -> None:
    import httpx
    from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

    from bot.delivery.sender import Outcome
    from bot.telegram.sender import classify

    flood = classify(RetryAfter(7))
    assert (flood.outcome, flood.retry_after) == (Outcome.FLOOD, 7.0)
    assert classify(Forbidden("Forbidden: bot was blocked by the user")).outcome is Outcome.FAILED
    assert classify(BadRequest("Bad Request: chat not found")).outcome is Outcome.FAILED
    assert classify(NetworkError("Bad Gateway")).outcome is Outcome.RETRY  # Telegram answered 502

    def caused(exc: Exception, cause: Exception) -> Exception:
        exc.__cause__ = cause
        return exc

    request = httpx.Request("POST", "http://127.0.0.1/")
    not_sent = caused(NetworkError("connect"), httpx.ConnectError("refused", request=request))
    assert classify(not_sent).outcome is Outcome.RETRY
    maybe_sent = caused(TimedOut("read"), httpx.ReadTimeout("slow", request=request))
    assert classify(maybe_sent).outcome is Outcome.UNCERTAIN
    dropped = caused(NetworkError("reset"), httpx.ReadError("reset", request=request))
    assert classify(dropped).outcome is Outcome.UNCERTAIN
