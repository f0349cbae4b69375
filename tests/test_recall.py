"""/recall: an announcement sent by mistake loses what it has not delivered yet, and its group posts are deleted
through Telegram's deleteMessage within the 48 hours Telegram allows; older posts, and private messages, stay."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.delivery.outbox import PushResult
from bot.delivery.sender import Outcome
from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, RecordingPusher, settle
from tests.tg_harness import GROUP, STAFF, STAFF_ID, Harness, fake_api, harness_settings, running_bot


def announcement_no(text: str) -> int:
    found = re.search(r"Announcement #(\d+)", text)
    assert found is not None, text
    return int(found.group(1))


async def test_recall_drops_the_deliveries_not_sent_yet(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("alice", "/start", group=False)
    await chat.say("bob", "/start", group=False)
    await chat.say("carol", "hi")  # the VIP group is known
    pusher.script["bob"] = [PushResult(Outcome.RETRY, "slow", retry_after=3600)]  # bob's copy waits an hour
    ann = announcement_no(await chat.say("boss", "/announce Wrong price!", group=False))
    for _ in range(200):  # the group, alice and boss are served at once; bob's row goes back to pending
        async with chat.runtime.deps.db.read() as repos:
            counts = await repos.deliveries.counts(ann)
        if counts.get("sent", 0) == 3:
            break
        await chat.runtime.outbox.idle(timeout=0.05)
    assert counts == {"sent": 3, "pending": 1}, counts

    text = await chat.say("boss", f"/recall {ann}", group=False)
    assert f"Announcement #{ann} recalled." in text
    assert "· 1 message not sent yet was dropped" in text
    assert "· 1 group post is being deleted" in text
    assert "WeChat cannot take back a message" in text
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.deliveries.counts(ann) == {"sent": 3}
    await settle(chat.runtime)
    assert pusher.to("bob") == []
    assert f"Announcement #{ann} was already recalled." in await chat.say("boss", f"/recall {ann}", group=False)
    assert "There is no announcement #99." in await chat.say("boss", "/recall 99", group=False)
    assert await chat.say("alice", f"/recall {ann}") == "Sorry, only staff with the manager role can use this command."


async def test_recall_cancels_a_scheduled_announcement(
    chat: ChatDriver, pusher: RecordingPusher, clock: FakeClock
) -> None:
    await chat.say("alice", "hi")
    text = await chat.say("boss", "/schedule 2026-03-11 10:00 Tomorrow's offer", group=False)
    ann = int(re.findall(r"#(\d+)", text)[0])
    assert "· 0 messages not sent yet were dropped" in await chat.say("boss", f"/recall {ann}", group=False)
    clock.advance(timedelta(days=2))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert "Tomorrow's offer" not in pusher.to("group")
    async with chat.runtime.deps.db.read() as repos:
        recalled = await repos.announcements.get(ann)
    assert recalled is not None and recalled.state == "cancelled"


@pytest.fixture
async def tg(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Harness]:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "tg.db"), clock) as harness:
        yield harness


async def test_recall_deletes_the_group_post_through_the_bot_api(tg: Harness) -> None:
    ann = announcement_no(await tg.send(STAFF_ID, STAFF, "/announce Wrong price!"))
    await tg.settle()
    async with tg.runtime.deps.db.read() as repos:
        [(_, channel, chat_id, message_id)] = await repos.deliveries.sent_posts([ann])
    assert (channel, int(chat_id)) == ("telegram", GROUP)
    text = await tg.send(STAFF_ID, STAFF, f"/recall {ann}")
    assert "· 1 group post is being deleted" in text
    await tg.settle()
    deleted = tg.api.sent("deleteMessage")
    assert [(int(d["chat_id"]), str(d["message_id"])) for d in deleted] == [(GROUP, message_id)]
    async with tg.runtime.deps.db.read() as repos:
        sent = await repos.deliveries.sent_posts([ann])
    assert sent == []  # recorded as deleted: never edited or deleted again
    assert "already recalled" in await tg.send(STAFF_ID, STAFF, f"/recall {ann}")
    await tg.settle()
    assert len(tg.api.sent("deleteMessage")) == 1


async def test_a_post_older_than_48_hours_stays(tg: Harness, clock: FakeClock) -> None:
    clock.set(datetime.now(UTC))  # the outbox stamps a post with its own (real) clock: start from the same time
    ann = announcement_no(await tg.send(STAFF_ID, STAFF, "/announce Old news"))
    await tg.settle()
    clock.advance(timedelta(hours=49))
    text = await tg.send(STAFF_ID, STAFF, f"/recall {ann}")
    assert "· 0 group posts are being deleted" in text
    assert "· 1 group post stays: Telegram deletes a bot's post for 48 hours only" in text
    await tg.settle()
    assert tg.api.sent("deleteMessage") == []
