"""Untrusted input: the webhook's secret, numbers in any script, out-of-range integers, malformed updates,
stored rows that are no updates, and CSV cells a spreadsheet program would run as formulas."""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.app.web import WebServer
from bot.console.channel import ConsoleChannel
from bot.telegram.channel import TelegramChannel
from bot.telegram.intake import Intake
from bot.telegram.webhook import SECRET_HEADER, TelegramWebhookHandler
from handlers.core.clock import FakeClock
from handlers.core.messages import Button
from handlers.shared.exports import csv_document
from tests.conftest import ChatDriver, local, storage_for
from tests.fakes.bot_api import FakeBotApi, callback_update, message_update
from tests.test_telegram_run import ALICE, GROUP, free_port
from tests.tg_harness import fake_api, harness_settings, running_bot

TOO_BIG = "9223372036854775808"  # 2**63: one more than SQLite's largest integer


# --- the webhook's secret ------------------------------------------------------------------------------
async def test_a_webhook_without_a_configured_secret_gets_a_generated_one(tmp_path: Path, clock: FakeClock) -> None:
    api = await FakeBotApi().start()
    port = free_port()
    settings = Settings(
        locale="en",
        storage=storage_for(tmp_path / "wh.db"),
        telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP], "rate_limiter": False,
                  "webhook": {"url": "https://shop.invalid/telegram"}},  # no secret_token
    )  # fmt: skip
    runtime = await Runtime.open(settings, clock)
    channel = TelegramChannel(settings, runtime.dispatcher)
    web = WebServer("127.0.0.1", port)
    await channel.attach(runtime)
    await channel.start(web)
    await runtime.start()  # as `vipbot run`: this process leads, so it registers the webhook and handles updates
    web.mount("/unguarded", TelegramWebhookHandler, channel=channel, secret="")
    await web.start()
    try:
        (registered,) = api.sent("setWebhook")
        secret = registered.get("secret_token")
        assert isinstance(secret, str) and len(secret) >= 32  # generated, and given to Telegram
        update = message_update(api, GROUP, ALICE, "/checkin")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for headers in ({}, {SECRET_HEADER: ""}, {SECRET_HEADER: "guess"}):
                assert (await client.post("/telegram", json=update, headers=headers)).status_code == 403
            # A handler that somehow got no secret accepts nothing, rather than everything.
            assert (await client.post("/unguarded", json=update, headers={SECRET_HEADER: ""})).status_code == 403
            assert (await client.post("/telegram", json=update, headers={SECRET_HEADER: secret})).status_code == 200
            await api.wait_for(1)
        async with runtime.deps.db.read() as repos:
            member = await repos.members.by_identity("telegram", str(ALICE["id"]))
        assert member is not None and member.balance == 10  # booked once: only the authenticated post
    finally:
        await web.stop()
        await channel.stop()
        await runtime.close()
        await api.stop()


# --- malformed updates on the webhook -------------------------------------------------------------------
def _malformed(api: FakeBotApi) -> dict[str, dict[str, Any]]:
    base = message_update(api, GROUP, ALICE, "/checkin")
    cases: dict[str, dict[str, Any]] = {}

    def case(name: str, path: list[str | int], value: object) -> None:
        update = copy.deepcopy(base)
        update["update_id"] = api.next_update_id()
        part: Any = update
        for step in path[:-1]:
            part = part[step]
        part[path[-1]] = value
        cases[name] = update

    case("sender id as text", ["message", "from", "id"], "abc")
    case("sender id beyond SQLite", ["message", "from", "id"], 2**70)
    case("chat id as text", ["message", "chat", "id"], "abc")
    case("chat id beyond SQLite", ["message", "chat", "id"], -(2**70))
    case("text as a number", ["message", "text"], 12)
    case("message as a list", ["message"], [])
    case("edited message as text", ["edited_message"], "x")
    case("update id beyond SQLite", ["update_id"], 2**70)
    case("update id negative", ["update_id"], -5)
    case("update id true", ["update_id"], True)
    case("topic id as text", ["message", "message_thread_id"], "x")
    case("reply without a chat", ["message", "reply_to_message"], {"message_id": 1, "date": 0})
    press = callback_update(api, GROUP, ALICE, "v1:checkin:")
    press["callback_query"]["data"] = 5
    cases["button data as a number"] = press
    cases["poll option as text"] = {
        "update_id": api.next_update_id(),
        "poll_answer": {"poll_id": "p1", "user": ALICE, "option_ids": ["0"]},
    }
    return cases


