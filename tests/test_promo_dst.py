"""Promo lead times across daylight-saving changes: hour and minute leads are elapsed time, day leads and
the five-day rule are local calendar days at the same local time of day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.shared.broadcast import local_days_before
from tests.conftest import ChatDriver, RecordingPusher, settle, storage_for

BERLIN = ZoneInfo("Europe/Berlin")  # 2026: 02:00 CET -> 03:00 CEST on 03-29, 03:00 CEST -> 02:00 CET on 10-25
NEW_YORK = ZoneInfo("America/New_York")  # 2026: 02:00 EST -> 03:00 EDT on 03-08, 02:00 EDT -> 01:00 EST on 11-01
HOUR = 3600
DAY = 24 * HOUR


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Berlin unless a test passes other settings (indirect parametrisation)."""
    extra: dict[str, Any] = getattr(request, "param", {})
    return Settings(
        **{"locale": "en", "timezone": "Europe/Berlin", "storage": storage_for(tmp_path / "vip.db"), **extra}
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 2, 20, 12, 0, tzinfo=UTC))


async def promos(runtime: Runtime, event_id: int = 1) -> dict[str, int]:
    """lead -> due (unix time) of the event's promos that are still to go out."""
    async with runtime.deps.db.read() as repos:
        rows = await repos.announcements.for_event(event_id)
    return {a.lead or "": a.due_at for a in rows if a.state == "pending"}


async def starts_at(runtime: Runtime, event_id: int = 1) -> int:
    async with runtime.deps.db.read() as repos:
        event = await repos.events.get(event_id)
    assert event is not None
    return event.starts_at


@pytest.mark.parametrize(
    ("settings", "zone", "day"),
    [({"timezone": "Europe/Berlin"}, BERLIN, 29), ({"timezone": "America/New_York"}, NEW_YORK, 8)],
    indirect=["settings"],
    ids=["berlin", "new-york"],
)
async def test_event_just_after_spring_forward_gets_its_2h_promo_two_real_hours_ahead(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher, zone: ZoneInfo, day: int
) -> None:
    await chat.say("bob", "hello")
    text = await chat.say("boss", f"/event add 2026-03-{day:02d} 03:30 Night market")
    assert "Event #1 created" in text
    start = await starts_at(chat.runtime)
    assert start == int(at(zone, 2026, 3, day, 3, 30).timestamp())
    planned = await promos(chat.runtime)
    assert start - planned["2h"] == 2 * HOUR  # wall-clock 03:30 - 2h = 01:30 is one real hour
    assert planned["2h"] == int(at(zone, 2026, 3, day, 0, 30).timestamp())  # 00:30 standard time
    assert f"· 2 hours ahead: 2026-03-{day:02d} 00:30" in text
    for label, days in (("5d", 5), ("3d", 3), ("1d", 1)):  # day leads keep the local time of day
        assert planned[label] == int(at(zone, 2026, 3, day - days, 3, 30).timestamp()), label
        assert start - planned[label] == days * DAY - HOUR, label  # the day that lost an hour is in between
    assert f"· 5 days ahead: 2026-03-{day - 5:02d} 03:30" in text

    due = datetime.fromtimestamp(planned["2h"], UTC)
    clock.set(due - timedelta(seconds=1))
    assert await chat.runtime.planner.fire() == []
    clock.set(due)
    assert len(await chat.runtime.planner.fire()) == 1
    await settle(chat.runtime)
    (post,) = pusher.to("group")
    assert "Night market" in post and "in 2 hours" in post


