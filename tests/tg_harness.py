"""A running bot on the real Telegram stack for end-to-end tests: fake Bot API, runtime, channel, outbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.delivery.sender import Pace
from bot.telegram.channel import TelegramChannel
from handlers.core.clock import FakeClock
from tests.conftest import storage_for
from tests.fakes.bot_api import FakeBotApi, message_update, user

PACE = Pace(speed=10.0)
"""Time for the sender and the fake Bot API runs 10 times faster: Telegram's limits hold exactly (20 messages a
minute into a group is 20 in 6 real seconds), and no test waits for real minutes. Faster time magnifies the
event loop's jitter as much, so the harness keeps a wider margin under the limits (see harness_settings)."""
GROUP = -1001234567890
OTHER_GROUP = -1009999
STAFF_ID = 500
ADMIN_ID = 600
ALICE = user(101, "Alice", "alice")
BOB = user(102, "Bob", "bob")
STAFF = user(STAFF_ID, "Shop", "shopkeeper")
ADMIN = user(ADMIN_ID, "Admin", "groupadmin")
STAFF_CHAT = -100555000


@dataclass
class Harness:
    api: FakeBotApi
    runtime: Runtime
    channel: TelegramChannel
    allow_floods: bool = False
    """Set by a test that makes the fake answer 429 on purpose; otherwise a 429 fails the test."""

    async def send(self, chat_id: int, sender: dict[str, Any] | None, text: str, **kwargs: Any) -> str:
        """Push one update through getUpdates and wait for the bot's next message (its text): the answer, when
        nothing else is still on its way. A command that announces (a sale, a group buy, /announce) answers
        first and posts after: `settle()` before reading the next answer, or the late post is read as it."""
        before = len(self.api.sent())
        self.api.push_update(message_update(self.api, chat_id, sender, text, **kwargs))
        return await self.answer(before)

    async def post(self, chat_id: int, sender: dict[str, Any] | None, text: str, method: str, **kwargs: Any) -> str:
        """Push one update and wait for the next call of `method` (e.g. the board's editMessageText, or a
        sendDocument): its text, or its caption."""
        before = len(self.api.sent(method))
        self.api.push_update(message_update(self.api, chat_id, sender, text, **kwargs))
        sent = await self.api.wait_for(before + 1, method)
        return str(sent[-1].get("text", sent[-1].get("caption", "")))

    async def answer(self, before: int, expect: int = 1) -> str:
        sent = await self.api.wait_for(before + expect)
        return "\n".join(p["text"] for p in sent[before:])

    async def silent(self, chat_id: int, sender: dict[str, Any] | None, text: str, **kwargs: Any) -> None:
        """Push an update the bot must ignore; a follow-up /help proves it was processed first. Settles first,
        so a late message of an earlier command is not taken for an answer to this one."""
        await self.settle()
        before = len(self.api.sent())
        self.api.push_update(message_update(self.api, chat_id, sender, text, **kwargs))
        self.api.push_update(message_update(self.api, 777, user(777), "/help"))
        sent = await self.api.wait_for(before + 1)
        assert [int(p["chat_id"]) for p in sent[before:]] == [777]

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until the bot is done with all it was given: every due announcement pushed (the outbox has no
        pending row and nothing in flight), every update handled and every message sent."""
        assert await self.runtime.outbox.idle(timeout), "the outbox did not drain"
        assert await self.channel.idle(timeout), "the channel did not finish"

    async def balance(self, who: dict[str, Any]) -> int:
        async with self.runtime.deps.db.read() as repos:
            member = await repos.members.by_identity("telegram", str(who["id"]))
        assert member is not None
        return member.balance


def harness_settings(api: FakeBotApi, db: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "locale": "en",
        "storage": storage_for(db),  # the engine under test: that file, or a PostgreSQL database for it
        # No "/" menus: their round of getMyCommands/setMyCommands at each start is tests/test_telegram_menus.py's.
        "telegram": {"token": api.token, "base_url": api.base_url, "groups": [GROUP], "command_menus": False},
        # The group's admin (ADMIN) is staff here only because `group_admins` says so (none by default).
        "staff": {"telegram": [STAFF_ID], "telegram_chat": STAFF_CHAT, "group_admins": "manager"},
        "greetings": {"enabled": False},  # holiday greetings would take announcement numbers the tests count on
        # A wider margin under Telegram's limits than the defaults: a millisecond of jitter is 10 at this pace.
        "delivery": {"telegram_per_second": 20, "private_gap_seconds": 1.3},
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def running_bot(api: FakeBotApi, settings: Settings, clock: FakeClock) -> AsyncIterator[Harness]:
    """The bot as `vipbot run` starts it (polling), on the given fake Bot API and clock."""
    runtime = await Runtime.open(settings, clock)
    channel = TelegramChannel(settings, runtime.dispatcher, pace=PACE)
    await channel.attach(runtime)
    await channel.start()
    await runtime.start()
    harness = Harness(api, runtime, channel)
    try:
        yield harness
    finally:
        await channel.stop()
        await runtime.close()
    assert harness.allow_floods or not api.flood_refusals(), f"the bot provoked 429s: {api.flood_refusals()[:3]}"


@asynccontextmanager
async def fake_api() -> AsyncIterator[FakeBotApi]:
    api = await FakeBotApi(now=PACE.now).start()
    api.admins[GROUP] = [ADMIN_ID]
    try:
        yield api
    finally:
        await api.stop()
