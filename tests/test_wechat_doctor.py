"""`vipbot doctor`'s WeChat checks against the real bot's /wechat endpoint on a tornado server and the fake WeChat
API: all well, and each failure named (IP whitelist, AppSecret, the signature check, the port, the mode)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app.checks import Finding, Outcome
from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.app.web import WebServer
from bot.wechat.channel import WeChatChannel
from bot.wechat.doctor import MODE, SIGNATURE, TOKEN, URL, checks
from handlers.core.clock import FakeClock
from tests.fakes.wechat_api import FakeWeChatApi

TOKEN_VALUE = "shoptoken"
APP_ID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OTHER_KEY = "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkj"
PUBLIC_URL = "https://shop.example/wechat"


class ToLocal(httpx.AsyncBaseTransport):
    """Sends what is addressed to the public URL to the bot on 127.0.0.1 (what DNS and the reverse proxy do live)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self.port)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class Bot:
    runtime: Runtime
    web: WebServer
    channel: WeChatChannel

    async def stop(self) -> None:
        await self.web.stop()
        await self.channel.stop()
        await self.runtime.close()


def settings(tmp_path: Path, api: FakeWeChatApi, name: str = "wx", **wechat: Any) -> Settings:
    return Settings(
        storage={"path": str(tmp_path / f"{name}.db")},
        wechat={"app_id": APP_ID, "token": TOKEN_VALUE, "encoding_aes_key": AES_KEY, "mode": "compatible",
                "app_secret": "secret", "api_base_url": api.base_url, "server_url": PUBLIC_URL, **wechat},
        greetings={"enabled": False},
    )  # fmt: skip


async def start_bot(config: Settings, clock: FakeClock) -> Bot:
    runtime = await Runtime.open(config, clock)
    web = WebServer("127.0.0.1", 0, config.http.max_body_bytes)
    channel = WeChatChannel(config, runtime.dispatcher)
    await channel.attach(runtime, web)
    await web.start()
    await runtime.start()
    return Bot(runtime, web, channel)


@pytest.fixture
async def api() -> AsyncIterator[FakeWeChatApi]:
    fake = await FakeWeChatApi(app_secret="secret").start()
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
async def bots(clock: FakeClock) -> AsyncIterator[Callable[[Settings], Any]]:
    """Start the real bot with the given settings (on a random local port); each is stopped at the end."""
    started: list[Bot] = []

    async def start(config: Settings) -> Bot:
        started.append(await start_bot(config, clock))
        return started[-1]

    try:
        yield start
    finally:
        for bot in started:
            await bot.stop()


async def doctor(config: Settings, clock: FakeClock, port: int | None = None) -> dict[str, Finding]:
    transport = ToLocal(port) if port is not None else None
    findings = await checks(config, transport=transport, clock=lambda: clock.now().timestamp())
    by_name = {f.name: f for f in findings}
    assert len(by_name) == len(findings)  # one finding per check
    return by_name


def failed(findings: dict[str, Finding]) -> set[str]:
    return {name for name, f in findings.items() if f.outcome is Outcome.FAIL}


@pytest.mark.parametrize("mode", ["plain", "compatible", "safe"])
async def test_doctor_passes_against_the_running_bot(
    tmp_path: Path, api: FakeWeChatApi, bots: Any, clock: FakeClock, mode: str
) -> None:
    config = settings(tmp_path, api, mode=mode)
    bot = await bots(config)
    found = await doctor(config, clock, bot.web.port)
    assert set(found) == {TOKEN, URL, SIGNATURE, MODE}
    assert all(f.outcome is Outcome.OK for f in found.values()), found
    assert api.token_requests == 1
    if mode != "plain":
        assert "decrypted a message encrypted with this EncodingAESKey" in found[MODE].detail
    async with bot.runtime.deps.db.read() as repos:  # the probes reached no handler: nobody was made a member
        (row,) = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM members")
    assert row[0] == 0


async def test_a_bot_running_with_another_token_fails_the_signature_check(
    tmp_path: Path, api: FakeWeChatApi, bots: Any, clock: FakeClock
) -> None:
    bot = await bots(settings(tmp_path, api, "server", token="another-token"))
    found = await doctor(settings(tmp_path, api), clock, bot.web.port)
    assert failed(found) == {SIGNATURE}
    assert "403" in found[SIGNATURE].detail and "wechat.token" in found[SIGNATURE].fix


