"""The feedback desk: tickets by keyword, the promised answer time, staff notices, replies privately or in the
group, the late flag, escalation once, closing with a rating asked by buttons, and the satisfaction figures.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import aiosqlite
import pytest

from handlers.core.clock import FakeClock
from handlers.feedback.commands import escalate
from storage.tickets import Ticket, ticket_stats
from tests.conftest import ChatDriver, RecordingPusher, settle


async def ticket(chat: ChatDriver, ticket_id: int) -> Ticket:
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.tickets.get(ticket_id)
    assert found is not None
    return found


async def press(chat: ChatDriver, who: str, data: str, *, group: bool = False) -> str:
    msg = dataclasses.replace(chat.inbound(who, "", group=group), button=data)
    return "\n".join(r.text for r in await chat.runtime.dispatcher.handle(msg, chat.port))


def staff_texts(pusher: RecordingPusher) -> list[str]:
    return [text for kind, _, text in pusher.pushes if kind == "staff"]


async def test_each_keyword_opens_a_ticket_with_the_answer_time(chat: ChatDriver, pusher: RecordingPusher) -> None:
    # The clock stands at 2026-03-10 09:00 in Shanghai; the promise is 24 hours later.
    text = await chat.say("alice", "/feedback The new store hours are great")
    assert text == (
        "Thank you! Your feedback is recorded as ticket #1. We will answer within 24 hours, by 2026-03-11 09:00."
    )
    assert "complaint is recorded as ticket #2" in await chat.say("alice", "投诉 快递太慢了")
    assert "suggestion is recorded as ticket #3" in await chat.say("bob", "建议 周末多开一会儿", group=False)
    assert "feedback is recorded as ticket #4" in await chat.say("bob", "反馈 包装很好")
    assert "complaint is recorded as ticket #5" in await chat.say("bob", "/feedback 投诉 店员态度不好")
    kinds = [(await ticket(chat, n)).kind for n in range(1, 6)]
    assert kinds == ["feedback", "complaint", "suggestion", "feedback", "complaint"]
    first, third = await ticket(chat, 1), await ticket(chat, 3)
    assert (first.channel, first.chat_id, first.is_group, first.state) == ("test", "group", True, "open")
    assert (third.chat_id, third.is_group) == ("dm-bob", False)
    assert third.body == "周末多开一会儿" and (await ticket(chat, 5)).body == "店员态度不好"
    assert first.answer_by - first.created_at == 24 * 3600


async def test_staff_are_notified_of_a_new_ticket(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "投诉 快递太慢了")
    await settle(chat.runtime)
    (notice,) = staff_texts(pusher)
    assert "New complaint, ticket #1, from Alice (@alice) in the group:\n快递太慢了" in notice
    assert "Promised answer by 2026-03-11 09:00. Answer with /reply 1 <text>." in notice


async def test_reply_goes_privately_when_the_member_can_be_messaged(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "/start", group=False)
    await chat.say("alice", "投诉 快递太慢了")  # opened in the group, answered privately
    clock.advance(timedelta(hours=2))
    assert "Answer to ticket #1 sent to Alice privately." in await chat.say("boss", "/reply 1 Sorry! Refunded.")
    await settle(chat.runtime)
    assert pusher.to("alice") == ["💬 Our answer to your complaint (ticket #1):\nSorry! Refunded."]
    assert not any("Refunded" in t for t in pusher.to("group"))
    answered = await ticket(chat, 1)
    assert answered.state == "answered" and answered.answered_at == answered.created_at + 2 * 3600
    clock.advance(timedelta(hours=1))
    await chat.say("boss", "/reply 1 And a coupon for next time.")
    assert (await ticket(chat, 1)).answered_at == answered.answered_at  # the first reply counts
    async with chat.runtime.deps.db.read() as repos:
        thread = await repos.tickets.messages(1)
    assert [(m.role, m.delivered) for m in thread] == [("member", None), ("staff", "private"), ("staff", "private")]


async def test_reply_goes_to_the_group_naming_the_member_otherwise(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("bob", "建议 周末多开一会儿")  # bob never opened a private chat with the bot
    text = await chat.say("boss", "/reply 1 Good idea, from April we open until 22:00.")
    assert "Bob cannot be messaged privately; the answer to ticket #1 goes to the chat where it was opened." in text
    await settle(chat.runtime)
    assert pusher.to("group") == [
        "@bob, our answer to your suggestion (ticket #1):\nGood idea, from April we open until 22:00."
    ]
    assert pusher.to("bob") == []
    assert (await ticket(chat, 1)).state == "answered"


async def test_tickets_lists_oldest_first_and_flags_late_ones(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    assert "No open tickets" in await chat.say("boss", "/tickets")
    await chat.say("alice", "投诉 快递太慢了")
    clock.advance(timedelta(hours=3))
    await chat.say("bob", "建议 周末多开一会儿")
    clock.advance(timedelta(hours=1))
    await chat.say("carol", "反馈 包装很好")
    await chat.say("boss", "/reply 3 Thank you!")
    clock.advance(timedelta(hours=20))  # ticket 1 is exactly at its promise: not late yet
    listing = await chat.say("boss", "/tickets")
    assert "LATE" not in listing
    clock.advance(timedelta(minutes=1))
    listing = await chat.say("boss", "/tickets")
    lines = listing.splitlines()
    assert lines[0] == "Open tickets (3), oldest first:"
    assert lines[1] == "#1 complaint from Alice, 1 d 0 h ago, waiting for an answer ⚠️ LATE"
    assert lines[2] == "   快递太慢了"
    assert lines[3] == "#2 suggestion from Bob, 21 h 1 min ago, waiting for an answer"
    assert lines[5] == "#3 feedback from Carol, 20 h 1 min ago, answered"  # answered in time: never late
    await chat.say("boss", "/close 1")
    assert "#1 " not in await chat.say("boss", "/tickets")
    details = await chat.say("boss", "/tickets 3")
    assert "Ticket #3: feedback from Carol (answered)" in details
    assert "Carol: 包装很好" in details and "Boss: Thank you!" in details


async def test_escalation_happens_once_after_twenty_hours(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    deps = chat.runtime.deps
    await chat.say("alice", "投诉 快递太慢了")
    await chat.say("bob", "建议 周末多开一会儿")
    await chat.say("boss", "/reply 2 Noted, thank you!")  # answered tickets are not escalated
    clock.advance(timedelta(hours=19, minutes=59))
    assert await escalate(deps) == 0
    clock.advance(timedelta(minutes=1))
    assert await escalate(deps) == 1
    clock.advance(timedelta(minutes=10))
    assert await escalate(deps) == 0
    clock.advance(timedelta(hours=10))
    assert await escalate(deps) == 0
    await settle(chat.runtime)
    reminders = [t for t in staff_texts(pusher) if t.startswith("⏰")]
    assert reminders == [
        "⏰ Ticket #1 (complaint from Alice) has waited 20 h 0 min without an answer; it was promised by"
        " 2026-03-11 09:00.\n快递太慢了\nAnswer with /reply 1 <text>."
    ]
    assert (await ticket(chat, 1)).escalated_at is not None
    assert (await ticket(chat, 2)).escalated_at is None


async def test_close_asks_for_a_rating_by_buttons_once_and_only_from_the_member(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "/start", group=False)
    await chat.say("alice", "投诉 快递太慢了")
    assert "still being handled" in await chat.say("alice", "/rate_ticket 1 5", group=False)
    await chat.say("boss", "/reply 1 Sorry! Refunded.")
    assert "Ticket #1 closed; Alice was asked privately to rate it." in await chat.say("boss", "/close 1")
    assert "already closed" in await chat.say("boss", "/close 1")
    assert "Ticket #1 is closed." in await chat.say("boss", "/reply 1 one more thing")
    await settle(chat.runtime)
    ask = pusher.to("alice")[-1]
    assert ask.startswith("Your complaint (ticket #1) is closed. How well did we handle it?")
    assert pusher.buttons[-1] == tuple(f"v1:rate_ticket:1 {n}" for n in range(1, 6))
    assert "You have no ticket #1 to rate." in await press(chat, "bob", "v1:rate_ticket:1 1")
    assert "Thank you for rating ticket #1: 5/5." in await press(chat, "alice", "v1:rate_ticket:1 5")
    assert "already rated ticket #1" in await press(chat, "alice", "v1:rate_ticket:1 1")
    assert "already rated" in await chat.say("alice", "/rate_ticket 1 2", group=False)
    assert (await ticket(chat, 1)).rating == 5
    async with chat.runtime.deps.db.read() as repos:
        stats = await ticket_stats(repos)
    assert stats == {"total": 1, "open": 0, "answered": 0, "closed": 1, "late": 0, "rated": 1,
                     "average_rating": 5.0, "satisfied": 1}  # fmt: skip


async def test_close_asks_in_the_group_when_the_member_cannot_be_messaged(
    chat: ChatDriver, pusher: RecordingPusher
) -> None:
    await chat.say("bob", "建议 周末多开一会儿")
    text = await chat.say("boss", "/close 1")
    assert "Ticket #1 closed; Bob was asked in the chat where it was opened to rate it." in text
    await settle(chat.runtime)
    (ask,) = pusher.to("group")
    assert ask.startswith("@bob, your suggestion (ticket #1) is closed.")
    assert pusher.buttons[-1][2] == "v1:rate_ticket:1 3"
    assert "You have no ticket #1 to rate." in await press(chat, "alice", "v1:rate_ticket:1 3", group=True)
    assert "Thank you for rating ticket #1: 3/5." in await press(chat, "bob", "v1:rate_ticket:1 3", group=True)


async def test_satisfaction_figures(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    for who in ("ann", "ben", "cat", "dan"):
        await chat.say(who, "/start", group=False)
        await chat.say(who, f"反馈 from {who}")
    await chat.say("boss", "/reply 1 ok")
    clock.advance(timedelta(hours=25))
    await chat.say("boss", "/reply 2 late, sorry")
    for n in (1, 2, 3):
        await chat.say("boss", f"/close {n}")
    await chat.say("ann", "/rate_ticket 1 4", group=False)
    await chat.say("ben", "/rate_ticket 2 1", group=False)
    async with chat.runtime.deps.db.read() as repos:
        settled = await ticket_stats(repos)
        counted = await ticket_stats(repos, chat.runtime.deps.now_ts())
    # Late: #2 answered after its promise, #3 closed unanswered after it; #4 is still open past it.
    assert settled == {"total": 4, "open": 1, "answered": 0, "closed": 3, "late": 2, "rated": 2,
                       "average_rating": 2.5, "satisfied": 1}  # fmt: skip
    assert counted["late"] == 3


async def test_the_database_keeps_ratings_once_and_in_range(chat: ChatDriver) -> None:
    await chat.say("alice", "投诉 快递太慢了")
    await chat.say("boss", "/close 1")
    db = chat.runtime.deps.db
    with pytest.raises(aiosqlite.IntegrityError):
        async with db.transaction() as repos:
            await repos.conn.execute("UPDATE tickets SET rating = 6, rated_at = 1 WHERE id = 1")
    async with db.transaction() as repos:
        await repos.conn.execute("UPDATE tickets SET rating = 2, rated_at = 1 WHERE id = 1")
    with pytest.raises(aiosqlite.IntegrityError):
        async with db.transaction() as repos:
            await repos.conn.execute("UPDATE tickets SET rating = 5 WHERE id = 1")
    with pytest.raises(aiosqlite.IntegrityError):
        async with db.transaction() as repos:
            await repos.conn.execute("UPDATE tickets SET state = 'open', closed_at = NULL WHERE id = 1")
    assert (await ticket(chat, 1)).rating == 2


async def test_strangers_are_refused_the_staff_commands(chat: ChatDriver) -> None:
    await chat.say("alice", "投诉 快递太慢了")
    for command in ("/reply 1 hello", "/tickets", "/close 1"):
        assert await chat.say("alice", command) == "Sorry, only staff with the manager role can use this command."
    assert (await ticket(chat, 1)).state == "open"
    help_text = await chat.say("alice", "/help", group=False)
    assert "/feedback" in help_text and "/rate_ticket" not in help_text and "/tickets" not in help_text


@pytest.mark.parametrize(
    ("who", "text", "usage"),
    [
        ("alice", "/feedback", "Usage: /feedback <your message>"),
        ("alice", "/feedback   ", "Usage: /feedback <your message>"),
        ("alice", "投诉", "Usage: /feedback <your message>"),
        ("alice", "/feedback 建议", "Usage: /feedback <your message>"),
        ("boss", "/reply", "Usage: /reply <ticket> <text>"),
        ("boss", "/reply 1", "Usage: /reply <ticket> <text>"),
        ("boss", "/reply one hello", "Usage: /reply <ticket> <text>"),
        ("boss", "/close", "Usage: /close <ticket>"),
        ("boss", "/close x", "Usage: /close <ticket>"),
        ("boss", "/tickets all", "Usage: /tickets"),
        ("alice", "/rate_ticket", "Usage: /rate_ticket <ticket> <1-5>"),
        ("alice", "/rate_ticket 1", "Usage: /rate_ticket <ticket> <1-5>"),
        ("alice", "/rate_ticket 1 6", "Usage: /rate_ticket <ticket> <1-5>"),
        ("alice", "/rate_ticket 1 0", "Usage: /rate_ticket <ticket> <1-5>"),
        ("alice", "/rate_ticket 1 4.5", "Usage: /rate_ticket <ticket> <1-5>"),
    ],
)
async def test_bad_arguments_get_the_usage_line(chat: ChatDriver, who: str, text: str, usage: str) -> None:
    assert (await chat.say(who, text)).startswith(usage)


async def test_unknown_tickets(chat: ChatDriver) -> None:
    assert await chat.say("boss", "/reply 9 hello") == "There is no ticket #9."
    assert await chat.say("boss", "/close 9") == "There is no ticket #9."
    assert await chat.say("boss", "/tickets 9") == "There is no ticket #9."
    assert await chat.say("alice", "/rate_ticket 9 5") == "You have no ticket #9 to rate."


async def test_arbitrary_text_is_kept_as_sent(chat: ChatDriver, pusher: RecordingPusher) -> None:
    odd = "😡🔥 包装破了！\n第二行 <b>&amp;</b> 'quotes' \"double\" {braces} {0} %s \\n"
    await chat.say("alice", f"投诉 {odd}")
    assert (await ticket(chat, 1)).body == odd
    long_text = ("快递太慢😤" * 400)[:2000]
    assert "ticket #2" in await chat.say("alice", f"/feedback {long_text}")
    assert (await ticket(chat, 2)).body == long_text
    refused = await chat.say("alice", f"/feedback {long_text}x")
    assert refused == "That is 2001 characters; please keep it to 2000 (send the rest as a second message)."
    await chat.say("boss", f"/reply 1 {odd}")
    await settle(chat.runtime)
    notices = staff_texts(pusher)
    assert odd in notices[0] and long_text in notices[1] and len(notices) == 2
    assert pusher.to("group")[0].endswith(odd)


async def test_escalation_waits_for_a_staff_chat(chat: ChatDriver, clock: FakeClock) -> None:
    """Without any channel that has a staff chat, nothing is marked, so the reminder is not lost."""
    await chat.say("alice", "投诉 快递太慢了")
    clock.advance(timedelta(hours=21))
    assert await escalate(chat.runtime.deps) == 0
    assert (await ticket(chat, 1)).escalated_at is None


async def test_a_colon_after_the_keyword_is_not_part_of_the_ticket(chat: ChatDriver, pusher: RecordingPusher) -> None:
    assert "feedback is recorded as ticket #1" in await chat.say("alice", "反馈：包装很好")
    assert "complaint is recorded as ticket #2" in await chat.say("alice", "投诉: 快递太慢", group=False)
    assert "suggestion is recorded as ticket #3" in await chat.say("alice", "/feedback 建议：周末多开一会儿")
    assert "feedback is recorded as ticket #4" in await chat.say("alice", "/feedback ：门店很干净")
    assert "complaint is recorded as ticket #5" in await chat.say("alice", "/feedback 投诉:店员态度不好")
    bodies = [((found := await ticket(chat, n)).kind, found.body) for n in range(1, 6)]
    assert bodies == [
        ("feedback", "包装很好"), ("complaint", "快递太慢"), ("suggestion", "周末多开一会儿"),
        ("feedback", "门店很干净"), ("complaint", "店员态度不好"),
    ]  # fmt: skip
    await settle(chat.runtime)
    assert "in the group:\n包装很好" in staff_texts(pusher)[0]
    assert (await chat.say("alice", "反馈：")).startswith("Usage: /feedback")
