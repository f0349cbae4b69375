"""Staff announcements: now, by tier, scheduled and cancelled; /notify; /delivery counts."""

from __future__ import annotations

from datetime import timedelta

from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, RecordingPusher, local, settle


async def community(chat: ChatDriver) -> None:
    """A group, alice and carol reachable privately, bob only in the group, carol a diamond member."""
    await chat.say("alice", "/start", group=False)
    await chat.say("carol", "/start", group=False)
    await chat.say("bob", "hi all")
    await chat.say("boss", "/award @carol 700")


async def test_announce_posts_to_groups_and_opted_in_members(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await community(chat)
    text = await chat.say("boss", "/announce Winter sale starts Friday!\nAll coats -20%")
    assert text.startswith("Announcement #1 queued for 3 recipients.")
    await settle(chat.runtime)
    for target in ("group", "alice", "carol"):
        assert pusher.to(target) == ["Winter sale starts Friday!\nAll coats -20%"]
    assert pusher.to("bob") == []
    assert "3 recipients, 3 sent, 0 pending, 0 failed" in await chat.say("boss", "/delivery 1")


async def test_announce_to_tiers_goes_privately_to_those_tiers(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await community(chat)
    assert "queued for 1 recipient." in await chat.say("boss", "/announce --tier diamond,black Early access!")
    await settle(chat.runtime)
    assert pusher.to("carol") == ["Early access!"] and pusher.to("group") == [] and pusher.to("alice") == []
    assert "Unknown tier: platinum. Known tiers: gold, diamond, black." in await chat.say(
        "boss", "/announce --tier platinum Hi"
    )


async def test_notify_off_and_on(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await community(chat)
    assert "Private notices are off" in await chat.say("alice", "/notify off")
    assert "queued for 2 recipients" in await chat.say("boss", "/announce Hello")
    assert "Private notices are on" in await chat.say("alice", "/notify on")
    assert "send /start so it can write to you" in await chat.say("bob", "/notify on")
    assert "Private notices are on.\nUsage: /notify on or /notify off" == await chat.say("bob", "/notify")


async def test_schedule_list_send_and_unschedule(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    await community(chat)
    assert "Announcement #1 will go out at 2026-03-12 10:00." in await chat.say(
        "boss", "/schedule 2026-03-12 10:00 New teas have arrived"
    )
    assert "Announcement #2 will go out" in await chat.say("boss", "/schedule 2026-03-13 10:00 Second note")
    listing = await chat.say("boss", "/scheduled")
    assert "#1 2026-03-12 10:00 New teas have arrived" in listing and "#2 2026-03-13 10:00" in listing
    assert "Announcement #2 cancelled." in await chat.say("boss", "/unschedule 2")
    assert "does not exist, or was already sent or cancelled" in await chat.say("boss", "/unschedule 2")
    clock.set(local(2026, 3, 12, 9, 59))
    await chat.runtime.planner.fire()
    clock.advance(timedelta(minutes=1))
    await chat.runtime.planner.fire()
    clock.advance(timedelta(days=2))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert pusher.to("group") == ["New teas have arrived"]
    assert "No announcements are waiting." in await chat.say("boss", "/scheduled")


async def test_bad_announcement_commands(chat: ChatDriver, pusher: RecordingPusher) -> None:
    assert (await chat.say("boss", "/announce")).startswith("Usage: /announce")
    assert (await chat.say("boss", "/announce --tier gold")).startswith("Usage: /announce")
    assert "Usage: /schedule" in await chat.say("boss", "/schedule tomorrow hello")
    assert "Usage: /schedule" in await chat.say("boss", "/schedule 2026-03-12 10:00")
    assert "Usage: /schedule" in await chat.say("boss", "/schedule 2026-13-12 10:00 hi")
    assert "is in the past" in await chat.say("boss", "/schedule 2026-03-01 10:00 hi")
    assert "Usage: /unschedule" in await chat.say("boss", "/unschedule x")
    assert "There is no announcement #42" in await chat.say("boss", "/delivery 42")
    assert "Usage: /delivery" in await chat.say("boss", "/delivery")
    for command in ("/schedule 2026-03-12 10:00 hi", "/scheduled", "/unschedule 1", "/delivery 1"):
        assert "only staff" in await chat.say("mallory", command)


async def test_announce_to_one_segment(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    await community(chat)
    await chat.say("boss", "/purchase @alice 50")  # alice: one purchase, soon 100 days ago
    clock.advance(timedelta(days=100))
    await chat.say("boss", "/purchase @carol 80")  # carol: bought today
    text = await chat.say("boss", "/announce --segment dormant-high We miss you! 20% off this week")
    assert "Queued privately for segment Dormant-high: 1 message (members in the segment: 1;" in text
    await settle(chat.runtime)
    assert pusher.to("alice")[-1] == "We miss you! 20% off this week"
    assert not any("miss you" in t for t in pusher.to("carol") + pusher.to("group"))
    assert "Unknown segment: vip" in await chat.say("boss", "/announce --segment vip Hello")
