"""Staff statistics on a seeded database (exact figures at the edges of the 7-day and 90-day windows), the
/report chart and the weekly report sent to the staff chat."""

from __future__ import annotations

import io
from datetime import date, datetime

from PIL import Image

from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.stats.commands import week_series, weekly_report
from storage.stats import PointsFlow
from tests.conftest import ChatDriver, RecordingPusher, local, settle

PNG = b"\x89PNG\r\n\x1a\n"


def ts(*args: int) -> int:
    return int(local(*args).timestamp())


async def join_at(chat: ChatDriver, clock: FakeClock, who: str, when: datetime) -> int:
    saved = clock.now()
    clock.set(when)
    await chat.say(who, "hi")
    clock.set(saved)
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.members.by_identity("test", who)
    assert found is not None
    return found.id


async def seed(chat: ChatDriver, clock: FakeClock) -> dict[str, int]:
    """Six members on 2026-03-10 09:00 (a Tuesday); the 7-day window opens 2026-03-04 00:00."""
    ids = {
        "boss": await join_at(chat, clock, "boss", local(2026, 2, 1, 10, 0)),
        "alice": await join_at(chat, clock, "alice", local(2026, 2, 1, 10, 0)),
        "bob": await join_at(chat, clock, "bob", local(2026, 2, 1, 10, 0)),
        "carol": await join_at(chat, clock, "carol", local(2026, 3, 5, 12, 0)),
        "dave": await join_at(chat, clock, "dave", local(2026, 3, 3, 23, 59)),  # just before the window
        "erin": await join_at(chat, clock, "erin", local(2026, 3, 10, 8, 0)),
    }
    async with chat.runtime.deps.db.transaction() as repos:
        # Check-ins: two today, one on the window's first day, one the day before it.
        for who, day in (("alice", "2026-03-10"), ("carol", "2026-03-10"), ("bob", "2026-03-04"),
                         ("dave", "2026-03-03")):  # fmt: skip
            await repos.checkins.record(ids[who], day, "", ts(2026, 3, 10, 8, 0), 10, 0, 0)
        # Purchases: dave buys at the window's first instant, erin one second before it.
        purchases = [
            ("dave", ts(2026, 3, 4, 0, 0)),
            ("erin", ts(2026, 3, 3, 23, 59) + 59),
            ("alice", ts(2025, 11, 1, 12, 0)),
            ("alice", ts(2025, 12, 1, 12, 0)),  # 99 days ago: dormant_high
            ("bob", ts(2024, 12, 1, 12, 0)),
            ("bob", ts(2025, 1, 1, 12, 0)),  # 433 days ago: lost
        ]
        for n, (who, at) in enumerate(purchases):
            await repos.purchases.record(ids[who], 5000, "", f"stats:{n}", at, None)
        # Points: 130 issued and 40 redeemed in the window; a deduction and an older award do not count.
        ledger = [
            ("bob", 30, "checkin", ts(2026, 3, 4, 0, 0), None),
            ("alice", 100, "award", ts(2026, 3, 5, 10, 0), None),
            ("alice", -40, "redeem", ts(2026, 3, 6, 10, 0), 0),
            ("bob", -5, "deduct", ts(2026, 3, 7, 10, 0), -5),
            ("carol", 7, "award", ts(2026, 3, 3, 23, 59), None),
        ]
        for n, (who, delta, reason, at, earned) in enumerate(ledger):
            await repos.ledger.append(ids[who], delta, reason, f"stats:ledger:{n}", at, earned_delta=earned)
        # Rating polls: a closed one answered 5, 4, 2 in the window; an answer 91 days old; an open poll.
        now = ts(2026, 3, 10, 9, 0)
        closed = await repos.polls.create("rating", "How are we?", [], False, (), 0, "all", now, None, now - 86_400)
        old = await repos.polls.create("rating", "Last year?", [], False, (), 0, "all", now, None, now - 100 * 86_400)
        still_open = await repos.polls.create("rating", "Now?", [], False, (), 0, "all", now + 86_400, None, now)
        assert closed and old and still_open
        for who, value in (("alice", 5), ("bob", 4), ("carol", 2)):
            await repos.polls.answer(closed, ids[who], value, True, now - 3600)
        await repos.polls.answer(old, ids["dave"], 1, True, now - 91 * 86_400)
        await repos.polls.answer(still_open, ids["erin"], 5, True, now)
        await repos.polls.close(closed, now)
        await repos.polls.close(old, now)
        # Tickets: one still open, two closed and rated 5 and 3.
        await repos.tickets.open(ids["alice"], "feedback", "test", "group", True, "hello", now - 3600, now + 80_000)
        for who, rating in (("bob", 5), ("carol", 3)):
            ticket = await repos.tickets.open(ids[who], "complaint", "test", "group", True, "slow", now - 7200, now)
            await repos.tickets.close(ticket, ids["boss"], now - 3600)
            assert await repos.tickets.rate(ticket, ids[who], rating, now - 1800)
    return ids