async def test_a_bot_with_another_aes_key_or_in_plain_mode_fails_the_mode(
    tmp_path: Path, api: FakeWeChatApi, bots: Any, clock: FakeClock
) -> None:
    other_key = await bots(settings(tmp_path, api, "other-key", encoding_aes_key=OTHER_KEY))
    found = await doctor(settings(tmp_path, api), clock, other_key.web.port)
    assert failed(found) == {MODE} and "another key" in found[MODE].detail
    plain = await bots(settings(tmp_path, api, "plain", mode="plain"))
    found = await doctor(settings(tmp_path, api, mode="safe"), clock, plain.web.port)
    assert failed(found) == {MODE} and "plain mode" in found[MODE].detail


async def test_a_skewed_clock_is_named(tmp_path: Path, api: FakeWeChatApi, bots: Any, clock: FakeClock) -> None:
    config = settings(tmp_path, api)
    bot = await bots(config)
    findings = await checks(config, transport=ToLocal(bot.web.port), clock=lambda: clock.now().timestamp() + 3600)
    (mode,) = [f for f in findings if f.outcome is Outcome.FAIL]
    assert mode.name == MODE and "NTP" in mode.fix


async def test_a_url_on_another_port_fails_before_anything_is_sent(
    tmp_path: Path, api: FakeWeChatApi, clock: FakeClock
) -> None:
    transport = ToLocal(1)
    findings = await checks(settings(tmp_path, api, server_url="https://shop.example:8080/wechat"),
                            transport=transport, clock=lambda: clock.now().timestamp())  # fmt: skip
    found = {f.name: f for f in findings}
    assert failed(found) == {URL}
    assert "port 8080" in found[URL].detail and "443" in found[URL].detail
    assert SIGNATURE not in found and transport.requests == []
    plain_http = await doctor(settings(tmp_path, api, server_url="http://shop.example:8443/wechat"), clock)
    assert failed(plain_http) == {URL} and "port 80" in plain_http[URL].detail


async def test_no_server_url_warns_with_the_fix(tmp_path: Path, api: FakeWeChatApi, clock: FakeClock) -> None:
    found = await doctor(settings(tmp_path, api, server_url=""), clock)
    assert found[URL].outcome is Outcome.WARN and "wechat.server_url" in found[URL].fix
    assert SIGNATURE not in found and found[MODE].outcome is Outcome.OK and "not tried" in found[MODE].detail


async def test_an_unreachable_server_url_fails(tmp_path: Path, api: FakeWeChatApi, clock: FakeClock) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    found = await doctor(settings(tmp_path, api), clock, port)
    assert failed(found) == {SIGNATURE} and "cannot reach" in found[SIGNATURE].detail


async def test_ip_not_whitelisted_names_the_ip(tmp_path: Path, api: FakeWeChatApi, clock: FakeClock) -> None:
    api.refuse_ip = "198.51.100.23"
    found = await doctor(settings(tmp_path, api, server_url=""), clock)
    assert failed(found) == {TOKEN}
    assert "errcode 40164" in found[TOKEN].detail
    assert "198.51.100.23" in found[TOKEN].fix and "IP白名单" in found[TOKEN].fix


async def test_a_wrong_app_secret_is_named(tmp_path: Path, api: FakeWeChatApi, clock: FakeClock) -> None:
    found = await doctor(settings(tmp_path, api, server_url="", app_secret="stale"), clock)
    assert failed(found) == {TOKEN} and "wrong AppSecret" in found[TOKEN].fix
    missing = await doctor(settings(tmp_path, api, server_url="", app_secret=""), clock)
    assert failed(missing) == {TOKEN} and "WECHAT_APP_SECRET" in missing[TOKEN].fix


async def test_wechat_off_is_one_ok_line(tmp_path: Path) -> None:
    (finding,) = await checks(Settings(storage={"path": str(tmp_path / "off.db")}))
    assert finding.outcome is Outcome.OK and finding.name == "wechat"
