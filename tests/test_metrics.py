"""/metrics: the bot as `vipbot run` starts it, scraped over real HTTP while traffic flows through the fake Bot
API; the figures move by exactly what happened. And who may read them."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app.cli import run_bot
from bot.app.config import Settings
from bot.app.metrics import access_networks, may_scrape
from storage.ledger import LedgerRepo
from tests.conftest import storage_for
from tests.fakes.bot_api import FakeBotApi, message_update, user

GROUP = -1001234567890
STAFF_ID = 500
ALICE, BOB, CAROL = user(101, "Alice", "alice"), user(102, "Bob", "bob"), user(103, "Carol", "carol")
STAFF = user(STAFF_ID, "Shop", "shopkeeper")
PUSH_TEXT = "Winter sale starts Friday"
RETRY_AFTER = 2
"""Seconds the fake's one 429 asks the bot to wait: the push's row is 'sending' meanwhile."""

Figures = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse(text: str) -> Figures:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(figures: Figures, name: str, **labels: str) -> float:
    """A sample's value; 0 when the series is not there (yet)."""
    return figures.get((name, frozenset(labels.items())), 0.0)


async def until(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


STATES = "SELECT state FROM deliveries ORDER BY id"


def delivery_states(db: Path) -> list[str]:
    """The deliveries' states, read from the database itself (not through the bot): the SQLite file, or on
    PostgreSQL the test's database on a connection of its own (in a thread: the bot runs on this loop)."""
    url = storage_for(db).get("url")
    if not url:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return [row[0] for row in conn.execute(STATES)]

    async def read() -> list[str]:
        import asyncpg

        conn = await asyncpg.connect(url)
        try:
            return [row[0] for row in await conn.fetch(STATES)]
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, read()).result()


def settings_for(api: FakeBotApi, db: Path, port: int) -> Settings:
    return Settings(
        locale="en",
        storage=storage_for(db),
        telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP], "rate_limiter": False},
        staff={"telegram": [STAFF_ID]},
        greetings={"enabled": False},
        http={"host": "127.0.0.1", "port": port, "monitoring": True},  # polling: the server only for monitoring
    )  # fmt: skip


