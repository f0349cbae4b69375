"""Process state stays bounded and the code uses only public library APIs.

The Telegram adapter's caches (membership, apologies, board texts) keep at most their size however many
distinct keys come by; no module of the bot reaches into a library's private names; the WeChat reply budget
counts from the arrival the handler records itself.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from telegram import Bot

import bot.telegram.channel as telegram_channel
from bot.app.config import Settings
from bot.app.web import LimitedHandler, WebServer
from bot.telegram.channel import TelegramChannel
from bot.wechat.channel import WeChatHandler
from handlers.core.clock import FakeClock
from handlers.core.messages import Identity, Inbound, Reply
from tests.fakes.wechat_api import FakeWeChatApi
from tests.test_wechat import _start, _stop, text_xml, wechat_settings

ROOT = Path(__file__).resolve().parent.parent
GROUP = -1001234567890


def channel_settings(tmp_path: Path) -> Settings:
    return Settings(
        locale="en",
        storage={"path": str(tmp_path / "bounded.db")},
        telegram={"token": "123:abc", "base_url": "http://127.0.0.1:9/bot", "groups": [GROUP]},
    )


def private(user_id: int) -> Inbound:
    return Inbound(channel="telegram", chat_id=str(user_id), sender=Identity("telegram", str(user_id), "M", None),
                   text="/points", is_group=False, key=f"telegram:update:{user_id}")  # fmt: skip


async def test_the_membership_cache_keeps_at_most_its_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telegram_channel, "MEMBER_CACHE_SIZE", 50, raising=False)
    asked: list[int] = []

    async def get_chat_member(self: Bot, chat_id: int, user_id: int, **_: Any) -> Any:
        asked.append(user_id)
        return SimpleNamespace(status="member")

    monkeypatch.setattr(type(Bot("123:abc")), "get_chat_member", get_chat_member)
    channel = TelegramChannel(channel_settings(tmp_path), dispatcher=None)  # type: ignore[arg-type]
    monkeypatch.setattr(type(channel.application.bot), "get_chat_member", get_chat_member)
    for user_id in range(1, 1001):
        assert await channel.is_group_member(private(user_id))
    assert len(channel._members) <= 50
    assert len(asked) == 1000
    assert await channel.is_group_member(private(1000))  # the most recent answers are still remembered
    assert len(asked) == 1000


async def test_apologies_are_remembered_once_each_within_a_bounded_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(telegram_channel, "APOLOGY_MEMORY", 100, raising=False)
    channel = TelegramChannel(channel_settings(tmp_path), dispatcher=None)  # type: ignore[arg-type]
    nothing_to_answer = SimpleNamespace(callback_query=None, message=None)
    for n in range(5000):  # storage fails while thousands of distinct updates come by
        msg = private(n)
        channel._apologise(msg.key, msg, nothing_to_answer, [Reply("sorry")])  # type: ignore[arg-type]
    assert len(channel._apologised) <= 100
    assert "telegram:update:4999" in channel._apologised


def test_every_cache_of_the_telegram_adapter_has_a_size(tmp_path: Path) -> None:
    from cachetools import Cache

    channel = TelegramChannel(channel_settings(tmp_path), dispatcher=None)  # type: ignore[arg-type]
    for name in ("_members", "_admins", "_admin_failures", "_apologised", "_board_texts", "_board_counts"):
        cache = getattr(channel, name)
        assert isinstance(cache, Cache), name
        assert cache.maxsize < 1_000_000, name
        for key in range(int(cache.maxsize) + 100):
            cache[(str(key), "2026-03-10")] = 1
        assert len(cache) <= cache.maxsize, name


PRIVATE_LIBRARY_USE = [
    re.compile(r"^\s*from\s+(?!bot\b|handlers\b|storage\b)[\w.]+\s+import\s+\(?[^#\n]*\b_[A-Za-z]", re.M),
    re.compile(r"\._start_time\b"),
    re.compile(r"\._bot_user\b"),
    re.compile(r"\._RuleList\b|\b_RuleList\b"),
    re.compile(r"\b(?:request|application|bot|server|connection)\._[a-z]\w*"),
]


def test_no_module_uses_a_private_library_name() -> None:
    found = []
    for package in ("bot", "handlers", "storage"):
        for path in sorted((ROOT / package).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            for pattern in PRIVATE_LIBRARY_USE:
                found += [f"{path.relative_to(ROOT)}: {m.group(0).strip()}" for m in pattern.finditer(source)]
    assert found == []


class Echo(LimitedHandler):
    def initialize(self, max_body: int, word: str) -> None:  # type: ignore[override]
        self.max_body = max_body
        self.word = word

    def post(self) -> None:
        self.finish(self.word)


async def test_the_web_server_builds_and_serves_its_mounted_routes() -> None:
    web = WebServer("127.0.0.1", 0, max_body=100)
    web.mount("/echo", Echo, word="hello")
    await web.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}") as http:
            assert (await http.post("/echo", content=b"x")).text == "hello"
            assert (await http.post("/echo", content=b"x" * 101)).status_code == 413
            assert (await http.post("/echo/more", content=b"x")).status_code == 404
    finally:
        await web.stop()


async def test_the_wechat_reply_budget_counts_from_the_recorded_arrival(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request that already spent its budget before the handler ran (e.g. it waited behind others) is
    answered at once, not a whole budget later."""
    prepare = WeChatHandler.prepare

    def arrived_long_ago(self: WeChatHandler) -> None:
        prepare(self)
        self.arrived = time.monotonic() - 10.0

    monkeypatch.setattr(WeChatHandler, "prepare", arrived_long_ago)
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, reply_budget_seconds=4.0), clock, api)
    try:
        await harness.say("o-gil", "积分")
        async with harness.runtime.deps.db.transaction():  # the answer cannot be ready in time
            response = await asyncio.wait_for(harness.post(text_xml("o-gil", "签到")), 2.0)
        # At once either way: 'success' if the message was kept in the moment left (PostgreSQL: the test's
        # transaction holds up no other connection), else 503 (SQLite's one writer is the test's).
        assert (response.status_code, response.text) in {(200, "success"), (503, "busy")}
    finally:
        await _stop(harness, api)
