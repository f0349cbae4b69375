"""`telegram.proxy`: every call to the Bot API (getMe, polling, sends, file downloads) goes through the outgoing
proxy, here a real HTTP proxy on 127.0.0.1 in front of the fake Bot API; a proxy URL httpx cannot use is refused
when the configuration is read, without repeating a password it holds."""

from __future__ import annotations

import asyncio
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from bot.app.config import ConfigError, Settings, load_settings
from handlers.core.clock import FakeClock
from handlers.core.messages import Document
from tests.fakes.bot_api import FakeBotApi, user
from tests.tg_harness import fake_api, harness_settings, running_bot

TELEGRAM = "http://api.telegram.invalid/bot"
"""A Bot API address this machine cannot reach (the tests refuse to resolve it): only the proxy gets there."""


@dataclass
class ForwardProxy:
    """An HTTP forward proxy: takes absolute-URI requests (``POST http://host/path HTTP/1.1``, what a client
    sends a proxy for an http:// address), sends each to `upstream` whatever host it names, relays the answer
    and closes the connection. Records (method, host, path) of each request."""

    upstream: int
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def methods(self) -> list[str]:
        return [path.rsplit("/", 1)[-1] for _, _, path in self.seen if path.startswith("/bot")]

    async def start(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, target, _ = request_line.split(" ")
            headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]
            length = int(next((v for k, v in headers if k.lower() == "content-length"), "0"))
            body = await reader.readexactly(length)
            url = urlsplit(target)
            if not url.scheme:  # an origin-form request: a client talking to us as if we were the server
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            self.seen.append((method, url.netloc, unquote(url.path)))
            kept = [(k, v) for k, v in headers if k.lower() not in ("connection", "proxy-connection", "keep-alive")]
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
            path = url.path + (f"?{url.query}" if url.query else "")
            up_writer.write(f"{method} {path} HTTP/1.1\r\n".encode("latin-1"))
            up_writer.write("".join(f"{k}: {v}\r\n" for k, v in kept).encode("latin-1"))
            up_writer.write(b"Connection: close\r\n\r\n" + body)
            await up_writer.drain()
            answer = await up_reader.read()
            up_writer.close()
            answer_head, _, answer_body = answer.partition(b"\r\n\r\n")
            status_line, *answer_lines = answer_head.decode("latin-1").split("\r\n")
            answer_lines = [line for line in answer_lines if not line.lower().startswith("connection:")]
            writer.write("\r\n".join([status_line, *answer_lines, "Connection: close", "", ""]).encode("latin-1"))
            writer.write(answer_body)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def proxied_settings(api: FakeBotApi, proxy: ForwardProxy, db: Path, **telegram: str) -> Settings:
    return harness_settings(
        api, db, telegram={"token": api.token, "base_url": TELEGRAM, "proxy": proxy.url, "groups": [], **telegram}
    )


async def test_the_bot_reaches_telegram_only_through_the_proxy(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        proxy = await ForwardProxy(api.port).start()
        try:
            settings = proxied_settings(api, proxy, tmp_path / "p.db")
            async with running_bot(api, settings, clock) as bot:
                assert "/checkin" in await bot.send(4242, user(4242), "/help")
                file_id = api.add_file(b"phone,name\n")
                content = await bot.channel.fetch_document(Document("list.csv", 11, file_id))
                assert content == b"phone,name\n"
        finally:
            await proxy.stop()
        methods = proxy.methods()
        assert methods[0] == "getMe"  # Application.initialize, on the bot's request object
        for method in ("deleteWebhook", "getUpdates", "sendMessage", "getFile"):
            assert method in methods, method
        assert {host for _, host, _ in proxy.seen} == {"api.telegram.invalid"}
        downloads = [path for verb, _, path in proxy.seen if verb == "GET"]
        assert downloads == [f"/file/bot{api.token}/documents/{file_id}"]  # derived from base_url
        assert api.downloads == [f"documents/{file_id}"]


async def test_base_file_url_is_where_files_come_from(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        proxy = await ForwardProxy(api.port).start()
        try:
            settings = proxied_settings(api, proxy, tmp_path / "p.db", base_file_url="http://files.invalid/file/bot")
            async with running_bot(api, settings, clock) as bot:
                file_id = api.add_file(b"x")
                assert await bot.channel.fetch_document(Document("a.csv", 1, file_id)) == b"x"
        finally:
            await proxy.stop()
        assert [(host, path) for verb, host, path in proxy.seen if verb == "GET"] == [
            ("files.invalid", f"/file/bot{api.token}/documents/{file_id}")
        ]


def test_the_proxy_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIPBOT_TELEGRAM__PROXY", "http://127.0.0.1:7890")
    config = tmp_path / "config.yaml"
    config.write_text("telegram:\n  proxy: http://10.0.0.1:3128\n", encoding="utf-8")
    assert load_settings(config).telegram.proxy == "http://127.0.0.1:7890"  # the environment wins
    monkeypatch.setenv("VIPBOT_TELEGRAM__PROXY", "localhost:7890")
    with pytest.raises(ConfigError, match=r"telegram\.proxy"):
        load_settings(config)


@pytest.mark.parametrize(
    ("proxy", "says"),
    [
        ("ftp://shop:hunter2@127.0.0.1:21", "not ftp://"),
        ("socks4://127.0.0.1:1080", "not socks4://"),
        ("127.0.0.1:7890", "it has no scheme"),
        ("http://", "needs a host"),
        ("http://127.0.0.1:99999", "invalid port"),
    ],
)
def test_an_unusable_proxy_is_refused_at_load(tmp_path: Path, proxy: str, says: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"telegram:\n  proxy: '{proxy}'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    message = str(refused.value)
    assert "telegram.proxy" in message and says in message
    assert "http://127.0.0.1:7890" in message  # the example of a good one
    assert "hunter2" not in message


def test_socks_needs_its_extra(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("telegram:\n  proxy: socks5h://127.0.0.1:1080\n", encoding="utf-8")
    if importlib.util.find_spec("socksio") is None:
        with pytest.raises(ConfigError, match=r"python-telegram-bot\[socks\]"):
            load_settings(config)
    else:
        assert load_settings(config).telegram.proxy == "socks5h://127.0.0.1:1080"
