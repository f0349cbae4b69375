"""Importing from a chat: a staff member sends the file to the bot (Telegram, through the real Application and
the fake Bot API's getFile), gets the same dry run as the command line with a Confirm button, and confirming
imports once; a member's file is refused and never downloaded, a file too large is refused before it is
downloaded, a second file replaces the first, the waiting file survives a restart and expires."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app.runtime import Runtime
from bot.console.channel import ConsoleChannel
from handlers.core.clock import FakeClock
from handlers.core.messages import Document, Reply
from handlers.customers.upload import FILE_COMMAND, UPLOAD_MINUTES
from tests.conftest import ChatDriver
from tests.fakes.bot_api import FakeBotApi, callback_update, document_update
from tests.test_customers_import import (
    BAD,
    GOOD_PHONES,
    HEADER,
    ROWS,
    chunked_rows,
    chunks_of_two_signalled,
    csv_bytes,
    xlsx_bytes,
)
from tests.tg_harness import ALICE, STAFF, STAFF_ID, Harness, fake_api, harness_settings, running_bot


async def send_file(bot: Harness, sender: dict[str, Any], name: str, content: bytes, **kwargs: Any) -> dict[str, Any]:
    """Send a file privately; the bot's answer (the sendMessage parameters)."""
    before = len(bot.api.sent())
    bot.api.push_update(document_update(bot.api, int(sender["id"]), sender, name, content, **kwargs))
    return (await bot.api.wait_for(before + 1))[-1]


async def press(bot: Harness, sender: dict[str, Any], data: str) -> str:
    """Press a button; the toast and the messages that follow it, as one text."""
    toasts, before = len(bot.api.sent("answerCallbackQuery")), len(bot.api.sent())
    bot.api.push_update(callback_update(bot.api, int(sender["id"]), sender, data))
    toast = (await bot.api.wait_for(toasts + 1, "answerCallbackQuery"))[-1].get("text") or ""
    await bot.settle()
    return "\n".join([str(toast), *(str(p["text"]) for p in bot.api.sent()[before:])])


def confirm_data(answer: dict[str, Any]) -> str:
    (row,) = answer["reply_markup"]["inline_keyboard"]
    return str(row[0]["callback_data"])


async def imported(bot: Harness) -> dict[str, int]:
    """Profiles by phone -> balance; and every balance equals its ledger."""
    async with bot.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall(
            "SELECT p.phone, m.balance FROM customer_profiles p JOIN members m ON m.id = p.member_id"
        )
        assert await repos.ledger.mismatched_balances() == []
        ledger = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM ledger WHERE reason = 'import'")
    return {str(r[0]): int(r[1]) for r in rows} | {"entries": int(ledger[0][0])}


def assert_dry_run(text: str) -> None:
    assert "Dry run (nothing written yet): new 3 · updated 0 · unchanged 0 · with problems 6." in text
    for line in BAD:
        assert f"Line {line}:" in text
    assert "press Confirm" in text


