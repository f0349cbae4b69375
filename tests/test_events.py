"""Events: the five-day promo rule, promos at exact local times, sign-ups, attendance, edits, cancels,
and restarts, all with the fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from tests.conftest import SHANGHAI, ChatDriver, RecordingPusher, local, settle, storage_for

START = "2026-03-20 19:30"  # ten days after the fake clock's 2026-03-10 09:00


async def promo_times(runtime: Runtime, event_id: int = 1) -> list[tuple[str, datetime, str]]:
    async with runtime.deps.db.read() as repos:
        rows = await repos.announcements.for_event(event_id)
    return [(a.lead or "", datetime.fromtimestamp(a.due_at, SHANGHAI), a.state) for a in rows]


async def members_present(chat: ChatDriver) -> None:
    await chat.say("alice", "/start", group=False)  # may be messaged privately
    await chat.say("bob", "hello")  # group only


async def test_event_ten_days_ahead_is_promoted_at_the_lead_times(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await members_present(chat)
    text = await chat.say("boss", f"/event add {START} Spring tasting | Ten new teas to try")
    assert "Event #1 created: Spring tasting, 2026-03-20 19:30." in text
    assert "· 5 days ahead: 2026-03-15 19:30" in text and "· 2 hours ahead: 2026-03-20 17:30" in text
    planned = await promo_times(chat.runtime)
    assert [(lead, when) for lead, when, _ in planned] == [
        ("5d", local(2026, 3, 15, 19, 30)),
        ("3d", local(2026, 3, 17, 19, 30)),
        ("1d", local(2026, 3, 19, 19, 30)),
        ("2h", local(2026, 3, 20, 17, 30)),
    ]
    for lead, when, _ in planned:
        clock.set(when - timedelta(seconds=1))
        assert await chat.runtime.planner.fire() == []
        clock.set(when)
        assert len(await chat.runtime.planner.fire()) == 1, lead
        await settle(chat.runtime)
    group_posts = pusher.to("group")
    assert len(group_posts) == 4 and len(pusher.to("alice")) == 4 and pusher.to("bob") == []
    assert "Spring tasting" in group_posts[0] and "in 5 days" in group_posts[0] and "/join 1" in group_posts[0]
    assert "in 2 hours" in group_posts[3]
    assert [state for _, _, state in await promo_times(chat.runtime)] == ["queued"] * 4


async def test_event_too_soon_is_refused_with_the_earliest_start(chat: ChatDriver, pusher: RecordingPusher) -> None:
    text = await chat.say("boss", "/event add 2026-03-13 19:30 Flash party")
    assert "at least a 5-day lead" in text and "earliest allowed start is 2026-03-15 09:00" in text
    assert "Usage: /event add" in text
    assert await promo_times(chat.runtime) == []
    assert "No events coming up" in await chat.say("alice", "/events")


async def test_force_sends_the_first_promo_at_once(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members_present(chat)
    text = await chat.say("boss", "/event add 2026-03-13 19:30 Flash party | bring friends --force")
    assert "Event #1 created" in text and "· now: 2026-03-10 09:00" in text
    assert "bending the rule" in text
    await settle(chat.runtime)
    assert len(pusher.to("group")) == 1 and "in 3 days" in pusher.to("group")[0]
    assert [lead for lead, _, _ in await promo_times(chat.runtime)] == ["now", "3d", "1d", "2h"]


async def test_bad_event_commands_get_the_usage_line(chat: ChatDriver, pusher: RecordingPusher) -> None:
    for args in ("", "add", "add tomorrow Party", "add 2026-02-30 10:00 Party", "add 2026-03-20 19:30",
                 "add 2026-03-20 19:30  | only a description", "add 2026-03-20 19:30 X --capacity=zero",
                 "frobnicate 1", "show", "show abc", "edit 1 colour red", "attend"):  # fmt: skip
        text = await chat.say("boss", f"/event {args}")
        assert "Usage: /event" in text, args
    assert "2026-03-01 10:00 is in the past" in await chat.say("boss", "/event add 2026-03-01 10:00 Old party")
    assert "There is no active event #9" in await chat.say("boss", "/event show 9")


async def test_members_cannot_manage_events(chat: ChatDriver, pusher: RecordingPusher) -> None:
    assert "only staff" in await chat.say("alice", f"/event add {START} Mine")
    assert "only staff" in await chat.say("alice", "/announce hello")
    assert await promo_times(chat.runtime) == []


async def test_signing_up_withdrawing_capacity_and_buttons(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("boss", f"/event add {START} Tasting | small room --capacity 2")
    assert "Alice is signed up: Tasting (2026-03-20 19:30), 1/2 signed up." in await chat.say("alice", "报名 1")
    assert "already signed up" in await chat.say("alice", "/join 1")
    button = chat.inbound("bob", "")
    pressed = await chat.runtime.dispatcher.handle(
        type(button)(**{**{f: getattr(button, f) for f in button.__slots__}, "button": "v1:join:1"}), chat.port
    )
    assert "Bob is signed up" in pressed[0].text and "2/2" in pressed[0].text
    assert "Tasting is full (2/2)" in await chat.say("carol", "报名1")
    assert "no longer signed up" in await chat.say("alice", "取消报名 1")
    assert "were not signed up" in await chat.say("alice", "/leave 1")
    assert "Carol is signed up" in await chat.say("carol", "/join 1")
    assert "#1 2026-03-20 19:30 Tasting (2/2 signed up)" in await chat.say("dave", "/events")
    assert "There is no active event #5" in await chat.say("dave", "/join 5")
    assert "Usage: /join" in await chat.say("dave", "/join")


async def test_attendance_earns_points_once(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    await chat.say("boss", f"/event add {START} Tasting --points 30")
    await chat.say("alice", "/join 1")
    clock.set(local(2026, 3, 20, 19, 45))  # the event is on
    assert 'Recorded Alice at "Tasting", +30 points.' in await chat.say("boss", "/event attend 1 @alice")
    assert "already recorded" in await chat.say("boss", "/event attend 1 @alice")
    assert "+30 event attendance · Tasting" in await chat.say("alice", "/points")
    assert "Alice's points: 30" in await chat.say("alice", "/points")


async def test_attendance_only_while_the_event_is_on(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("alice", "hi")
    await chat.say("bob", "hi")
    await chat.say("carol", "hi")
    await chat.say("boss", f"/event add {START} Tasting --points 30")
    await chat.say("boss", f"/event add {START} Cancelled party --points 40")
    await chat.say("boss", "/event cancel 2")
    # Ten days before the start: nothing to attend yet.
    early = await chat.say("boss", "/event attend 1 @alice")
    assert "Event #1 (Tasting) has not started yet" in early and "2026-03-20 19:30" in early
    clock.set(local(2026, 3, 20, 19, 30))  # the start
    assert 'Recorded Alice at "Tasting", +30 points.' in await chat.say("boss", "/event attend 1 @alice")
    # A cancelled event pays nothing, even at its start time.
    assert "Event #2 (Cancelled party) is cancelled" in await chat.say("boss", "/event attend 2 @bob")
    clock.set(local(2026, 3, 21, 1, 30))  # exactly 6 hours after the start (the default window)
    assert 'Recorded Bob at "Tasting", +30 points.' in await chat.say("boss", "/event attend 1 @bob")
    clock.set(local(2026, 3, 21, 1, 31))
    late = await chat.say("boss", "/event attend 1 @carol")
    assert "Event #1 (Tasting) is over: attendance could be recorded until 2026-03-21 01:30" in late
    async with chat.runtime.deps.db.read() as repos:
        members = [await repos.members.by_identity("test", who) for who in ("alice", "bob", "carol")]
    assert [m.balance if m else None for m in members] == [30, 30, 0]  # Bob: nothing for the cancelled party


async def test_the_attendance_window_is_configurable(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(locale="en", storage=storage_for(tmp_path / "w.db"), events={"attend_hours_after": 1})
    runtime = await Runtime.open(settings, clock)
    try:
        chat = ChatDriver(runtime)
        await chat.say("alice", "hi")
        await chat.say("boss", f"/event add {START} Tasting --points 30")
        clock.set(local(2026, 3, 20, 20, 31))
        assert "recorded until 2026-03-20 20:30" in await chat.say("boss", "/event attend 1 @alice")
    finally:
        await runtime.close()


async def test_editing_the_start_replans_the_promos(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("boss", f"/event add {START} Tasting")
    text = await chat.say("boss", "/event edit 1 start 2026-03-25 19:30")
    assert "Event #1 updated." in text and "· 5 days ahead: 2026-03-20 19:30" in text
    planned = await promo_times(chat.runtime)
    assert [state for _, _, state in planned].count("cancelled") == 4
    assert next(when for _, when, state in planned if state == "pending") == local(2026, 3, 20, 19, 30)
    assert "at least a 5-day lead" in await chat.say("boss", "/event edit 1 start 2026-03-12 10:00")
    assert "Event #1 updated." in await chat.say("boss", "/event edit 1 title Spring tasting")
    assert "Event #1: Spring tasting" in await chat.say("boss", "/event show 1")


async def test_capacity_below_the_signups_is_refused(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await chat.say("boss", f"/event add {START} Tasting --capacity 5")
    for who in ("alice", "bob", "carol"):
        await chat.say(who, "/join 1")
    text = await chat.say("boss", "/event edit 1 capacity 2")
    assert "3 members are signed up for event #1" in text and "at least 3" in text
    assert "updated" not in text
    assert "Signed up: 3/5" in await chat.say("boss", "/event show 1")
    assert "Event #1 updated." in await chat.say("boss", "/event edit 1 capacity 3")
    assert "Tasting is full (3/3)" in await chat.say("dave", "/join 1")
    assert "Event #1 updated." in await chat.say("boss", "/event edit 1 capacity none")
    assert "Dave is signed up" in await chat.say("dave", "/join 1")


async def test_a_title_edit_rewrites_the_pending_promos_in_place(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("bob", "hello")
    await chat.say("boss", f"/event add {START} Tasting --capacity 20")
    before = await promo_times(chat.runtime)
    for _ in range(3):
        assert "Event #1 updated." in await chat.say("boss", "/event edit 1 title Spring tasting")
    assert "Event #1 updated." in await chat.say("boss", "/event edit 1 desc Ten new teas")
    assert "Event #1 updated." in await chat.say("boss", "/event edit 1 capacity 12")
    async with chat.runtime.deps.db.read() as repos:
        promos = await repos.announcements.for_event(1)
    # The same four promos at the same times, none cancelled, each with the new texts and its own countdown.
    assert await promo_times(chat.runtime) == before and len(promos) == 4
    for promo, countdown in zip(promos, ("in 5 days", "in 3 days", "in 24 hours", "in 2 hours"), strict=True):
        assert "Spring tasting" in promo.text and "Ten new teas" in promo.text and "Places: 12" in promo.text
        assert countdown in promo.text
    clock.set(local(2026, 3, 15, 19, 30))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    (posted,) = pusher.to("group")
    assert "Spring tasting" in posted and "Places: 12" in posted


async def test_cancelling_tells_those_who_signed_up(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members_present(chat)
    await chat.say("boss", f"/event add {START} Tasting")
    await chat.say("alice", "/join 1")
    text = await chat.say("boss", "/event cancel 1")
    assert "Event #1 (Tasting) cancelled with 1 signed up" in text
    await settle(chat.runtime)
    assert any("is cancelled" in t for t in pusher.to("alice"))
    assert any("is cancelled" in t for t in pusher.to("group"))
    assert all(state != "pending" for _, _, state in await promo_times(chat.runtime))
    assert "There is no active event #1" in await chat.say("alice", "/join 1")


async def test_restart_sends_each_due_push_exactly_once(settings: Settings, clock: FakeClock) -> None:
    first = await Runtime.open(settings, clock)
    chat = ChatDriver(first)
    await chat.say("bob", "hello")
    await chat.say("boss", f"/event add {START} Tasting")
    await first.close()  # the bot goes down with four promos pending

    clock.set(local(2026, 3, 15, 20, 30))  # an hour after the 5-day promo was due
    for _ in range(2):  # start twice: the second start must send nothing new
        runtime = await Runtime.open(settings, clock)
        recorder = RecordingPusher()
        runtime.outbox.register(recorder)
        await runtime.start()
        await settle(runtime)
        await runtime.close()
        if _ == 0:
            assert len(recorder.to("group")) == 1 and "in 5 days" in recorder.to("group")[0]
            (staff,) = [text for kind, _, text in recorder.pushes if kind == "staff"]
            assert "was due while the bot was down; sent 1 h 0 min late" in staff
        else:
            assert recorder.pushes == []


async def test_a_push_missed_past_the_grace_time_is_skipped(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await chat.say("bob", "hello")
    await chat.say("boss", f"/event add {START} Tasting")
    clock.set(local(2026, 3, 16, 2, 0))  # 6.5 hours after the 5-day promo
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert pusher.to("group") == []
    (staff,) = [text for kind, _, text in pusher.pushes if kind == "staff"]
    assert "Announcement #1 was not sent" in staff and "past the grace time" in staff
    assert next(state for _, _, state in await promo_times(chat.runtime)) == "skipped"


async def test_no_promo_after_the_event_started(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    await chat.say("bob", "hello")
    await chat.say("boss", f"/event add {START} Tasting")
    clock.set(local(2026, 3, 20, 19, 31))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert pusher.to("group") == []
    assert {state for _, _, state in await promo_times(chat.runtime)} == {"skipped"}


async def test_points_and_stock_numbers_beyond_range_or_in_odd_digits_get_the_usage_line(chat: ChatDriver) -> None:
    huge = "99999999999999999999"
    for command in (f"/event add 2026-03-20 19:30 Party --points {huge}",
                    "/event add 2026-03-20 19:30 Party --points ②",
                    f"/reward add Mug | cost=10 stock={huge}",
                    f"/reward add Mug | cost={huge}",
                    f"/groupbuy add Pot | price=100 group_price=80 min={huge} deadline=2026-03-20 10:00"):  # fmt: skip
        text = await chat.say("boss", command)
        assert "Usage" in text and "sorry" not in text.lower(), (command, text)
    text = await chat.say("boss", "/event add 2026-03-20 19:30 Party --points ３０")
    assert "Event #1 created" in text
    await chat.say("boss", f"/event edit 1 points {huge}")
    async with chat.runtime.deps.db.read() as repos:
        event = await repos.events.get(1)
    assert event is not None and event.attend_points == 30


async def test_the_number_check_commands_work_with_normal_numbers(chat: ChatDriver) -> None:
    # the odd-digit test above refuses only the numbers: the same commands with plain numbers are accepted
    assert "Added: #1 Mug" in await chat.say("boss", "/reward add Mug | cost=10 stock=5")
    command = "/groupbuy add Pot | price=100 group_price=80 min=3 deadline=2026-03-20 10:00"
    assert "#1" in await chat.say("boss", command)
