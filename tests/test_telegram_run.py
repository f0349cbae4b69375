"""Running for real: `vipbot run` against a fake Bot API, and the webhook mode with its secret header."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from datetime import timedelta
from pathlib import Path

import httpx

from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.app.scheduler import prune_seen_updates
from bot.app.web import WebServer
from bot.telegram.channel import TelegramChannel
from handlers.core.clock import FakeClock
from tests.conftest import storage_env, storage_for
from tests.fakes.bot_api import FakeBotApi, message_update, user

ROOT = Path(__file__).resolve().parent.parent
GROUP = -100777
ALICE = user(101, "Alice", "alice")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_vipbot_run_polls_answers_and_stops_cleanly(tmp_path: Path) -> None:
    api = await FakeBotApi().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPBOT_")}
    env |= {
        "TELEGRAM_BOT_TOKEN": api.token,
        "VIPBOT_TELEGRAM__BASE_URL": api.base_url,
        "VIPBOT_TELEGRAM__GROUPS": json.dumps([GROUP]),
        **storage_env(tmp_path / "run.db"),  # the engine under test
        "VIPBOT_LOCALE": "en",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.app.cli",
        "run",
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await api.wait_for(1, method="getUpdates", timeout=30)
        api.push_update(message_update(api, GROUP, ALICE, "签到"))
        (reply,) = await api.wait_for(1, timeout=30)
        assert "Alice (1-day streak)" in reply["text"] and int(reply["chat_id"]) == GROUP  # the day's board
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        await api.stop()
    assert proc.returncode == 0, stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert api.token not in stderr.decode()  # the token never reaches the log


async def test_with_a_log_file_the_bot_logs_there_and_reopens_it_after_a_rotation(tmp_path: Path) -> None:
    api = await FakeBotApi().start()
    log = tmp_path / "logs" / "vipbot.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPBOT_")}
    env |= {
        "TELEGRAM_BOT_TOKEN": api.token,
        "VIPBOT_TELEGRAM__BASE_URL": api.base_url,
        "VIPBOT_TELEGRAM__GROUPS": json.dumps([GROUP]),
        "VIPBOT_TELEGRAM__COMMAND_MENUS": "false",
        **storage_env(tmp_path / "run.db"),  # the engine under test
        "VIPBOT_LOG_FILE": str(log),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.app.cli", "run", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await api.wait_for(1, method="getUpdates", timeout=30)
        for _ in range(300):  # the line comes once the scheduler runs, just after polling began
            if log.exists() and "vipbot is running" in log.read_text(encoding="utf-8"):
                break
            await asyncio.sleep(0.1)
        rotated = log.with_name("vipbot.log.1")
        log.rename(rotated)  # what logrotate does (deploy/logrotate/vipbot: no copytruncate)
        api.push_update(message_update(api, GROUP, ALICE, "/help"))
        await api.wait_for(1, timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        await api.stop()
    assert proc.returncode == 0, stderr.decode()
    assert "vipbot is running" in rotated.read_text(encoding="utf-8")
    assert "vipbot is running" not in stderr.decode()  # the log went to the file, not to stderr
    assert "Application.stop() complete" in log.read_text(encoding="utf-8")  # a new file after the move


async def test_webhook_mode_checks_the_secret_header(tmp_path: Path, clock: FakeClock) -> None:
    api = await FakeBotApi().start()
    port = free_port()
    settings = Settings(
        locale="en",
        storage=storage_for(tmp_path / "wh.db"),
        telegram={
            "token": api.token,
            "base_url": api.base_url,
            "groups": [GROUP],
            "rate_limiter": False,
            "webhook": {"url": "https://shop.invalid/telegram", "secret_token": "s3cret-Token_1"},
        },
    )
    runtime = await Runtime.open(settings, clock)
    channel = TelegramChannel(settings, runtime.dispatcher)
    web = WebServer("127.0.0.1", port)
    await channel.attach(runtime)
    await channel.start(web)
    await runtime.start()  # as `vipbot run`: this process leads, so it registers the webhook and handles updates
    await web.start()
    try:
        (registered,) = api.sent("setWebhook")
        assert registered["url"] == "https://shop.invalid/telegram"
        assert registered["secret_token"] == "s3cret-Token_1"
        update = message_update(api, GROUP, ALICE, "/checkin")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                refused = await client.post("/telegram", json=update, headers=headers)
                assert refused.status_code == 403
            ok = await client.post(
                "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token_1"}
            )
            assert ok.status_code == 200
            (reply,) = await api.wait_for(1)
            assert "Alice (1-day streak)" in reply["text"]
            # Telegram retries a webhook on any error: the same update again has no second effect.
            again = await client.post(
                "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token_1"}
            )
            assert again.status_code == 200
            bad = await client.post(
                "/telegram",
                content=b"{not json",
                headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token_1", "Content-Type": "application/json"},
            )
            assert bad.status_code == 400
            for body in (b"[]", b'{"no": "update_id"}', "签到".encode("gbk"), b"x" * 70_000):
                refused = await client.post(
                    "/telegram", content=body, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-Token_1"}
                )
                assert 400 <= refused.status_code < 500, body[:20]
        async with runtime.deps.db.read() as repos:
            member = await repos.members.by_identity("telegram", "101")
            assert member is not None and member.balance == 10
    finally:
        await web.stop()
        await channel.stop()
        await runtime.close()
        await api.stop()


async def test_seen_update_keys_are_pruned_after_two_days(runtime: Runtime, clock: FakeClock) -> None:
    async with runtime.deps.db.transaction() as repos:
        assert await repos.inbox.claim("telegram:update:1", "telegram", runtime.deps.now_ts())
        assert not await repos.inbox.claim("telegram:update:1", "telegram", runtime.deps.now_ts())
    clock.advance(timedelta(days=1))
    assert await prune_seen_updates(runtime.deps) == 0
    clock.advance(timedelta(days=1, seconds=1))
    assert await prune_seen_updates(runtime.deps) == 1
    async with runtime.deps.db.transaction() as repos:  # forgotten, so new again
        assert await repos.inbox.claim("telegram:update:1", "telegram", runtime.deps.now_ts())


def test_channel_posts_make_no_member() -> None:
    from telegram import Bot, Update

    from bot.telegram.channel import to_inbound

    data = {
        "update_id": 5,
        "channel_post": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": -100555, "type": "channel", "title": "News"},
            "text": "/checkin",
        },
    }
    assert to_inbound(Update.de_json(data, Bot("1:x"))) is None


async def _health_of(proc: asyncio.subprocess.Process, port: int) -> httpx.Response | None:
    """The bot's first /healthz answer once its server is up (one naming its process: the port may have been
    taken by another test's server); None when the process exited first."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        for _ in range(600):  # bounded: 30 s
            if proc.returncode is not None:
                return None
            try:
                answer = await client.get("/healthz")
            except httpx.ConnectError:
                answer = None
            if answer is not None and f"vipbot {proc.pid}@" in answer.text:  # this bot's, not another test's server
                return answer
            await asyncio.sleep(0.05)
    raise AssertionError("the bot's server never came up")