async def test_staff_imports_an_xlsx_with_the_button_once(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        answer = await send_file(bot, STAFF, "customers.xlsx", xlsx_bytes(HEADER, ROWS))
        assert_dry_run(str(answer["text"]))
        assert api.downloads and int(answer["chat_id"]) == STAFF_ID
        assert (await imported(bot)) == {"entries": 0}  # a dry run writes nothing
        data = confirm_data(answer)
        done = await press(bot, STAFF, data)
        assert "Imported: new 3 · updated 0 · unchanged 0 · with problems (skipped) 6." in done
        after = await imported(bot)
        assert set(after) - {"entries"} == GOOD_PHONES and after["13800138000"] == 520
        # Confirming again, by the button or by typing, imports nothing more.
        assert "no import waiting" in await press(bot, STAFF, data)
        assert "no import waiting" in await bot.send(STAFF_ID, STAFF, "确认")
        assert await imported(bot) == after


async def test_staff_imports_a_gbk_csv_by_typing_confirm(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        answer = await send_file(bot, STAFF, "客户.csv", csv_bytes(HEADER, ROWS, "gbk"))
        assert_dry_run(str(answer["text"]))
        assert "Imported: new 3" in await bot.send(STAFF_ID, STAFF, "confirm")
        assert set(await imported(bot)) - {"entries"} == GOOD_PHONES
        assert "no import waiting" in await bot.send(STAFF_ID, STAFF, "/import confirm")


async def test_a_members_file_is_refused_and_never_downloaded(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        answer = await send_file(bot, ALICE, "customers.xlsx", xlsx_bytes(HEADER, ROWS))
        assert "only staff" in str(answer["text"])
        assert api.downloads == [] and api.sent("getFile") == []
        assert "only staff" in await bot.send(int(ALICE["id"]), ALICE, "确认")
        assert await imported(bot) == {"entries": 0}


async def test_a_file_too_large_is_refused_before_downloading(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        answer = await send_file(bot, STAFF, "big.csv", b"x", size=11 * 1024 * 1024)
        assert "too large" in str(answer["text"]) and "10 MB" in str(answer["text"])
        assert api.sent("getFile") == []
        answer = await send_file(bot, STAFF, "photo.jpg", b"\xff\xd8")
        assert "not an import file" in str(answer["text"])


async def test_a_second_file_replaces_the_first(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        first = await send_file(bot, STAFF, "a.xlsx", xlsx_bytes(HEADER, ROWS))
        second = await send_file(bot, STAFF, "b.csv", csv_bytes(HEADER, [["新客", "13300133000", "", 5]], "utf-8"))
        assert "new 1" in str(second["text"])
        assert "replaced by a newer one (b.csv)" in await press(bot, STAFF, confirm_data(first))
        assert await imported(bot) == {"entries": 0}
        assert "Imported: new 1" in await press(bot, STAFF, confirm_data(second))
        assert set(await imported(bot)) == {"13300133000", "entries"}


# --- the waiting file, with the handler logic alone ---------------------------------------------------
def file_message(chat: ChatDriver, who: str, name: str, content: bytes) -> Any:
    msg = chat.inbound(who, "", group=False)
    return replace(msg, button=f"v1:{FILE_COMMAND}:", document=Document(name, len(content), "f1", content))


async def send(chat: ChatDriver, msg: Any) -> list[Reply]:
    return await chat.runtime.dispatcher.handle(msg, chat.port)


async def test_only_the_sender_confirms_and_the_file_expires(chat: ChatDriver, clock: FakeClock) -> None:
    chat.port.staff.add("carol")
    replies = await send(chat, file_message(chat, "boss", "c.xlsx", xlsx_bytes(HEADER, ROWS)))
    assert replies[0].secret and replies[0].buttons
    assert "no import waiting" in await chat.say("carol", "确认", group=False)  # not carol's file
    clock.advance(timedelta(minutes=UPLOAD_MINUTES + 1))
    assert "no import waiting" in await chat.say("boss", "确认", group=False)
    async with chat.runtime.deps.db.read() as repos:
        assert not await repos.conn.execute_fetchall("SELECT 1 FROM customer_profiles")


async def test_the_waiting_file_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    settings = harness_settings(FakeBotApi(), tmp_path / "s.db")
    runtime = await Runtime.open(settings, clock)
    chat = ChatDriver(runtime)
    await send(chat, file_message(chat, "boss", "c.xlsx", xlsx_bytes(HEADER, ROWS)))
    await runtime.close()
    runtime = await Runtime.open(settings, clock)
    try:
        assert "Imported: new 3" in await ChatDriver(runtime).say("boss", "确认", group=False, key="after-restart")
    finally:
        await runtime.close()


async def test_the_console_uploads_a_file_and_shares_a_phone(runtime: Runtime, tmp_path: Path) -> None:
    out = io.StringIO()
    console = ConsoleChannel(runtime.dispatcher, "boss", ["boss"], output=out, exports=tmp_path / "exports")
    path = tmp_path / "customers.xlsx"
    path.write_bytes(xlsx_bytes(HEADER, ROWS))
    console.in_group = False
    await console.say(f"/upload {path}")
    assert_dry_run(out.getvalue())
    await console.say("确认")
    assert "Imported: new 3" in out.getvalue()
    console._meta("/as 小明")
    await console.say("/myphone 13800138000")
    assert "Welcome back" in out.getvalue()
    async with runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("console", "小明")
    assert member is not None and member.display_name == "王小明" and member.balance == 520


async def test_a_confirmation_in_chat_lets_a_check_in_through_between_its_chunks(
    chat: ChatDriver, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The import runs in the command's prepare step, outside the update's transaction, in chunks of its own:
    # a member's check-in sent meanwhile is answered before the import ends.
    writing = chunks_of_two_signalled(monkeypatch)
    rows = chunked_rows(10)
    await send(chat, file_message(chat, "boss", "c.csv", csv_bytes(["手机", "积分", "累计积分"], rows, "utf-8")))
    confirming = asyncio.create_task(chat.say("boss", "确认", group=False))
    await writing.wait()
    assert "+10 points" in await chat.say("alice", "签到", group=False)
    assert not confirming.done()  # the check-in got in between two chunks
    assert "Imported: new 10" in await confirming
