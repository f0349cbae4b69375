"""Delivery reports: staff hear once of failed and uncertain pushes; /delivery resend re-sends the uncertain ones."""

from __future__ import annotations

from bot.app.runtime import Runtime
from bot.delivery.outbox import Outcome, PushResult
from handlers.announcements.commands import report_outcomes
from tests.conftest import ChatDriver, RecordingPusher, settle

STAFF = ""
"""The recording pusher's target for staff notices."""


async def community(chat: ChatDriver) -> None:
    """A group and alice, carol and dave reachable privately."""
    for who in ("alice", "carol", "dave"):
        await chat.say(who, "/start", group=False)
    await chat.say("bob", "hi all")


async def announce_with_problems(chat: ChatDriver, pusher: RecordingPusher) -> None:
    """Announcement #1: the group gets it, carol's push fails, alice's and dave's come back uncertain."""
    await community(chat)
    pusher.script["alice"] = [PushResult(Outcome.UNCERTAIN, "TimedOut: read timeout")]
    pusher.script["carol"] = [PushResult(Outcome.FAILED, "Forbidden: bot was blocked by the user")]
    pusher.script["dave"] = [PushResult(Outcome.UNCERTAIN, "interrupted while sending")]
    assert "Announcement #1 queued for 4 recipients." in await chat.say("boss", "/announce Spring tea tasting")
    await settle(chat.runtime)
    assert "4 recipients, 1 sent, 0 pending, 1 failed, 2 uncertain" in await chat.say("boss", "/delivery 1")


def staff_notices(pusher: RecordingPusher) -> list[str]:
    return [text for text in pusher.to(STAFF) if "has finished sending" in text]


async def set_state(runtime: Runtime, target: str, state: str) -> None:
    async with runtime.deps.db.transaction() as repos:
        await repos.conn.execute("UPDATE deliveries SET state = ? WHERE target = ?", (state, target))


async def test_failed_and_uncertain_are_reported_once(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await announce_with_problems(chat, pusher)
    deps = chat.runtime.deps

    assert await report_outcomes(deps) == 1
    await settle(chat.runtime)
    [notice] = staff_notices(pusher)
    assert notice.startswith(
        "⚠️ Announcement #1 (Spring tea tasting) has finished sending: 4 recipients, 1 sent, 1 failed, 2 uncertain."
    )
    assert "uncertain: alice — TimedOut: read timeout" in notice
    assert "failed: carol — Forbidden: bot was blocked by the user" in notice
    assert "uncertain: dave — interrupted while sending" in notice
    assert "The 2 uncertain ones may or may not have arrived. /delivery resend 1 sends them again" in notice
    async with deps.db.read() as repos:
        assert await repos.announcements.outcome_reported_at(1) == deps.now_ts()

    # Not again, and the staff notice (announcement #2, delivered) is not reported itself.
    assert await report_outcomes(deps) == 0
    await settle(chat.runtime)
    assert len(staff_notices(pusher)) == 1


async def test_only_settled_announcements_are_reported(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await announce_with_problems(chat, pusher)
    await set_state(chat.runtime, "dave", "sending")  # still in flight: wait for it
    assert await report_outcomes(chat.runtime.deps) == 0
    await set_state(chat.runtime, "dave", "uncertain")
    assert await report_outcomes(chat.runtime.deps) == 1


async def test_only_sent_rows_are_not_reported(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await community(chat)
    await chat.say("boss", "/announce All good")
    await settle(chat.runtime)
    assert "4 recipients, 4 sent" in await chat.say("boss", "/delivery 1")
    assert await report_outcomes(chat.runtime.deps) == 0
    await settle(chat.runtime)
    assert staff_notices(pusher) == []


async def test_a_failed_staff_notice_is_not_reported(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await announce_with_problems(chat, pusher)
    pusher.script[STAFF] = [PushResult(Outcome.FAILED, "chat not found")]
    assert await report_outcomes(chat.runtime.deps) == 1
    await settle(chat.runtime)
    assert "1 recipient, 0 sent, 0 pending, 1 failed" in await chat.say("boss", "/delivery 2")
    assert await report_outcomes(chat.runtime.deps) == 0


async def test_resend_without_confirm_changes_nothing(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await announce_with_problems(chat, pusher)
    before = list(pusher.pushes)
    answer = await chat.say("boss", "/delivery resend 1")
    assert "Announcement #1 has 2 uncertain deliveries" in answer
    assert "may receive the message twice" in answer and "/delivery resend 1 confirm" in answer
    await settle(chat.runtime)
    assert pusher.pushes == before
    assert "1 sent, 0 pending, 1 failed, 2 uncertain" in await chat.say("boss", "/delivery 1")


async def test_resend_confirm_sends_exactly_the_uncertain_ones(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await announce_with_problems(chat, pusher)
    assert await report_outcomes(chat.runtime.deps) == 1
    await settle(chat.runtime)
    before = len(pusher.pushes)

    assert "2 uncertain deliveries of announcement #1 are queued again" in await chat.say(
        "boss", "/delivery resend #1 confirm"
    )
    await settle(chat.runtime)
    assert sorted(pusher.pushes[before:]) == [
        ("user", "alice", "Spring tea tasting"),
        ("user", "dave", "Spring tea tasting"),
    ]  # not carol (failed), not the group (sent)
    assert "4 recipients, 3 sent, 0 pending, 1 failed, 0 uncertain" in await chat.say("boss", "/delivery 1")
    assert "Announcement #1 has no uncertain deliveries" in await chat.say("boss", "/delivery resend 1 confirm")
    assert await report_outcomes(chat.runtime.deps) == 0  # reported once, before the resend


async def test_resend_answers_bad_requests(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await community(chat)
    await chat.say("boss", "/announce All good")
    await settle(chat.runtime)
    for command in ("/delivery resend", "/delivery resend x", "/delivery resend 1 now", "/delivery resend 1 2 3"):
        assert (await chat.say("boss", command)).startswith("Usage: /delivery"), command
    assert "There is no announcement #42." == await chat.say("boss", "/delivery resend 42")
    assert "There is no announcement #42." == await chat.say("boss", "/delivery resend 42 confirm")
    assert "has no uncertain deliveries: nothing to resend" in await chat.say("boss", "/delivery resend 1")


async def test_members_cannot_resend(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await announce_with_problems(chat, pusher)
    before = list(pusher.pushes)
    for command in ("/delivery resend 1", "/delivery resend 1 confirm"):
        assert "only staff" in await chat.say("mallory", command)
    await settle(chat.runtime)
    assert pusher.pushes == before
    assert "1 sent, 0 pending, 1 failed, 2 uncertain" in await chat.say("boss", "/delivery 1")


async def test_the_report_job_is_scheduled(runtime: Runtime) -> None:
    job = runtime.scheduler.get_job("report_delivery_outcomes")
    assert job is not None and job.func is report_outcomes
