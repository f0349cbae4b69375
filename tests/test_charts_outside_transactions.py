"""Charts are drawn with no write transaction open, so no other write waits for the write lock while one draws:
/report, /poll results and /poll close draw before the update's transaction (the command's `prepare` step),
closing a poll on time draws after the scheduler's transaction commits. The effects and the queued replies
still commit in one transaction per update, and the pictures are still complete PNGs."""

from __future__ import annotations

from datetime import timedelta

from handlers.core.clock import FakeClock
from tests.chart_recorders import Recorder, size_of
from tests.conftest import ChatDriver, RecordingPusher, settle


async def members(chat: ChatDriver) -> None:
    for name in ("ann", "ben"):
        await chat.say(name, "hi")


async def test_report_is_drawn_with_no_write_transaction_open(chat: ChatDriver, weekly: Recorder) -> None:
    await chat.say("ann", "/checkin")
    (reply,) = await chat.replies("boss", "/report")
    assert weekly.writing == [False]
    assert reply.image == weekly.pictures[0] and size_of(reply.image) == (720, 810)  # 8 x 9 inches at 90 dpi


async def test_two_reports_each_get_their_own_picture(chat: ChatDriver, weekly: Recorder) -> None:
    """Each update carries the picture prepared for it."""
    (first,) = await chat.replies("boss", "/report")
    (second,) = await chat.replies("boss", "/report")
    assert weekly.writing == [False, False]
    assert first.image == weekly.pictures[0] and second.image == weekly.pictures[1]


async def test_poll_results_are_drawn_with_no_write_transaction_open(chat: ChatDriver, bars: Recorder) -> None:
    await members(chat)
    await chat.say("boss", "/poll rating Service? --hours 5")
    await chat.say("ann", "/vote 1 4")
    (shown,) = await chat.replies("boss", "/poll results 1")
    assert bars.writing == [False]
    assert shown.image == bars.pictures[0] and size_of(shown.image) == (700, 400)  # 7 x 4 inches at 100 dpi
    assert "4⭐×1" in shown.text
    (unknown,) = await chat.replies("boss", "/poll results 9")
    assert unknown.image is None and bars.writing == [False]  # nothing to draw for a poll that does not exist


async def test_staff_close_is_drawn_with_no_write_transaction_open(
    chat: ChatDriver, pusher: RecordingPusher, bars: Recorder
) -> None:
    await members(chat)
    await chat.say("boss", "/poll rating Service? --hours 5")
    await chat.say("ann", "/vote 1 4")
    await chat.say("ben", "/vote 1 2")
    (closed,) = await chat.replies("boss", "/poll close 1")
    assert bars.writing == [False]
    assert closed.image == bars.pictures[0] and size_of(closed.image) == (700, 400)
    assert "2⭐×1" in closed.text and "4⭐×1" in closed.text
    await settle(chat.runtime)
    assert pusher.images == [closed.image]  # staff's announcement carries the same picture
    (again,) = await chat.replies("boss", "/poll close 1")
    assert again.image is None and len(bars.writing) == 1  # a closed poll is not drawn again
    (late,) = await chat.replies("ann", "/vote 1 5")
    assert late.image is None
    (shown,) = await chat.replies("boss", "/poll results 1")
    assert "5⭐×0" in shown.text and "2 answered" in shown.text  # the answer after the close did not count


async def test_closing_on_time_draws_with_no_write_transaction_open(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher, bars: Recorder
) -> None:
    await members(chat)
    await chat.say("boss", "/poll choice Snacks? | tea | cake | fruit --hours 1")
    await chat.say("ann", "/vote 1 2")
    clock.advance(timedelta(hours=1))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert bars.writing == [False]
    assert pusher.images == bars.pictures and size_of(pusher.images[0]) == (700, 300)  # 3 bars: 7 x 3 inches
    (shown,) = await chat.replies("boss", "/poll results 1")
    assert "1 answered" in shown.text and bars.writing == [False, False]