async def test_malformed_updates_on_the_webhook_get_400_and_book_nothing(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = await FakeBotApi().start()
    port = free_port()
    settings = Settings(
        locale="en",
        storage=storage_for(tmp_path / "wh.db"),
        telegram={"token": api.token, "base_url": api.base_url, "groups": [GROUP], "rate_limiter": False,
                  "webhook": {"url": "https://shop.invalid/telegram", "secret_token": "s3cret"}},
    )  # fmt: skip
    runtime = await Runtime.open(settings, clock)
    channel = TelegramChannel(settings, runtime.dispatcher)
    web = WebServer("127.0.0.1", port)
    await channel.attach(runtime)
    await channel.start(web)
    await runtime.start()  # as `vipbot run`: this process leads, so it registers the webhook and handles updates
    await web.start()
    headers = {SECRET_HEADER: "s3cret"}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for name, update in _malformed(api).items():
                answer = await client.post("/telegram", json=update, headers=headers)
                assert answer.status_code == 400, name
            deep = b'{"update_id": 1, "message": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
            assert (await client.post("/telegram", content=deep, headers=headers)).status_code == 400
            good = message_update(api, GROUP, ALICE, "/checkin")
            assert (await client.post("/telegram", json=good, headers=headers)).status_code == 200
            await api.wait_for(1)
            assert await channel.idle()
        async with runtime.deps.db.read() as repos:
            pending = await repos.inbox.pending("telegram", 100)
            member = await repos.members.by_identity("telegram", str(ALICE["id"]))
        assert pending == [] and member is not None and member.balance == 10
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no traceback of a handler
    finally:
        await web.stop()
        await channel.stop()
        await runtime.close()
        await api.stop()


# --- updates that cannot be handled: logged once, skipped for good --------------------------------------
async def test_an_update_the_bot_cannot_handle_is_logged_once_and_skipped(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "bot.db"), clock) as bot:
        bad = []
        for field, value in (("text", 12), ("from", {**ALICE, "id": "abc"})):
            update = message_update(api, ALICE["id"], ALICE, "/points")
            update["message"][field] = value
            bad.append(f"telegram:update:{update['update_id']}")
            api.push_update(update)
        answer = await bot.send(ALICE["id"], ALICE, "/points")  # polling goes on past them
        assert "Alice" in answer
        assert await bot.channel.idle()
        async with bot.runtime.deps.db.read() as repos:
            assert await repos.inbox.pending("telegram", 100) == []  # done: no retry, now or at the next start
        for key in bad:
            said = [r for r in caplog.records if key in r.getMessage()]
            assert len(said) == 1 and said[0].levelno == logging.WARNING, [r.getMessage() for r in said]


async def test_stored_rows_that_are_no_updates_are_skipped_once(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    sender = {"id": 5, "is_bot": False, "first_name": "A"}
    message = {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}, "from": sender, "text": "hi"}
    rows = [("telegram:update:1", "{not json"), ("telegram:update:2", "[1, 2]"),
            ("telegram:update:3", json.dumps({"update_id": 3, "message": message}))]  # fmt: skip
    async with runtime.deps.db.transaction() as repos:
        await repos.inbox.store("telegram", rows, 0)
    handled: list[str] = []

    async def process(key: str, update: dict[str, Any]) -> bool:
        async with runtime.deps.db.transaction() as repos:
            await repos.inbox.claim(key, "telegram", 0)
        handled.append(key)
        return True

    def fault(updates: list[dict[str, Any]], exc: BaseException) -> None:
        raise AssertionError("no store in this test")

    for _ in range(2):  # a restart finds nothing left of them
        intake = Intake(runtime.deps.db, process, workers=2, prefetch=10, on_store_fault=fault)
        await intake.start()
        assert await intake.idle(timeout=5)  # no worker died on a row that is no update
        await intake.stop(timeout=1)
    assert handled == ["telegram:update:3"]
    async with runtime.deps.db.read() as repos:
        assert await repos.inbox.pending("telegram", 10) == []
    for key in ("telegram:update:1", "telegram:update:2"):
        assert len([r for r in caplog.records if key in r.getMessage()]) == 1


