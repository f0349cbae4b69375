"""Holiday and birthday greetings: lunar and solar dates, planning once per occurrence, exactly one send
across restarts, gifts once, /greetings, 29 February birthdays, the 30-day rule and the group fallback."""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.core.i18n import LOCALES, load_catalog
from handlers.greetings.commands import birthday_keys, plan_greetings, prepare_greeting, send_birthdays
from handlers.greetings.holidays import BUILTIN_IDS, next_occurrence, occurrences
from tests.conftest import ChatDriver, RecordingPusher, local, settle, storage_for


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        locale="en",
        storage=storage_for(tmp_path / "vip.db"),
        greetings={
            "gift_points": {"mid_autumn": 50},
            "custom": [{"id": "shop_day", "date": "09-20", "name": "Shop Day", "gift_points": 10}],
        },
        birthdays={"gift_points": 88},
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(local(2027, 9, 10, 9, 0))  # five days before Mid-Autumn 2027


def next_day(holiday_id: str, after: date, custom: list[tuple[str, str]] | None = None) -> date:
    found = next_occurrence(holiday_id, after, custom or [])
    assert found is not None
    return found.day


async def balance(runtime: Runtime, who: str) -> int:
    async with runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
    assert member is not None
    return member.balance


async def greeting_rows(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    """(holiday id, day, announcement state) of every planned greeting."""
    async with runtime.deps.db.read() as repos:
        plans = await repos.greetings.plans_from("2000-01-01")
    return [(p.holiday_id, p.day, p.state) for p in plans]


async def members_present(chat: ChatDriver) -> None:
    await chat.say("alice", "/start", group=False)  # may be messaged privately
    await chat.say("bob", "hello")  # group only


# --- the calendar ----------------------------------------------------------------------------------
def test_holidays_of_2027_lunar_and_solar() -> None:
    found = {occ.id: occ.day for occ in occurrences(date(2027, 1, 1), date(2027, 12, 31))}
    assert found == {
        "new_year": date(2027, 1, 1),
        "new_years_eve": date(2027, 2, 5),
        "spring_festival": date(2027, 2, 6),
        "lantern": date(2027, 2, 20),
        "qingming": date(2027, 4, 5),
        "labour_day": date(2027, 5, 1),
        "dragon_boat": date(2027, 6, 9),
        "qixi": date(2027, 8, 8),
        "mid_autumn": date(2027, 9, 15),
        "national_day": date(2027, 10, 1),
        "double_ninth": date(2027, 10, 8),
    }
    assert set(found) == set(BUILTIN_IDS)


def test_new_years_eve_is_the_day_before_spring_festival_even_after_a_short_month() -> None:
    # The 12th lunar month of 2024 has 29 days: 除夕 2025 is on its 29th, 2025-01-28.
    assert next_day("new_years_eve", date(2025, 1, 1)) == date(2025, 1, 28)
    assert next_day("spring_festival", date(2025, 1, 1)) == date(2025, 1, 29)
    assert next_day("qingming", date(2026, 1, 1)) == date(2026, 4, 5)


def test_custom_days_and_ranges() -> None:
    custom = [("shop_day", "09-20"), ("leap_sale", "02-29"), ("new_year", "01-02")]
    found = occurrences(date(2027, 9, 10), date(2028, 3, 1), custom)
    ids = [(occ.id, occ.day) for occ in found]
    assert ids[:4] == [
        ("mid_autumn", date(2027, 9, 15)),
        ("shop_day", date(2027, 9, 20)),
        ("national_day", date(2027, 10, 1)),
        ("double_ninth", date(2027, 10, 8)),
    ]
    assert ("leap_sale", date(2028, 2, 29)) in ids  # 2028 is a leap year
    assert ("new_year", date(2028, 1, 2)) not in ids  # a custom day cannot take a built-in id
    assert next_day("leap_sale", date(2025, 3, 1), custom) == date(2028, 2, 29)
    assert occurrences(date(2027, 9, 16), date(2027, 9, 19)) == []


def test_every_holiday_has_a_name_and_a_greeting_in_both_locales() -> None:
    for locale in LOCALES:
        catalog = load_catalog(locale)
        for holiday_id in BUILTIN_IDS:
            assert catalog[f"holiday.name.{holiday_id}"] and catalog[f"holiday.text.{holiday_id}"], (locale, holiday_id)


def test_birthday_keys_for_29_february() -> None:
    assert birthday_keys(date(2027, 2, 28), "02-28") == ["02-28", "02-29"]
    assert birthday_keys(date(2028, 2, 28), "02-28") == ["02-28"]  # leap year: greeted on the 29th itself
    assert birthday_keys(date(2027, 3, 1), "03-01") == ["03-01", "02-29"]
    assert birthday_keys(date(2027, 3, 1), "02-28") == ["03-01"]


# --- planning and sending holiday greetings ------------------------------------------------------------
async def test_greetings_are_planned_once_at_the_send_time(chat: ChatDriver) -> None:
    assert await plan_greetings(chat.runtime.deps) == 4
    assert await plan_greetings(chat.runtime.deps) == 0  # daily and at every start-up: nothing twice
    assert await greeting_rows(chat.runtime) == [
        ("mid_autumn", "2027-09-15", "pending"),
        ("shop_day", "2027-09-20", "pending"),
        ("national_day", "2027-10-01", "pending"),
        ("double_ninth", "2027-10-08", "pending"),
    ]
    async with chat.runtime.deps.db.read() as repos:
        pending = await repos.announcements.pending(kind="greeting")
    assert (pending[0].audience, pending[0].due_at) == ("all", int(local(2027, 9, 15, 9, 0).timestamp()))
    assert "Mid-Autumn" in pending[0].text and "50 points" in pending[0].text
    assert pending[1].text.startswith("🎉 Happy Shop Day!") and "10 points" in pending[1].text


async def test_greeting_goes_to_groups_and_private_members_with_the_gift(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await members_present(chat)
    await plan_greetings(chat.runtime.deps)
    clock.set(local(2027, 9, 15, 8, 59))
    assert await chat.runtime.planner.fire() == []
    clock.set(local(2027, 9, 15, 9, 0))
    assert len(await chat.runtime.planner.fire()) == 1
    await settle(chat.runtime)
    (group,) = pusher.to("group")
    assert group.startswith("🥮 Happy Mid-Autumn Festival!") and "50 points" in group
    assert pusher.to("alice") == [group] and pusher.to("bob") == []
    assert await balance(chat.runtime, "alice") == 50 and await balance(chat.runtime, "bob") == 50
    assert ("mid_autumn", "2027-09-15", "queued") in await greeting_rows(chat.runtime)


async def test_gift_is_booked_once_per_member_and_year(chat: ChatDriver, clock: FakeClock) -> None:
    await members_present(chat)
    await plan_greetings(chat.runtime.deps)
    deps = chat.runtime.deps
    async with deps.db.transaction() as repos:
        (ann, *_) = await repos.announcements.pending(kind="greeting")
        for _ in range(3):  # however often it is prepared (a retry, a replay), the gift is booked once
            await prepare_greeting(repos, deps, ann)
    assert await balance(chat.runtime, "alice") == 50 and await balance(chat.runtime, "bob") == 50


async def test_restart_on_the_day_sends_the_greeting_exactly_once(settings: Settings, clock: FakeClock) -> None:
    first = await Runtime.open(settings, clock)
    await members_present(ChatDriver(first))
    assert await plan_greetings(first.deps) == 4
    await first.close()  # the bot goes down with the greetings planned

    clock.set(local(2027, 9, 15, 9, 30))  # half an hour after the Mid-Autumn greeting was due
    for attempt in range(2):  # start twice on the day: the second start must send nothing
        runtime = await Runtime.open(settings, clock)
        recorder = RecordingPusher()
        runtime.outbox.register(recorder)
        assert await plan_greetings(runtime.deps) == 0  # what start-up does, before the scheduler starts
        await runtime.start()
        await settle(runtime)
        if attempt == 0:
            assert len(recorder.to("group")) == 1 and "Mid-Autumn" in recorder.to("group")[0]
            assert len(recorder.to("alice")) == 1
            (staff,) = [text for kind, _, text in recorder.pushes if kind == "staff"]
            assert "late" in staff
        else:
            assert recorder.pushes == []
        assert await balance(runtime, "alice") == 50 and await balance(runtime, "bob") == 50
        await runtime.close()


async def test_greeting_planned_for_the_first_time_after_its_hour_is_still_sent(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    await members_present(chat)
    clock.set(local(2027, 9, 15, 10, 0))  # e.g. the bot's very first start, an hour after the send time
    assert await plan_greetings(chat.runtime.deps) == 4  # Mid-Autumn (today) and the three after it
    assert len(await chat.runtime.planner.fire()) == 1
    await settle(chat.runtime)
    assert len(pusher.to("group")) == 1
    assert await plan_greetings(chat.runtime.deps) == 0
    assert await chat.runtime.planner.fire() == []


# --- /greetings ---------------------------------------------------------------------------------------
async def test_greetings_lists_the_next_holidays(chat: ChatDriver) -> None:
    await plan_greetings(chat.runtime.deps)
    text = await chat.say("boss", "/greetings")
    assert "Holiday greetings, sent at 09:00" in text
    assert "· 2027-09-15 Mid-Autumn Festival [mid_autumn] — planned, 🎁 50 points each" in text
    assert "· 2027-09-20 Shop Day [shop_day] — planned, 🎁 10 points each" in text
    assert "· 2027-10-08 Double Ninth Festival [double_ninth] — planned" in text
    assert "· 2027-10-18 " not in text and "New Year's Day [new_year] — to be planned" in text
    assert "🥮 Happy Mid-Autumn Festival!" in text
    assert "only staff with the manager role can use this command" in await chat.say("alice", "/greetings")


async def test_greetings_preview_and_bad_arguments(chat: ChatDriver) -> None:
    text = await chat.say("boss", "/greetings preview national_day")
    assert "Greeting for National Day [national_day] (on), next: 2027-10-01 09:00" in text
    assert "🇨🇳 Happy National Day!" in text
    text = await chat.say("boss", "/greetings preview mid_autumn")
    assert "🥮 Happy Mid-Autumn Festival!" in text and "🎁 A holiday gift of 50 points" in text
    assert 'There is no holiday "easter"' in await chat.say("boss", "/greetings preview easter")
    for args in ("preview", "frobnicate mid_autumn", "off", "on a b"):
        assert "Usage: /greetings" in await chat.say("boss", f"/greetings {args}"), args


async def test_greetings_off_survives_a_restart_and_on_brings_it_back(settings: Settings, clock: FakeClock) -> None:
    first = await Runtime.open(settings, clock)
    chat = ChatDriver(first)
    await members_present(chat)
    await plan_greetings(first.deps)
    text = await chat.say("boss", "/greetings off mid_autumn")
    assert "Greetings for Mid-Autumn Festival [mid_autumn] are off; 1 planned greeting cancelled." in text
    assert "were already off" in await chat.say("boss", "/greetings off mid_autumn")
    assert [row for row in await greeting_rows(first) if row[0] == "mid_autumn"] == []
    await first.close()

    second = await Runtime.open(settings, clock)  # a restart: the switch is in the database
    chat = ChatDriver(second, _ids=itertools.count(100))  # new message keys: the first ones were seen
    recorder = RecordingPusher()
    second.outbox.register(recorder)
    assert await plan_greetings(second.deps) == 0
    assert "Mid-Autumn Festival [mid_autumn] — off" in await chat.say("boss", "/greetings")
    assert "Silenced: Mid-Autumn Festival [mid_autumn]" in await chat.say("boss", "/greetings")
    await second.outbox.start()
    clock.set(local(2027, 9, 15, 9, 0))
    assert await second.planner.fire() == []
    await settle(second)
    assert recorder.to("group") == [] and await balance(second, "alice") == 0

    clock.set(local(2027, 9, 15, 8, 0))  # staff change their mind before the greeting's hour
    text = await chat.say("boss", "/greetings on mid_autumn")
    assert "Greetings for Mid-Autumn Festival [mid_autumn] are on again; the next one goes out 2027-09-15 09:00" in text
    assert "are already on" in await chat.say("boss", "/greetings on mid_autumn")
    clock.set(local(2027, 9, 15, 9, 0))
    assert len(await second.planner.fire()) == 1
    await settle(second)
    assert len(recorder.to("group")) == 1 and await balance(second, "alice") == 50
    await second.outbox.stop()
    await second.close()


async def test_holidays_switched_off_in_the_configuration(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(locale="en", storage=storage_for(tmp_path / "off.db"), greetings={"silenced": ["mid_autumn"]})
    runtime = await Runtime.open(settings, clock)
    try:
        chat = ChatDriver(runtime)
        assert await plan_greetings(runtime.deps) == 2  # National Day and Double Ninth
        assert "switched off in the configuration" in await chat.say("boss", "/greetings on mid_autumn")
    finally:
        await runtime.close()


# --- birthdays ----------------------------------------------------------------------------------------
async def test_29_february_birthday_in_a_non_leap_year(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(local(2026, 12, 1, 12, 0))
    await chat.say("alice", "/birthday 02-29", group=False)
    clock.set(local(2027, 2, 28, 8, 59))
    assert await send_birthdays(chat.runtime.deps) == 0  # before the configured hour
    clock.set(local(2027, 2, 28, 9, 0))
    assert await send_birthdays(chat.runtime.deps) == 1
    assert await send_birthdays(chat.runtime.deps) == 0  # once per day, however often it runs
    await settle(chat.runtime)
    (wish,) = pusher.to("alice")
    assert wish.startswith("🎂 Happy birthday, Alice!") and "88 birthday points" in wish
    assert await balance(chat.runtime, "alice") == 88
    clock.set(local(2027, 3, 1, 9, 0))
    assert await send_birthdays(chat.runtime.deps) == 0
    clock.set(local(2028, 2, 28, 9, 0))  # 2028 is a leap year: the birthday is the 29th
    assert await send_birthdays(chat.runtime.deps) == 0
    clock.set(local(2028, 2, 29, 9, 30))
    assert await send_birthdays(chat.runtime.deps) == 1
    await settle(chat.runtime)
    assert await balance(chat.runtime, "alice") == 176  # a gift each year


async def test_birthday_set_less_than_30_days_before_earns_no_gift(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(local(2027, 4, 1, 12, 0))
    await chat.say("carol", "/start", group=False)
    await chat.say("carol", "/birthday 05-11", group=False)  # 40 days ahead
    clock.set(local(2027, 5, 1, 12, 0))
    await chat.say("alice", "/start", group=False)
    await chat.say("alice", "/birthday 05-11", group=False)  # 10 days ahead
    clock.set(local(2027, 5, 11, 9, 0))
    assert await send_birthdays(chat.runtime.deps) == 2
    await settle(chat.runtime)
    (alice,) = pusher.to("alice")
    assert alice.startswith("🎂 Happy birthday, Alice!")
    assert "set only 10 days before it" in alice and "set 30 or more days ahead" in alice
    (carol,) = pusher.to("carol")
    assert "88 birthday points" in carol and "before it" not in carol
    assert await balance(chat.runtime, "alice") == 0 and await balance(chat.runtime, "carol") == 88

    clock.set(local(2027, 6, 1, 12, 0))  # carol moves her birthday: greeted again, but one gift a year
    await chat.say("carol", "/birthday 07-15", group=False)
    clock.set(local(2027, 7, 15, 9, 0))
    assert await send_birthdays(chat.runtime.deps) == 1
    await settle(chat.runtime)
    assert "birthday points" not in pusher.to("carol")[-1] and await balance(chat.runtime, "carol") == 88


async def test_birthday_in_the_groups_when_no_private_message_is_possible(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher
) -> None:
    clock.set(local(2027, 1, 1, 12, 0))
    await chat.say("alice", "/start", group=False)
    await chat.say("alice", "/birthday 06-01", group=False)
    await chat.say("bob", "/birthday 06-01")  # bob never opened a private chat
    await chat.say("dave", "/start", group=False)
    await chat.say("dave", "/birthday 06-01", group=False)
    await chat.say("dave", "/notify off", group=False)  # no private notices wanted
    clock.set(local(2027, 6, 1, 9, 5))
    assert await send_birthdays(chat.runtime.deps) == 3
    await settle(chat.runtime)
    assert len(pusher.to("alice")) == 1 and pusher.to("bob") == [] and pusher.to("dave") == []
    group = pusher.to("group")
    assert len(group) == 2
    assert group[0].startswith("🎂 Today is Bob's birthday!") and "88 birthday points" in group[0]
    assert group[1].startswith("🎂 Today is Dave's birthday!")
    assert all("Alice" not in text for text in group)
    assert [await balance(chat.runtime, who) for who in ("alice", "bob", "dave")] == [88, 88, 88]
    async with chat.runtime.deps.db.read() as repos:
        bob = await repos.members.by_identity("test", "bob")
        assert bob is not None
        assert await repos.greetings.birthday_record(bob.id, "2027-06-01") == ("group", 88)


async def test_birthdays_can_be_switched_off(tmp_path: Path, clock: FakeClock) -> None:
    settings = Settings(locale="en", storage=storage_for(tmp_path / "b.db"), birthdays={"enabled": False})
    runtime = await Runtime.open(settings, clock)
    try:
        chat = ChatDriver(runtime)
        await chat.say("alice", "/birthday 09-10", group=False)
        clock.set(local(2028, 9, 10, 9, 0))
        assert await send_birthdays(runtime.deps) == 0
    finally:
        await runtime.close()