async def test_five_day_rule_counts_local_days_across_spring_forward(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(at(BERLIN, 2026, 3, 25, 12, 0))  # 5 local days later is 03-30 12:00, only 4 d 23 h away
    text = await chat.say("boss", "/event add 2026-03-30 11:30 Too early")
    assert "at least a 5-day lead" in text and "earliest allowed start is 2026-03-30 12:00" in text
    assert await promos(chat.runtime) == {}

    text = await chat.say("boss", "/event add 2026-03-30 12:30 Brunch")  # 4 d 23.5 h of real time
    assert "Event #1 created" in text and "bending the rule" not in text and "· now:" not in text
    assert "· 5 days ahead: 2026-03-25 12:30" in text
    planned = await promos(chat.runtime)
    assert planned["5d"] == int(at(BERLIN, 2026, 3, 25, 12, 30).timestamp())
    assert await starts_at(chat.runtime) - planned["5d"] == 5 * DAY - HOUR

    assert "earliest allowed start is 2026-03-30 12:00" in await chat.say(
        "boss", "/event edit 1 start 2026-03-30 11:59"
    )


@pytest.mark.parametrize(
    "settings", [{"events": {"promo_leads": ["5d", "3d", "36h", "1d", "2h"]}}], indirect=True, ids=["36h-lead"]
)
async def test_event_the_day_after_fall_back(chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher) -> None:
    clock.set(at(BERLIN, 2026, 10, 21, 10, 0))  # summer time; 5 local days later is 10-26 10:00 winter time
    text = await chat.say("boss", "/event add 2026-10-26 09:30 Too early")  # 5 d 0.5 h of real time
    assert "at least a 5-day lead" in text and "earliest allowed start is 2026-10-26 10:00" in text
    assert await promos(chat.runtime) == {}

    text = await chat.say("boss", "/event add 2026-10-26 10:30 Harvest tasting")
    assert "Event #1 created" in text and "bending the rule" not in text and "· now:" not in text
    start = await starts_at(chat.runtime)
    assert start == int(at(BERLIN, 2026, 10, 26, 10, 30).timestamp())
    planned = await promos(chat.runtime)
    assert planned == {
        "5d": int(at(BERLIN, 2026, 10, 21, 10, 30).timestamp()),
        "3d": int(at(BERLIN, 2026, 10, 23, 10, 30).timestamp()),
        "36h": int(at(BERLIN, 2026, 10, 24, 23, 30).timestamp()),  # wall-clock would say 22:30, 37 h ahead
        "1d": int(at(BERLIN, 2026, 10, 25, 10, 30).timestamp()),
        "2h": int(at(BERLIN, 2026, 10, 26, 8, 30).timestamp()),
    }
    assert start - planned["5d"] == 5 * DAY + HOUR  # the day that gained an hour is in between
    assert start - planned["36h"] == 36 * HOUR and start - planned["2h"] == 2 * HOUR
    assert "· 5 days ahead: 2026-10-21 10:30" in text and "· 36 hours ahead: 2026-10-24 23:30" in text


@pytest.mark.parametrize(
    ("start", "days", "expected"),
    [
        # 03-29 02:30 does not exist in Berlin: read with the offset before the gap, i.e. 03:30 summer time
        (at(BERLIN, 2026, 3, 30, 2, 30), 1, at(BERLIN, 2026, 3, 29, 3, 30)),
        (at(NEW_YORK, 2026, 3, 9, 2, 30), 1, at(NEW_YORK, 2026, 3, 8, 3, 30)),
        # 10-25 02:30 happens twice in Berlin: the first time (summer time) is meant
        (at(BERLIN, 2026, 10, 26, 2, 30), 1, at(BERLIN, 2026, 10, 25, 2, 30, fold=0)),
        (at(NEW_YORK, 2026, 11, 2, 1, 30), 1, at(NEW_YORK, 2026, 11, 1, 1, 30, fold=0)),
        # negative days count forward (the earliest allowed start), also across a change
        (at(BERLIN, 2026, 10, 21, 10, 0), -5, at(BERLIN, 2026, 10, 26, 10, 0)),
        # an instant in the repeated hour keeps its wall time, whichever occurrence it is
        (at(BERLIN, 2026, 10, 25, 2, 30, fold=1), 5, at(BERLIN, 2026, 10, 20, 2, 30)),
    ],
    ids=["berlin-gap", "new-york-gap", "berlin-repeat", "new-york-repeat", "forward", "from-repeat"],
)
def test_day_leads_on_a_missing_or_repeated_wall_time(start: datetime, days: int, expected: datetime) -> None:
    got = local_days_before(start, days, start.tzinfo)  # type: ignore[arg-type]
    assert got.tzinfo is UTC and got.timestamp() == expected.timestamp()  # (== is never true in a repeated hour)
    assert got.astimezone(start.tzinfo).utcoffset() == expected.utcoffset()


def test_first_occurrence_of_a_repeated_hour_is_the_earlier_instant() -> None:
    first = local_days_before(at(BERLIN, 2026, 10, 26, 2, 30), 1, BERLIN)
    assert first == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST, 25 h before 10-26 02:30 CET
    skipped = local_days_before(at(BERLIN, 2026, 3, 30, 2, 30), 1, BERLIN)
    assert skipped == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, 23 h before 03-30 02:30 CEST
