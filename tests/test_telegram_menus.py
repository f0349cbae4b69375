"""The "/" command menus: registered at start per scope and language (setMyCommands), staff commands only in
staff chats and as far as each one's role goes, set again only when they changed, and never a reason to stop."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot, BotCommand, BotCommandScopeAllPrivateChats

from bot.app.config import Settings
from bot.telegram.menus import Menu, MenuRegistrar, entry, menu_of
from handlers.core.clock import FakeClock
from handlers.core.command import Command
from handlers.core.i18n import Catalog
from handlers.core.messages import Reply
from tests.fakes.bot_api import FakeBotApi, user
from tests.tg_harness import GROUP, Harness, fake_api, harness_settings, running_bot

OWNER_ID, CASHIER_ID, MANAGER_ID = 500, 501, 502
STAFF_CHAT = -100555000

MEMBER = ["invite", "checkin", "points", "tiers", "me", "birthday", "forget", "events", "join", "leave", "notify",
          "bind", "claim", "groupbuy", "polls", "vote", "rewards", "redeem", "feedback", "phone", "help"]  # fmt: skip
"""A member's commands in a private chat, in /help's order."""
IN_GROUP = ["invite", "checkin", "points", "tiers", "me", "events", "join", "leave", "notify", "claim", "groupbuy",
            "polls", "vote", "rewards", "redeem", "feedback", "help"]  # fmt: skip
"""The same in a group: /bind and /phone are refused there, /birthday and /forget are personal."""
CASHIER = ["purchase", "member", "redeemed", "claimcode"]
MANAGER = ["award", "deduct", "purchase", "void", "member", "event", "announce", "schedule", "scheduled",
           "unschedule", "recall", "delivery", "unlink", "sale", "poll", "reward", "redeemed", "reply", "tickets",
           "close", "segments", "segment", "stats", "report", "export", "import", "claimcode", "greetings",
           "audit"]  # fmt: skip

PRIVATE = {"type": "all_private_chats"}
GROUPS = {"type": "all_group_chats"}


def chat(chat_id: int) -> dict[str, Any]:
    return {"type": "chat", "chat_id": chat_id}


def admins(chat_id: int) -> dict[str, Any]:
    return {"type": "chat_administrators", "chat_id": chat_id}


def key_of(scope: Any, language: Any) -> tuple[str, str]:
    if isinstance(scope, str):
        scope = json.loads(scope)
    return json.dumps(scope or {"type": "default"}, sort_keys=True), str(language or "")


class TelegramCommands:
    """Telegram's side of setMyCommands / getMyCommands / deleteMyCommands, installed as the fake's answer hooks
    (FakeBotApi answers these methods with a bare `true`, right for set and delete but not for getMyCommands):
    one list per (scope, language_code), getMyCommands answers exactly that list (an empty one when none was
    set), commands checked as Telegram checks them, and a chat the bot never met refused."""

    def __init__(self, api: FakeBotApi, unknown_chats: tuple[int, ...] = ()) -> None:
        self.lists: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.unknown_chats = set(unknown_chats)
        api.fail["setMyCommands"] = self.set
        api.fail["getMyCommands"] = self.get
        api.fail["deleteMyCommands"] = self.delete

    def _refusal(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        scope = params.get("scope")
        scope = json.loads(scope) if isinstance(scope, str) else scope or {}
        if scope.get("chat_id") in self.unknown_chats:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        return None

    def set(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refused = self._refusal(params)
        if refused is not None:
            return refused
        commands = params["commands"]
        if len(commands) > 100:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: BOT_COMMANDS_TOO_MUCH"}
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", c["command"]):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: BOT_COMMAND_INVALID"}
            if not 1 <= len(c["description"]) <= 256:
                return 400, {"ok": False, "error_code": 400,
                             "description": "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"}  # fmt: skip
        self.lists[key_of(params.get("scope"), params.get("language_code"))] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return 200, {"ok": True, "result": True}

    def get(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        refused = self._refusal(params)
        if refused is not None:
            return refused
        return 200, {"ok": True, "result": self.lists.get(key_of(params.get("scope"), params.get("language_code")), [])}

    def delete(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.lists.pop(key_of(params.get("scope"), params.get("language_code")), None)
        return 200, {"ok": True, "result": True}

    def names(self, scope: dict[str, Any], language: str) -> list[str]:
        return [c["command"] for c in self.lists[key_of(scope, language)]]

    def description(self, scope: dict[str, Any], language: str, command: str) -> str:
        return next(c["description"] for c in self.lists[key_of(scope, language)] if c["command"] == command)


def shop_settings(api: FakeBotApi, db: Path, **staff: Any) -> Settings:
    """A Chinese shop (zh_CN: the default language is Chinese) with an owner and a cashier, a VIP group, and the
    staff group (served: it is listed too)."""
    return harness_settings(
        api, db, locale="zh_CN",
        telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP, STAFF_CHAT]},
        staff={"telegram": {OWNER_ID: "owner", CASHIER_ID: "cashier"}, "telegram_chat": STAFF_CHAT, **staff},
    )  # fmt: skip


async def registered(bot: Harness) -> None:
    """Wait for the start's round of menus (a background task) to end."""
    assert bot.channel.menus is not None
    await asyncio.wait_for(bot.channel.menus.wait(), 10)