async def test_stats_figures_on_a_seeded_database(chat: ChatDriver, clock: FakeClock) -> None:
    await seed(chat, clock)
    text = await chat.say("boss", "/stats")
    lines = text.splitlines()
    assert lines[:7] == [
        "📊 Statistics, 2026-03-10",
        "Members: 6 (2 joined in the last 7 days)",
        "Check-ins today: 2",
        "Active in the last 7 days (checked in or purchased): 4 of 6, 66.7%",
        "Repurchase rate: 50.0% (repeat buyers 2 of 4)",
        "Segments: New 2 · Active 0 · Cooling 0 · Dormant-high 1 · Dormant-low 0 · Lost 1 · Never bought 2",
        "Satisfaction (closed rating polls, last 90 days): 66.7% rated 4-5 ⭐ (2 of 3)",
    ]
    assert lines[7] == "Feedback tickets: 2 rated, average 4.00 ⭐, 50.0% rated 4-5 ⭐; 1 not closed, 0 late"
    assert lines[-1] == "Points in the last 7 days: 130 issued, 40 redeemed"
    assert lines[8] == "Referrals: 0"
    assert await chat.say("alice", "/stats") == "Sorry, only staff with the manager role can use this command."


async def test_stats_counts_referrals_not_voided(chat: ChatDriver, clock: FakeClock) -> None:
    ids = await seed(chat, clock)
    async with chat.runtime.deps.db.transaction() as repos:
        # alice brought carol and erin; erin's referral was voided when the two became one member.
        for referred, voided in (("carol", None), ("erin", ts(2026, 3, 10, 8, 30))):
            await repos.conn.execute(
                "INSERT INTO referrals(referrer_id, referred_id, code, channel, created_at, voided_at)"
                " VALUES (?, ?, 'ALICE1', 'test', ?, ?)",
                (ids["alice"], ids[referred], ts(2026, 3, 9, 12, 0), voided),
            )
    assert "Referrals: 1" in (await chat.say("boss", "/stats")).splitlines()


async def test_stats_on_an_empty_database_says_n_a(chat: ChatDriver) -> None:
    text = await chat.say("boss", "/stats")
    assert "Members: 1 (1 joined in the last 7 days)" in text
    assert "Repurchase rate: n/a (repeat buyers 0 of 0)" in text
    assert "Satisfaction (closed rating polls, last 90 days): no answers yet" in text
    assert "Feedback tickets: none rated yet; 0 not closed, 0 late" in text
    assert "Points in the last 7 days: 0 issued, 0 redeemed" in text


async def test_report_is_a_png_of_the_last_seven_days(chat: ChatDriver, clock: FakeClock) -> None:
    await seed(chat, clock)
    replies = await chat.replies("boss", "/report")
    assert len(replies) == 1
    reply = replies[0]
    assert reply.image is not None and reply.image.startswith(PNG)
    with Image.open(io.BytesIO(reply.image)) as picture:
        picture.verify()  # a complete, uncorrupted PNG
        assert picture.format == "PNG" and picture.size == (720, 810)
    assert reply.text == (
        "📈 Weekly report 2026-03-04 to 2026-03-10: check-ins 3, new members 2, points issued 130, points redeemed 40."
    )
    assert await chat.say("alice", "/report") == "Sorry, only staff with the manager role can use this command."


async def test_week_series_per_day(chat: ChatDriver, clock: FakeClock) -> None:
    await seed(chat, clock)
    deps = chat.runtime.deps
    async with deps.db.read() as repos:
        series = await week_series(repos, deps, date(2026, 3, 10))
    assert [d.isoformat()[5:] for d in series.days] == ["03-04", "03-05", "03-06", "03-07", "03-08", "03-09", "03-10"]
    assert series.checkins == [1, 0, 0, 0, 0, 0, 2]
    assert series.new_members == [0, 1, 0, 0, 0, 0, 1]
    assert series.points == [PointsFlow(30, 0), PointsFlow(100, 0), PointsFlow(0, 40), *[PointsFlow(0, 0)] * 4]


async def test_weekly_report_goes_to_the_staff_chat(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await seed(chat, clock)
    clock.set(local(2026, 3, 11, 9, 0))  # Wednesday: the seven full days before it are 03-04 .. 03-10
    await weekly_report(chat.runtime.deps)
    await settle(chat.runtime)
    staff = [(kind, text) for kind, _, text in pusher.pushes if kind == "staff"]
    assert staff == [
        ("staff", "📈 Weekly report 2026-03-04 to 2026-03-10: check-ins 3, new members 2, points issued 130, "
                  "points redeemed 40."),
    ]  # fmt: skip
    assert len(pusher.images) == 1 and pusher.images[0].startswith(PNG)


async def test_weekly_report_without_a_staff_chat_sends_nothing(runtime: Runtime) -> None:
    await weekly_report(runtime.deps)  # no pusher registered: no staff channel
    async with runtime.deps.db.read() as repos:
        assert await repos.announcements.pending() == []