# --- numbers in any script --------------------------------------------------------------------------------
async def balance(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
    assert member is not None
    return member.balance


async def test_numbers_are_read_in_any_script_or_refused_with_the_usage_line(chat: ChatDriver) -> None:
    await chat.say("amy", "/checkin")
    await chat.say("boss", "/award @amy １２")  # full-width digits are digits
    assert await balance(chat, "amy") == 10 + 12
    await chat.say("boss", "/award @amy ٣")  # and so are Arabic-Indic ones
    assert await balance(chat, "amy") == 10 + 12 + 3
    for bad in ("②", "²", "abc5", "5abc", "-1", "1.5", "5\x00"):
        assert "Usage: /award" in await chat.say("boss", f"/award @amy {bad}"), bad
    sale = "/sale add Bag | price=10 stock={stock} start=2026-04-20 10:00{extra}"
    for stock, extra in (("②", ""), ("²", ""), ("1²", ""), ("5", " limit=²"), ("5", " hold=①"), ("5", " hold=-1")):
        answer = await chat.say("boss", sale.format(stock=stock, extra=extra))
        assert "Usage: /sale add" in answer, (stock, extra)
    await chat.say("boss", sale.format(stock="３", extra=" limit=１"))
    async with chat.runtime.deps.db.read() as repos:
        created = await repos.sales.get(1)
    assert created is not None and (created.stock, created.per_member) == (3, 1)
    for page in ("²", "①", "-1", "0"):
        assert "Usage: /segment" in await chat.say("boss", f"/segment new {page}"), page
    assert "Usage: /award" in await chat.say("boss", "/award -1 5")  # no member has a negative number
    assert await balance(chat, "amy") == 10 + 12 + 3  # nothing else was booked


async def test_integers_beyond_sqlite_and_nul_get_a_usage_line(chat: ChatDriver) -> None:
    await chat.say("amy", "/checkin")
    for command in (f"/award {TOO_BIG} 5", f"/deduct {'9' * 25} 5", f"/purchase {TOO_BIG} 100"):
        answer = await chat.say("boss", command)
        assert "Usage: /" in answer and "went wrong" not in answer, command
    answer = await chat.say("boss", f"/sale add Bag | price=10 stock=5 start=2026-04-20 10:00 hold={TOO_BIG}")
    assert "Usage: /sale add" in answer
    for command in (f"/sale status {TOO_BIG}", f"/unschedule {'9' * 30}", "/sale status 1\x00"):
        assert "Usage: /" in await chat.say("boss", command), command


async def test_console_press_takes_digits_in_any_script(runtime: Runtime) -> None:
    out = io.StringIO()
    console = ConsoleChannel(runtime.dispatcher, "boss", ["boss"], output=out)
    console.last_buttons = [Button("Help", "v1:help:")]
    for bad in ("²", "①", "-1", "1" * 5000):
        assert await console.say(f"/press {bad}") == []  # today "²" and 5000 digits crash the console
    assert out.getvalue().count("(no button") == 4
    assert await console.say("/press １")  # the button is pressed


# --- CSV exports ---------------------------------------------------------------------------------------
def test_csv_cells_that_start_like_a_formula_are_escaped() -> None:
    rows = [['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\ry", "plain", -5, 7]]
    data = csv_document(["member", "a", "b", "c", "d", "e", "f", "g", "h"], rows)
    assert data.startswith("\ufeff".encode())
    (header, row) = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert header[0] == "member"
    assert row == ['\'=HYPERLINK("http://x")', "'+1", "'-2+3", "'@SUM(A1)", "'\tx", "'\ry", "plain", "-5", "7"]


async def test_the_sale_export_escapes_a_member_named_like_a_formula(chat: ChatDriver, clock: FakeClock) -> None:
    await chat.say("=1+2", "hi")  # a member whose display name is a formula
    await chat.say("boss", "/sale add Jade teapot | price=99 stock=3 start=2026-03-20 10:00")
    clock.set(local(2026, 3, 20, 10, 0))
    await chat.say("=1+2", "/claim 1")
    (export,) = await chat.replies("boss", "/sale export 1")
    assert export.document is not None
    rows = list(csv.reader(io.StringIO(export.document[1].decode("utf-8-sig"))))
    assert [r[2] for r in rows[1:]] == ["'=1+2"]