def set_calls(api: FakeBotApi) -> list[tuple[str, str]]:
    return [key_of(c.params.get("scope"), c.params.get("language_code")) for c in api.calls
            if c.method == "setMyCommands"]  # fmt: skip


async def test_menus_per_scope_and_language(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        telegram = TelegramCommands(api)
        settings = shop_settings(api, tmp_path / "m.db", group_admins="manager")
        async with running_bot(api, settings, clock) as bot:
            await registered(bot)
        scopes = [PRIVATE, GROUPS, chat(OWNER_ID), chat(CASHIER_ID), admins(GROUP), admins(STAFF_CHAT),
                  chat(STAFF_CHAT)]  # fmt: skip
        assert set(telegram.lists) == {key_of(s, lang) for s in scopes for lang in ("", "zh", "en")}
        assert sorted(set_calls(api)) == sorted(telegram.lists)  # each list set once
        for language in ("", "zh", "en"):
            assert telegram.names(PRIVATE, language) == MEMBER
            assert telegram.names(GROUPS, language) == IN_GROUP
            # A cashier's private chat: the till's commands first, then a member's; nothing a manager does.
            assert telegram.names(chat(CASHIER_ID), language) == CASHIER + MEMBER
            assert telegram.names(chat(OWNER_ID), language) == MANAGER + MEMBER
            # The admins of a VIP group are managers here (staff.group_admins); the staff group sees what its
            # lowest listed role (the cashier) may do.
            assert telegram.names(admins(GROUP), language) == MANAGER + IN_GROUP
            assert telegram.names(chat(STAFF_CHAT), language) == CASHIER + IN_GROUP
        assert not {"void", "announce"} & set(telegram.names(chat(CASHIER_ID), ""))
        # "" is the configured language (Chinese here); English users get English.
        assert telegram.description(PRIVATE, "", "checkin") == "每日签到，领积分"
        assert telegram.description(PRIVATE, "zh", "checkin") == "每日签到，领积分"
        assert telegram.description(PRIVATE, "en", "checkin") == "daily check-in, earns points"
        assert telegram.description(chat(CASHIER_ID), "en", "purchase") == "record a purchase (earns points by amount)"
        assert telegram.description(chat(CASHIER_ID), "", "purchase") == "记录一笔消费（按金额积分）"


async def test_a_restart_sets_only_what_changed(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        telegram = TelegramCommands(api)
        settings = shop_settings(api, tmp_path / "m.db")
        async with running_bot(api, settings, clock) as bot:
            await registered(bot)
        assert len(set_calls(api)) == 5 * 3
        api.clear()
        async with running_bot(api, settings, clock) as bot:  # the same commands: compared, none set again
            await registered(bot)
        assert set_calls(api) == []
        assert len([c for c in api.calls if c.method == "getMyCommands"]) == 5 * 3
        api.clear()
        promoted = shop_settings(api, tmp_path / "m.db")
        promoted.staff.telegram[CASHIER_ID] = promoted.staff.telegram[OWNER_ID]  # the cashier becomes an owner
        async with running_bot(api, promoted, clock) as bot:
            await registered(bot)
        # Their chat's three lists, and the staff group's (its lowest role is now the owner's).
        assert sorted(set_calls(api)) == sorted(key_of(s, lang) for s in (chat(CASHIER_ID), chat(STAFF_CHAT))
                                                for lang in ("", "zh", "en"))  # fmt: skip
        assert telegram.names(chat(CASHIER_ID), "en") == MANAGER + MEMBER


async def test_a_refused_scope_is_one_warning_and_the_bot_runs_on(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with fake_api() as api:
        telegram = TelegramCommands(api, unknown_chats=(CASHIER_ID,))  # the cashier never opened the bot
        settings = shop_settings(api, tmp_path / "m.db")
        with caplog.at_level(logging.WARNING, logger="bot.telegram.menus"):
            async with running_bot(api, settings, clock) as bot:
                await registered(bot)
                answer = await bot.send(CASHIER_ID + 1000, user(CASHIER_ID + 1000), "/help")
                assert "/checkin" in answer
        warnings = [r.getMessage() for r in caplog.records if r.name == "bot.telegram.menus"]
        assert warnings == [f"telegram: command menu for staff {CASHIER_ID} (cashier) not registered: Chat not found"]
        assert key_of(chat(OWNER_ID), "en") in telegram.lists and key_of(chat(STAFF_CHAT), "") in telegram.lists
        assert not any(k[0] == key_of(chat(CASHIER_ID), "")[0] for k in telegram.lists)


async def test_an_unreadable_answer_is_one_warning(tmp_path: Path, clock: FakeClock,
                                                   caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """An answer that is not a list of commands (here `true`) ends the round with one warning, and the bot
    answers as usual."""
    async with fake_api() as api:
        api.fail["getMyCommands"] = lambda params: (200, {"ok": True, "result": True})
        settings = shop_settings(api, tmp_path / "m.db")
        with caplog.at_level(logging.WARNING, logger="bot.telegram.menus"):
            async with running_bot(api, settings, clock) as bot:
                await registered(bot)
                assert "/checkin" in await bot.send(4242, user(4242), "/help")
        warnings = [r for r in caplog.records if r.name == "bot.telegram.menus"]
        assert len(warnings) == 1 and "command menus not registered" in warnings[0].getMessage()
        assert [c.method for c in api.calls].count("getMyCommands") == 1


async def test_menus_off(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = shop_settings(api, tmp_path / "m.db")
        settings.telegram.command_menus = False
        async with running_bot(api, settings, clock) as bot:
            assert bot.channel.menus is None
            assert "/checkin" in await bot.send(4242, user(4242), "/help")
        assert not [c for c in api.calls if "MyCommands" in c.method]


async def _nothing(*_: Any, **__: Any) -> list[Reply]:
    return []


def test_only_names_telegram_takes_and_descriptions_cut_to_256() -> None:
    long = Catalog("en", {"help_cmd.summary": "a very long line " * 20})
    cut = entry(Command("help", _nothing, "help_cmd.summary"), long)
    assert cut is not None and len(cut.description) == 256 and cut.description.endswith("…")
    assert entry(Command("签到", _nothing, "help_cmd.summary"), long) is None
    assert entry(Command("x" * 33, _nothing, "help_cmd.summary"), long) is None
    assert entry(Command("check-in", _nothing, "help_cmd.summary"), long) is None
    many = [Command(f"c{n}", _nothing, "help_cmd.summary") for n in range(130)]
    listed = menu_of(many, long, None, group=False)
    assert [c.command for c in listed] == [f"c{n}" for n in range(100)]


async def test_a_429_is_waited_out_once() -> None:
    async with fake_api() as api:
        telegram = TelegramCommands(api)
        normal = api.fail["setMyCommands"]
        refused: list[int] = []

        def flood(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            if not refused:
                refused.append(1)
                return 429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
                             "parameters": {"retry_after": 7}}  # fmt: skip
            return normal(params)

        api.fail["setMyCommands"] = flood
        waited: list[float] = []

        async def sleep(seconds: float) -> None:
            waited.append(seconds)

        menu = Menu(BotCommandScopeAllPrivateChats(), "en", (BotCommand("checkin", "daily check-in"),), "private")
        async with Bot(api.token, base_url=api.base_url) as bot:
            registrar = MenuRegistrar(bot, [menu], sleep=sleep)
            await registrar.run()
        assert waited == [7.0] and registrar.set_count == 1
        assert telegram.names(PRIVATE, "en") == ["checkin"]