async def test_metrics_move_when_traffic_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = await FakeBotApi(limits=False).start()  # the only 429 is the one forced below
    flooded: list[dict[str, Any]] = []

    def one_flood(params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        if PUSH_TEXT in str(params.get("text", "")) and not flooded:
            flooded.append(params)
            return 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {RETRY_AFTER}",
                         "parameters": {"retry_after": RETRY_AFTER}}  # fmt: skip
        return None

    api.fail["sendMessage"] = one_flood

    async def broken_recent(self: LedgerRepo, member_id: int, limit: int) -> list[Any]:
        raise RuntimeError("a bug in /points")

    monkeypatch.setattr(LedgerRepo, "recent", broken_recent)
    port, db = free_port(), tmp_path / "metrics.db"
    stop = asyncio.Event()
    bot = asyncio.create_task(run_bot(settings_for(api, db, port), stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:

            async def scrape() -> Figures:
                response = await client.get("/metrics")
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain; version=")  # the text format
                return parse(response.text)

            for _ in range(600):  # the server comes up last, once everything runs
                try:
                    health = await client.get("/healthz")
                    break
                except httpx.ConnectError:
                    assert not bot.done(), bot
                    await asyncio.sleep(0.05)
            body = health.json()
            assert body == {"status": "ok", "database": True, "scheduler": True, "channels": {"telegram": "polling"},
                            "process": body["process"], "leading": True, "leader": body["process"]}  # it leads alone
            assert body["process"].startswith("vipbot ")
            before = await scrape()
            assert value(before, "vipbot_db_up") == 1

            # Three check-ins in the group: three updates handled, each answered once (the board shows it).
            for who in (ALICE, BOB, CAROL):
                api.push_update(message_update(api, GROUP, who, "签到"))
                name = who["first_name"]
                await until(lambda n=name: any(n in text for text in api.messages(GROUP).values()), f"{name}'s board")
            after_checkins = await scrape()
            assert value(after_checkins, "vipbot_updates_total", channel="telegram") == (
                value(before, "vipbot_updates_total", channel="telegram") + 3
            )
            assert value(after_checkins, "vipbot_answers_total", channel="telegram") == (
                value(before, "vipbot_answers_total", channel="telegram") + 3
            )
            assert value(after_checkins, "vipbot_handler_errors_total", channel="telegram") == 0
            assert value(after_checkins, "vipbot_db_transaction_seconds_count") >= (
                value(before, "vipbot_db_transaction_seconds_count") + 3  # at least each check-in's own
            )
            assert value(after_checkins, "vipbot_inbox_pending", channel="telegram") == 0

            # A handler that fails: one more update, its apology an answer, and one handler error.
            sent_before = len(api.sent())
            api.push_update(message_update(api, GROUP, ALICE, "/points"))
            (apology,) = (await api.wait_for(sent_before + 1))[sent_before:]
            assert apology["text"].startswith("Sorry, something went wrong")
            after_error = await scrape()
            assert value(after_error, "vipbot_updates_total", channel="telegram") == (
                value(before, "vipbot_updates_total", channel="telegram") + 4
            )
            assert value(after_error, "vipbot_answers_total", channel="telegram") == (
                value(before, "vipbot_answers_total", channel="telegram") + 4
            )
            assert value(after_error, "vipbot_handler_errors_total", channel="telegram") == 1

            # An announcement to the group: its push meets one 429, waits 'sending', then is sent.
            sent_before = len(api.sent())
            api.push_update(message_update(api, GROUP, STAFF, f"/announce {PUSH_TEXT}!"))
            (queued,) = (await api.wait_for(sent_before + 1))[sent_before:]
            assert "queued for 1 recipient." in queued["text"]
            await until(lambda: bool(flooded), "the 429")
            during = await scrape()
            assert delivery_states(db) == ["sending"]
            assert value(during, "vipbot_pushes_waiting", state="sending") == 1
            assert value(during, "vipbot_pushes_waiting", state="pending") == 0
            assert value(during, "vipbot_telegram_429_total", scope="group") == (
                value(before, "vipbot_telegram_429_total", scope="group") + 1
            )
            await until(lambda: any(PUSH_TEXT in p["text"] for p in api.sent()), "the push", timeout=RETRY_AFTER + 30)
            await until(lambda: delivery_states(db) == ["sent"], "the push's row settled")
            after_push = await scrape()
            assert value(after_push, "vipbot_pushes_total", channel="telegram", outcome="sent") == (
                value(before, "vipbot_pushes_total", channel="telegram", outcome="sent") + 1
            )
            assert value(after_push, "vipbot_pushes_total", channel="telegram", outcome="failed") == 0
            assert value(after_push, "vipbot_pushes_waiting", state="sending") == 0
            assert value(after_push, "vipbot_telegram_429_total", scope="group") == 1
            assert value(after_push, "vipbot_telegram_429_total", scope="private") == 0
            assert value(after_push, "vipbot_updates_total", channel="telegram") == (
                value(before, "vipbot_updates_total", channel="telegram") + 5
            )
            assert value(after_push, "vipbot_sender_queue", channel="telegram") == 0

            detail = (await client.get("/healthz", params={"detail": "1"})).json()
            assert detail["waiting"]["pushes"] == {}  # nothing left to settle
            assert detail["waiting"]["senders"] == {"telegram": 0}
            # A client a reverse proxy reports from elsewhere is not served, whatever the connection's address
            # (127.0.0.2 is outside the default 127.0.0.1/32, and tornado may parse it without the network).
            proxied = await client.get("/metrics", headers={"X-Real-IP": "127.0.0.2"})
            assert proxied.status_code == 403
            plain = (await client.get("/healthz", params={"detail": "1"}, headers={"X-Real-IP": "127.0.0.2"})).json()
            assert plain["status"] == "ok" and "waiting" not in plain
            assert plain["leading"] is True and "process" not in plain and "leader" not in plain  # no pid, no host
    finally:
        stop.set()
        await asyncio.wait_for(bot, 30)
        await api.stop()


def test_only_the_listed_networks_may_scrape() -> None:
    loopback = access_networks(["127.0.0.1/32", "::1/128"])
    assert may_scrape("127.0.0.1", "127.0.0.1", loopback)
    assert may_scrape("::1", "::1", loopback)
    assert may_scrape("::ffff:127.0.0.1", "::ffff:127.0.0.1", loopback)  # a dual-stack socket's IPv4 client
    assert not may_scrape("198.51.100.7", "198.51.100.7", loopback)  # straight from the internet
    assert not may_scrape("198.51.100.7", "127.0.0.1", loopback)  # a forged X-Real-IP on the open port
    assert not may_scrape("127.0.0.1", "198.51.100.7", loopback)  # through a reverse proxy on this host
    assert not may_scrape(None, "127.0.0.1", loopback)
    assert not may_scrape("127.0.0.1", "not-an-ip", loopback)
    office = access_networks(["127.0.0.1/32", "10.0.0.0/8"])
    assert may_scrape("127.0.0.1", "10.2.3.4", office)  # the monitoring host, through the proxy
    assert may_scrape("10.2.3.4", "10.2.3.4", office)
    assert not may_scrape("10.2.3.4", "11.0.0.1", office)
    assert office == [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")]


def test_metrics_from_must_be_networks() -> None:
    assert Settings(http={"metrics_from": ["192.168.0.0/16"]}).http.metrics_from == ["192.168.0.0/16"]
    with pytest.raises(ValueError, match="not an IP network"):
        Settings(http={"metrics_from": ["localhost"]})
