"""Polls: arithmetic on known inputs, the chart's bars, votes and re-votes, rankings with undo, native
polls, closing on time, the recurring survey and the follow-up after a purchase."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import timedelta

import numpy as np
from matplotlib import image as mpimg

from handlers.core.clock import FakeClock
from handlers.polls import results as poll_results
from handlers.polls.commands import start_survey
from handlers.shared.charts import bar_chart
from tests.conftest import ChatDriver, RecordingPusher, settle


def test_rating_nps_choice_and_borda_arithmetic() -> None:
    r = poll_results.rating([5, 4, 3, 5, 1])
    assert (r.count, r.average, r.satisfaction) == (5, 3.6, 0.6)
    assert r.distribution == {1: 1, 2: 0, 3: 1, 4: 1, 5: 2}
    n = poll_results.nps([10, 9, 8, 7, 6, 0])
    assert (n.score, round(n.promoters, 3), round(n.detractors, 3)) == (0.0, 0.333, 0.333)
    assert poll_results.nps([10, 10, 9, 3]).score == 50.0
    assert poll_results.choice([[0], [0, 2], [2, 2], [5]], 3) == [2, 0, 2]
    ranked = poll_results.borda([[0, 1, 2], [0, 2, 1], [1, 0, 2], [2, 0]], 3)  # the last is incomplete
    assert [(i.index, i.borda) for i in ranked] == [(0, 5), (1, 3), (2, 1)]
    assert round(ranked[0].mean_rank, 2) == 1.33
    assert poll_results.rating([]).average == 0.0


def _bars(png: bytes) -> list[int]:
    """Heights in pixels of the red bars, left to right, read back from the PNG."""
    pixels = mpimg.imread(io.BytesIO(png), format="png")[:, :, :3]
    red = np.all(np.abs(pixels - np.array([0xC0, 0x39, 0x2B]) / 255) < 0.02, axis=2)
    columns = red.sum(axis=0)
    heights, run = [], []
    for value in [*columns.tolist(), 0]:
        if value:
            run.append(value)
        elif run:
            heights.append(max(run))
            run = []
    return heights


def test_the_chart_is_a_png_with_the_expected_bars() -> None:
    png = bar_chart("Satisfaction", ["1", "2", "3", "4", "5"], [1, 0, 3, 10, 6])
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    heights = _bars(png)
    assert len(heights) == 4  # the empty bar draws nothing
    assert [round(h / heights[0]) for h in heights] == [1, 3, 10, 6]


async def members(chat: ChatDriver) -> None:
    for name in ("ann", "ben"):
        await chat.say(name, "/start", group=False)
    await chat.say("boss", "/award @ben 600")


async def test_rating_votes_revotes_points_once_and_refusals(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members(chat)
    text = await chat.say("boss", "/poll rating How was your visit? --hours 24 --points 5")
    assert "Poll #1 posted to 3 recipients" in text
    await settle(chat.runtime)
    assert pusher.buttons[0] == tuple(f"v1:vote:1 {n}" for n in range(1, 6))
    assert "Your answer: 4" in await chat.say("ann", "/vote 1 4")
    assert "Your answer: 5" in await chat.say("ann", "评分 1 5")  # changed, not added
    assert "That answer does not fit" in await chat.say("ann", "/vote 1 9")
    chat.port.outsiders.add("eve")
    assert "for members of the VIP group" in await chat.say("eve", "/vote 1 3", group=False)
    async with chat.runtime.deps.db.read() as repos:
        answers = await repos.polls.answers(1)
        ann = await repos.members.by_identity("test", "ann")
    assert [(a.display_name, a.value) for a in answers] == [("Ann", 5)]
    assert ann is not None and ann.balance == 5  # participation points once, not per change
    results = await chat.replies("boss", "/poll results 1")
    assert "Average 5.00, satisfaction (4-5 stars) 100%" in results[0].text and results[0].image is not None


async def test_tier_only_polls(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members(chat)
    await chat.say("boss", "/poll nps Would you recommend us? --tier diamond,black --to members")
    assert "This poll is for Diamond, Black card members." in await chat.say("ann", "/vote 1 10")
    assert "Your answer: 9" in await chat.say("ben", "/vote 1 9")


async def test_closing_on_time_posts_results_and_sends_staff_the_chart(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await members(chat)
    await chat.say("boss", "/poll nps Would you recommend us? --close 2026-03-11 09:00")
    await chat.say("ann", "/vote 1 10")
    await chat.say("ben", "/vote 1 3")
    clock.set(clock.now() + timedelta(hours=23, minutes=59))
    await chat.runtime.planner.fire()
    assert "is closed" not in await chat.say("ann", "/vote 1 9")
    clock.advance(timedelta(minutes=1))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    results = [t for t in pusher.to("group") if t.startswith("📊")]
    assert len(results) == 1 and "Net Promoter Score: +0 (promoters 50%" in results[0]
    (staff,) = [text for kind, _, text in pusher.pushes if kind == "staff"]
    assert staff == results[0] and pusher.images and pusher.images[0].startswith(b"\x89PNG")
    assert "Poll #1 is closed" in await chat.say("ann", "/vote 1 9")


async def test_staff_close_now_and_export(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members(chat)
    await chat.say("boss", "/poll rating Service? --hours 5")
    await chat.say("ann", "/vote 1 4")
    (closed,) = await chat.replies("boss", "/poll close 1")
    assert "1 answered" in closed.text and closed.image is not None
    assert "does not exist or is closed" in await chat.say("boss", "/poll close 1")
    (export,) = await chat.replies("boss", "/poll export 1")
    assert export.document is not None
    rows = list(csv.reader(io.StringIO(export.document[1].decode("utf-8-sig"))))
    assert rows[1][:3] == [rows[1][0], "Ann", "4"]
    await chat.runtime.planner.fire()  # the planned close finds it closed and sends nothing twice
    await settle(chat.runtime)
    assert len([t for t in pusher.to("group") if t.startswith("📊")]) == 1


async def test_ranking_tap_by_tap_with_undo(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members(chat)
    await chat.say("boss", "/poll rank What matters most? | Price | Quality | Service --points 3")

    async def tap(what: str) -> str:
        msg = replace(chat.inbound("ann", ""), button=f"v1:rank:1 {what}")
        return (await chat.runtime.dispatcher.handle(msg, chat.port))[0].text

    assert "Your ranking so far: 1.Quality (2 left)" in await tap("1")
    assert "1.Quality 2.Price (1 left)" in await tap("0")
    assert "1.Quality (2 left)" in await tap("undo")
    assert "1.Quality 2.Service (1 left)" in await tap("2")
    assert "Done, thank you! Your ranking: 1.Quality 2.Service 3.Price" in await tap("0")
    assert "Your answer: 1.Service 2.Price 3.Quality." in await chat.say("ben", "/vote 1 3 1 2")
    text = (await chat.replies("boss", "/poll results 1"))[0].text
    assert "#1: Service (Borda 3, mean rank 1.50)\n#2: Quality (Borda 2, mean rank 2.00)\n#3: Price (Borda 1" in text
    async with chat.runtime.deps.db.read() as repos:
        ann = await repos.members.by_identity("test", "ann")
    assert ann is not None and ann.balance == 3


async def test_native_choice_polls_and_their_answers(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members(chat)
    await chat.say("boss", "/poll choice Which new tea? | Oolong | Pu'er | Jasmine --multi")
    await settle(chat.runtime)
    assert pusher.polls and pusher.polls[0].options == ("Oolong", "Pu'er", "Jasmine") and pusher.polls[0].multi
    answer = replace(chat.inbound("ann", "", group=False), button="v1:native_vote:native-1 0,2")
    assert await chat.runtime.dispatcher.handle(answer, chat.port) == []
    assert "1. Oolong: 1 vote\n2. Pu'er: 0 votes\n3. Jasmine: 1 vote" in await chat.say("boss", "/poll results 1")
    retract = replace(chat.inbound("ann", "", group=False), button="v1:native_vote:native-1 ")
    await chat.runtime.dispatcher.handle(retract, chat.port)
    assert "0 answered" in await chat.say("boss", "/poll results 1")


async def test_bad_poll_commands(chat: ChatDriver, pusher: RecordingPusher) -> None:
    bad_commands = [
        "/poll", "/poll rating", "/poll choice Only one | A", "/poll rank Two | A | B", "/poll rating Q --hours 0",
        "/poll rating Q --tier platinum", "/poll rating Q --to everywhere", "/poll close x", "/poll frob 1",
        "/poll rating Q | an option",
    ]  # fmt: skip
    for bad in bad_commands:
        assert "Usage: /poll" in await chat.say("boss", bad), bad
    assert "is in the past" in await chat.say("boss", "/poll rating Q --close 2026-03-01 10:00")
    assert "only staff" in await chat.say("ann", "/poll rating Q")
    assert "There is no poll #4" in await chat.say("ann", "/vote 4 1")
    assert "No polls are open" in await chat.say("ann", "/polls")


async def test_the_survey_opens_once_a_day(chat: ChatDriver, pusher: RecordingPusher) -> None:
    await members(chat)
    assert await start_survey(chat.runtime.deps) == 1
    assert await start_survey(chat.runtime.deps) is None  # a second firing the same day creates nothing
    assert "#1 How satisfied are you" in await chat.say("ann", "调查")


async def test_a_purchase_is_followed_by_a_private_rating_request(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    chat.runtime.deps.rules.polls.survey.purchase_followup_days = 3
    await members(chat)
    await chat.say("boss", "/purchase @ann 88")
    clock.advance(timedelta(days=3))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    (request,) = pusher.to("ann")[-1:]
    assert "How satisfied were you?" in request
    assert pusher.buttons[-1][0].startswith("v1:vote:")
    poll_id = pusher.buttons[-1][0].split(":")[2].split()[0]
    assert "Your answer: 5" in await chat.say("ann", f"/vote {poll_id} 5", group=False)


async def test_a_voided_purchase_is_not_followed_by_a_rating_request(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    chat.runtime.deps.rules.polls.survey.purchase_followup_days = 3
    await members(chat)
    recorded = await chat.say("boss", "/purchase @ann 88 typo")
    purchase_id = recorded.split("Purchase #")[1].split()[0].rstrip(":.,)")
    assert "Voided purchase" in await chat.say("boss", f"/void purchase {purchase_id}")
    clock.advance(timedelta(days=3))
    await chat.runtime.planner.fire()
    await settle(chat.runtime)
    assert not any("How satisfied were you?" in text for text in pusher.to("ann"))
    assert any("was not sent: the purchase it follows up was voided" in text for text in pusher.to(""))
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT state FROM announcements WHERE kind = 'followup'")
    assert [tuple(r) for r in rows] == [("skipped",)]