async def test_one_server_serves_telegram_wechat_and_healthz(tmp_path: Path) -> None:
    """`vipbot run` with a Telegram webhook and a WeChat account: one port, three paths."""
    import hashlib

    api = await FakeBotApi().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIPBOT_", "WECHAT_", "TELEGRAM_"))}
    env |= {
        "TELEGRAM_BOT_TOKEN": api.token,
        "TELEGRAM_WEBHOOK_SECRET": "hook-secret",
        "WECHAT_TOKEN": "wxtoken",
        "VIPBOT_TELEGRAM__BASE_URL": api.base_url,
        "VIPBOT_TELEGRAM__WEBHOOK__URL": "https://shop.invalid/telegram",
        "VIPBOT_TELEGRAM__GROUPS": json.dumps([GROUP]),
        "VIPBOT_WECHAT__APP_ID": "wx0123456789abcdef",
        "VIPBOT_HTTP__HOST": "127.0.0.1",
        **storage_env(tmp_path / "one.db"),  # the engine under test
        "VIPBOT_LOCALE": "en",
    }
    for _ in range(3):  # another test may bind the free port first: the bot then exits 1 naming it
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.app.cli", "run", cwd=ROOT, env=env | {"VIPBOT_HTTP__PORT": str(port)},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        health = await _health_of(proc, port)
        if health is not None:
            break
        _, stderr = await proc.communicate()
        assert b"Address already in use" in stderr, stderr.decode()
    else:
        raise AssertionError("no free port for the bot")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert health.status_code == 200
            body = health.json()
            assert body == {
                "status": "ok", "database": True, "scheduler": True,
                "channels": {"telegram": "webhook", "wechat": "webhook"},
                "process": body["process"], "leading": True, "leader": body["process"],  # the only process leads
            }  # fmt: skip
            assert (await client.post("/telegram", json={"update_id": 1})).status_code == 403
            ts, nonce = "1700000000", "n"
            sig = hashlib.sha1("".join(sorted(["wxtoken", ts, nonce])).encode()).hexdigest()
            echo = await client.get(
                "/wechat", params={"signature": sig, "timestamp": ts, "nonce": nonce, "echostr": "ok7"}
            )
            assert echo.text == "ok7"
            update = message_update(api, GROUP, ALICE, "签到")
            sent = await client.post(
                "/telegram", json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "hook-secret"}
            )
            assert sent.status_code == 200
            (reply,) = await api.wait_for(1, timeout=30)
            assert "Alice (1-day streak)" in reply["text"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        await api.stop()
    assert proc.returncode == 0, stderr.decode()
