"""The dispatcher: unknown commands, other bots' commands, help, and the crash safety net."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.core.command import Command, Preparing, Refusal
from handlers.core.deps import Deps, Request
from handlers.core.dispatch import Dispatcher, Handled
from handlers.core.messages import Reply
from handlers.core.table import assemble
from handlers.features import FEATURES
from tests.conftest import ChatDriver, storage_for

SHIPPED = assemble(FEATURES).commands


async def test_unknown_command_in_private_gets_a_hint(chat: ChatDriver) -> None:
    assert await chat.say("alice", "/frobnicate", group=False) == (
        "I don't know that command. Send /help to see what I can do."
    )


async def test_unknown_command_in_group_is_answered_only_when_addressed(chat: ChatDriver) -> None:
    assert await chat.say("alice", "/frobnicate") == ""  # may belong to another bot in the group
    assert "Send /help" in await chat.say("alice", "/frobnicate@vipbot")


async def test_plain_text_is_not_a_command(chat: ChatDriver) -> None:
    assert await chat.say("alice", "签到了吗？大家好") == ""
    assert await chat.say("alice", "/ checkin") == ""


async def test_help_lists_member_commands_and_staff_commands_only_for_staff(chat: ChatDriver) -> None:
    member_help = await chat.say("alice", "/help")
    assert "/checkin (or send: 签到, 打卡) — daily check-in, earns points" in member_help
    assert "/award" not in member_help and "/start" not in member_help
    staff_help = await chat.say("boss", "帮助")
    assert "Staff commands:" in staff_help and "/purchase" in staff_help


async def test_help_for_one_command_shows_its_usage_by_name_alias_or_keyword(chat: ChatDriver) -> None:
    points = await chat.say("alice", "/help points", group=False)
    assert points.startswith("/points (or send: 积分, 我的积分) — ")
    assert await chat.say("alice", "/help /balance", group=False) == points  # an alias, written with its slash
    event = await chat.say("boss", "/help event", group=False)
    assert "Usage: /event add|show|edit|cancel|attend" in event
    assert "Usage: /event add <YYYY-MM-DD HH:MM> <title>" in event  # its sub-commands' usages follow
    assert "Usage: /event attend <id>" in event
    assert "Usage: /join <event id>" in await chat.say("alice", "帮助 报名", group=False)


async def test_help_for_a_staff_command_or_a_made_up_one_tells_a_member_it_is_not_there(chat: ChatDriver) -> None:
    assert await chat.say("alice", "/help award", group=False) == (
        "There is no /award command. Send /help to see them all."
    )
    assert "Usage: /award <@username|member no.>" in await chat.say("boss", "/help award", group=False)
    assert "There is no /frobnicate command." in await chat.say("alice", "/help frobnicate", group=False)


def test_two_features_with_different_rules_for_one_kind_are_refused() -> None:
    from handlers.core.feature import Feature
    from handlers.core.kinds import AnnouncementKind, DueRule

    clash = Feature("clash", due_rules={AnnouncementKind.POLL_CLOSE: DueRule()})
    with pytest.raises(ValueError, match="poll_close"):
        assemble((*FEATURES, clash))
    with pytest.raises(ValueError, match="listed twice"):
        assemble((*FEATURES, FEATURES[0]))


async def test_help_is_generated_from_the_table_in_chinese(tmp_path: Path, clock: FakeClock) -> None:
    from bot.app.config import Settings

    runtime = await Runtime.open(Settings(storage=storage_for(tmp_path / "zh.db")), clock)
    try:
        text = await ChatDriver(runtime).say("alice", "/help")
        assert text.startswith("可用命令：")
        assert "/checkin（也可以发送：签到、打卡） — 每日签到，领积分" in text
    finally:
        await runtime.close()


async def test_a_crashing_handler_is_logged_answered_and_the_bot_keeps_going(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(req: Request, deps: Deps) -> list[Reply]:
        raise ZeroDivisionError("boom")

    commands = [*SHIPPED, Command("explode", explode, "help_cmd.summary")]
    chat = ChatDriver(runtime)
    chat.runtime.dispatcher = Dispatcher(runtime.deps, commands)
    with caplog.at_level(logging.ERROR):
        text = await chat.say("alice", "/explode")
    assert text.startswith("Sorry, something went wrong on our side")
    assert "handler /explode failed" in caplog.text and "ZeroDivisionError" in caplog.text
    assert "+10 points" in await chat.say("alice", "/checkin")


async def test_a_refusal_undoes_the_handlers_writes_and_is_its_answer(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(req: Request, deps: Deps) -> list[Reply]:
        async with deps.db.transaction() as repos:
            await repos.ledger.append(req.member_id, 50, "award", "refused:1", deps.now_ts())
            raise Refusal(Reply("not today"))

    chat = ChatDriver(runtime)
    chat.runtime.dispatcher = Dispatcher(runtime.deps, [*SHIPPED, Command("refuse", refuse, "help_cmd.summary")])
    with caplog.at_level(logging.ERROR):
        assert await chat.say("alice", "/refuse", group=False) == "not today"
    assert "failed" not in caplog.text  # an answer, not a fault
    assert "points: 0\n" in await chat.say("alice", "/points", group=False)  # the 50 were undone
    again = chat.inbound("alice", "/refuse", group=False, key="refuse:1")
    assert [r.text for r in await chat.runtime.dispatcher.handle(again, chat.port)] == ["not today"]
    assert await chat.runtime.dispatcher.handle(again, chat.port) == []  # the update is done: not run again


async def test_a_failed_update_can_be_retried(runtime: Runtime) -> None:
    calls = 0

    async def flaky(req: Request, deps: Deps) -> list[Reply]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("transient")
        return [Reply("ok")]

    chat = ChatDriver(runtime)
    chat.runtime.dispatcher = Dispatcher(runtime.deps, [*SHIPPED, Command("flaky", flaky, "help_cmd.summary")])
    first = chat.inbound("alice", "/flaky", key="k:1")
    again = chat.inbound("alice", "/flaky", key="k:1")
    assert "Sorry" in (await chat.runtime.dispatcher.handle(first, chat.port))[0].text
    assert [r.text for r in await chat.runtime.dispatcher.handle(again, chat.port)] == ["ok"]


async def test_the_result_says_whether_a_fault_was_answered_with_the_apology(runtime: Runtime) -> None:
    # `Handled.failed` is what /metrics counts as a handler error: a crash in the handler or in its prepare
    # step; not an answer, a refusal, or a full disk (that one is a storage fault: the update is not done).
    async def explode(req: Request, deps: Deps) -> list[Reply]:
        raise ZeroDivisionError("boom")

    async def refuse(req: Request, deps: Deps) -> list[Reply]:
        raise Refusal(Reply("not today"))

    async def full(req: Request, deps: Deps) -> list[Reply]:
        raise sqlite3.OperationalError("database or disk is full")

    async def bad_prepare(preparing: Preparing, deps: Deps) -> object:
        raise KeyError("no chart")

    async def drawn(req: Request, deps: Deps, prepared: object = None) -> list[Reply]:
        return [Reply("drawn")]

    commands = [*SHIPPED, Command("explode", explode, "help_cmd.summary"),
                Command("refuse", refuse, "help_cmd.summary"), Command("full", full, "help_cmd.summary"),
                Command("draw", drawn, "help_cmd.summary", prepare=bad_prepare)]  # fmt: skip
    chat = ChatDriver(runtime)
    dispatcher = Dispatcher(runtime.deps, commands)
    apology = runtime.deps.texts.t("common.apology")

    async def handled(text: str) -> Handled:
        return await dispatcher.handle_update(chat.inbound("alice", text, group=False), chat.port)

    fine = await handled("/checkin")
    assert fine.committed and not fine.failed and "+10 points" in fine.replies[0].text
    crashed = await handled("/explode")
    assert crashed.failed and crashed.committed and [r.text for r in crashed.replies] == [apology]
    unprepared = await handled("/draw")
    assert unprepared.failed and [r.text for r in unprepared.replies] == [apology]
    refused = await handled("/refuse")
    assert not refused.failed and [r.text for r in refused.replies] == ["not today"]
    disk = await handled("/full")
    assert not disk.committed and not disk.failed and [r.text for r in disk.replies] == [apology]
    assert not (await handled("/frobnicate")).failed  # an unknown command is answered, not a fault


def test_two_commands_cannot_claim_one_keyword(runtime: Runtime) -> None:
    async def noop(req: Request, deps: Deps) -> list[Reply]:
        return []

    with pytest.raises(ValueError, match="签到"):
        Dispatcher(runtime.deps, [*SHIPPED, Command("dup", noop, "help_cmd.summary", keywords=("签到",))])


async def test_a_fault_outside_the_handler_is_answered_once_and_the_update_given_up(chat: ChatDriver) -> None:
    # A bug in routing (here the sink that queues replies fails for one update): handling it again would fail
    # again, so it is marked done with the apology rather than tried forever.
    said: list[list[str]] = []
    broken = {"on": True}

    async def sink(repos: object, member_id: object, replies: list[Reply], staff: bool) -> None:
        if broken["on"]:
            broken["on"] = False
            raise RuntimeError("routing bug")
        said.append([r.text for r in replies])

    msg = chat.inbound("alice", "/points", group=False, key="test:bug-1")
    dispatcher = chat.runtime.dispatcher
    handled = await dispatcher.handle_update(msg, chat.port, sink)
    assert handled.committed and said == [[chat.runtime.deps.texts.t("common.apology")]]
    assert handled.failed  # a fault all the same (/metrics counts it)
    again = await dispatcher.handle_update(msg, chat.port, sink)  # the re-delivery finds it done
    assert again.repeat and len(said) == 1
    assert not again.failed  # nothing failed this time


async def test_subcommands_match_their_word_in_any_case_and_answer_an_unknown_one_with_the_usage(
    chat: ChatDriver,
) -> None:
    assert await chat.say("alice", "/notify OFF", group=False) == (
        "Private notices are off; you still see announcements in the group."
    )
    # /notify takes its word alone: anything after it is no switch, so the member hears how things stand.
    assert await chat.say("alice", "/notify on please", group=False) == (
        "Private notices are off.\nUsage: /notify on or /notify off"
    )
    usage = "Usage: /event add|show|edit|cancel|attend …, e.g. /event show 3"
    assert await chat.say("boss", "/event frobnicate 3") == usage
    assert await chat.say("boss", "/event") == usage
    assert await chat.say("boss", "/event SHOW x") == usage  # found the word; its id is refused with the usage
