"""Charts keep no global matplotlib state and are drawn off the event loop: importing the chart modules neither
imports pyplot nor changes `matplotlib.rcParams`; /report, /poll results, closing a poll (by staff and on time)
and the weekly report draw on a worker thread, the weekly report with no write transaction open; the pictures
are still complete PNGs of the expected size."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

from handlers.core.clock import FakeClock
from handlers.stats.commands import weekly_report
from tests.chart_recorders import Recorder, size_of
from tests.conftest import ChatDriver, RecordingPusher, settle

ROOT = Path(__file__).resolve().parent.parent

_NO_GLOBAL_STATE = """
import sys
import matplotlib

before = matplotlib.rcParams.copy()
import handlers.shared.charts, handlers.stats.chart, handlers.polls.commands, handlers.stats.commands  # noqa: E401

problems = []
if "matplotlib.pyplot" in sys.modules:
    problems.append("importing the chart modules imported matplotlib.pyplot")
if matplotlib.rcParams != before:
    problems.append("importing the chart modules changed matplotlib.rcParams")
handlers.shared.charts.bar_chart("满意度", ["一", "二", "3"], [1, 2, 3], horizontal=True)
words = handlers.stats.chart.ChartWords("每周", "签到", "新会员", "积分", "发放", "兑换")
handlers.stats.chart.weekly_chart(words, ["03-04", "03-05"], [1, 2], [0, 1], [30, 0], [0, 40])
if "matplotlib.pyplot" in sys.modules:
    problems.append("drawing imported matplotlib.pyplot")
if matplotlib.rcParams != before:
    problems.append("drawing changed matplotlib.rcParams")
print("; ".join(problems) or "clean")
"""


def test_the_chart_modules_keep_no_global_matplotlib_state() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", _NO_GLOBAL_STATE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"


async def test_report_is_drawn_off_the_loop(chat: ChatDriver, weekly: Recorder) -> None:
    (reply,) = await chat.replies("boss", "/report")
    assert weekly.threads and threading.get_ident() not in weekly.threads
    assert reply.image == weekly.pictures[-1] and size_of(reply.image) == (720, 810)  # 8 x 9 inches at 90 dpi


async def test_weekly_report_is_drawn_off_the_loop_with_no_transaction_open(
    chat: ChatDriver, pusher: RecordingPusher, weekly: Recorder
) -> None:
    await weekly_report(chat.runtime.deps)
    await settle(chat.runtime)
    assert weekly.threads and threading.get_ident() not in weekly.threads
    assert weekly.writing == [False]
    assert pusher.images == weekly.pictures and size_of(pusher.images[0]) == (720, 810)


async def members(chat: ChatDriver) -> None:
    for name in ("ann", "ben"):
        await chat.say(name, "hi")


async def test_poll_results_and_staff_close_are_drawn_off_the_loop(chat: ChatDriver, bars: Recorder) -> None:
    await members(chat)
    await chat.say("boss", "/poll rating Service? --hours 5")
    await chat.say("ann", "/vote 1 4")
    (shown,) = await chat.replies("boss", "/poll results 1")
    (closed,) = await chat.replies("boss", "/poll close 1")
    assert len(bars.threads) == 2 and threading.get_ident() not in bars.threads
    assert shown.image == bars.pictures[0] and closed.image == bars.pictures[1]
    assert size_of(closed.image) == (700, 400)  # 7 x 4 inches at 100 dpi


async def test_closing_on_time_draws_off_the_loop(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher, bars: Recorder
) -> None:
    await members(chat)
    await chat.say("boss", "/poll choice Snacks? | tea | cake | fruit --hours 1")
    clock.advance(timedelta(hours=1))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert bars.threads and threading.get_ident() not in bars.threads
    assert pusher.images == bars.pictures and size_of(pusher.images[0]) == (700, 300)  # 3 bars: 7 x 3 inches
