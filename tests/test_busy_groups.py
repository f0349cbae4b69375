"""End to end on busy groups: the daily check-in board, button check-ins, coalesced group replies, the
sender's priorities, personal answers out of the group, staff notices and a flash sale's first seconds;
then the sender itself on a recording transport and a clock the test moves.

Everything runs on the harness's `PACE` (time `PACE.speed` times faster, for the sender and the fake Bot API
alike): Telegram's limits hold exactly on the fake, which counts every message (sends and edits) per group,
and the harness fails a test on any 429 the bot provoked. Times and bounds below are in pace seconds.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.app.scheduler import refresh_live_posts
from bot.delivery.sender import Delivered, Job, Outcome, Pace, Priority, ScopeLimit, Sender
from handlers.core.clock import FakeClock
from tests.conftest import local
from tests.fakes.bot_api import FakeBotApi, callback_update, message_update, user
from tests.tg_harness import (
    ALICE,
    BOB,
    GROUP,
    OTHER_GROUP,
    PACE,
    STAFF,
    STAFF_ID,
    Harness,
    fake_api,
    harness_settings,
    running_bot,
)

CAROL = user(103, "Carol", "carol")
BOARD_TITLE = "Today's check-ins"
NEWS = "Spring tea is in"
MENTION = re.compile(r'tg://user\?id=(\d+)"')


def settings_for(api: FakeBotApi, db: Path, **overrides: Any) -> Any:
    telegram = {"token": api.token, "base_url": api.base_url, "groups": [GROUP, OTHER_GROUP]}
    telegram.update(overrides.pop("telegram", {}))
    return harness_settings(api, db, telegram=telegram, **overrides)


async def feed(bot: Harness, updates: list[dict[str, Any]]) -> None:
    """Store a burst of updates straight into the inbox (as a webhook burst would) for the workers."""
    assert bot.channel.intake is not None
    await bot.channel.intake.store(updates)


async def start_privately(bot: Harness, ids: list[int]) -> None:
    """These members open a private chat with the bot (/start), so it may message them there."""
    before = len(bot.api.sent())
    await feed(bot, [message_update(bot.api, uid, user(uid), "/start") for uid in ids])
    await bot.api.wait_for(before + len(ids), timeout=30)


async def seed(bot: Harness, ids: list[int], *, started: Collection[int] = ()) -> None:
    async with bot.runtime.deps.db.transaction() as repos:
        for uid in ids:
            await repos.members.register("telegram", str(uid), f"m{uid}", None, 0, private_chat=uid in started)


async def idle(bot: Harness, timeout: float = 30.0) -> None:
    assert await bot.channel.idle(timeout=timeout), "the bot did not finish in time"


def to_chat(api: FakeBotApi, chat: int, method: str = "sendMessage") -> list[dict[str, Any]]:
    return [p for p in api.sent(method) if int(p["chat_id"]) == chat]


def arrivals(api: FakeBotApi, chat: int, contains: str = "") -> list[float]:
    """When the successful sendMessage calls into `chat` (whose text contains `contains`) arrived (pace s)."""
    return [
        c.at for c in api.calls
        if c.method == "sendMessage" and c.status == 200 and int(c.params["chat_id"]) == chat
        and contains in str(c.params.get("text", ""))
    ]  # fmt: skip


def answered_in(messages: list[dict[str, Any]], asked_by: dict[int, int]) -> list[int]:
    """Whom these messages answer: the members a shared message names (tg://user?id=...), or, for an answer
    sent on its own, the member whose message it quotes (`asked_by`: message id -> user id)."""
    found: list[int] = []
    for sent in messages:
        named = [int(uid) for uid in MENTION.findall(sent["text"])]
        if not named and sent.get("reply_parameters"):
            named = [asked_by[int(sent["reply_parameters"]["message_id"])]]
        found += named
    return found


def asked(updates: list[dict[str, Any]]) -> dict[int, int]:
    return {int(u["message"]["message_id"]): int(u["message"]["from"]["id"]) for u in updates}


def board_id(api: FakeBotApi, chat: int, day: str) -> int:
    (mid,) = [m for m, text in api.messages(chat).items() if BOARD_TITLE in text and day in text]
    return mid


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


# ---------------------------------------------------------------------------------------------------
# 1. The board: one message per business day and group, edited after.
# ---------------------------------------------------------------------------------------------------
async def test_one_board_per_group_and_business_day_edited_for_later_check_ins(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with fake_api() as api:
        settings = settings_for(api, tmp_path / "b.db", checkin={"rollover_hour": 4})
        async with running_bot(api, settings, clock) as bot:
            first = await bot.send(GROUP, ALICE, "签到")
            assert "2026-03-10" in first and "1 member has checked in" in first and "Alice (1-day streak)" in first
            post = to_chat(api, GROUP)[-1]
            assert post["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "v1:checkin:"
            board = board_id(api, GROUP, "2026-03-10")

            edited = await bot.post(GROUP, BOB, "/checkin", "editMessageText")
            assert "2 members have checked in" in edited and "Bob (1-day streak)" in edited
            assert int(api.sent("editMessageText")[-1]["message_id"]) == board

            # Another group gets its own board, with its own count.
            other = await bot.send(OTHER_GROUP, CAROL, "签到")
            assert "1 member has checked in" in other and "Carol" in other and "Alice" not in other
            assert board_id(api, OTHER_GROUP, "2026-03-10") != board

            # 03:30 the next morning is still the same business day (rollover at 04:00): no new board.
            clock.set(local(2026, 3, 11, 3, 30))
            assert "already checked in today" in await bot.send(GROUP, ALICE, "签到")
            clock.set(local(2026, 3, 11, 4, 1))
            new_day = await bot.send(GROUP, ALICE, "签到")
            assert "2026-03-11" in new_day and "1 member has checked in" in new_day
            assert "Alice (2-day streak)" in new_day
            assert board_id(api, GROUP, "2026-03-11") != board
            await idle(bot)
            boards = [p for p in to_chat(api, GROUP) if BOARD_TITLE in p["text"]]
            assert [b["text"].split("\n")[0][-10:] for b in boards] == ["2026-03-10", "2026-03-11"]
            assert len([p for p in to_chat(api, OTHER_GROUP) if BOARD_TITLE in p["text"]]) == 1


async def test_a_rush_of_check_ins_edits_the_board_within_the_group_budget(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = settings_for(api, tmp_path / "burst.db", checkin={"board": {"names": 150}})
        async with running_bot(api, settings, clock) as bot:
            assert bot.channel.intake is not None
            ids = list(range(3000, 3180))

            def board_shows(uid: int) -> bool:
                return any(f"m{uid} (1-day streak)" in text for text in api.messages(GROUP).values())

            # 75 check-ins as fast as they are handled: one board, a few edits (each shows all since the last).
            for n in range(0, 75, 5):
                await feed(bot, [message_update(api, GROUP, user(uid, f"m{uid}"), "签到") for uid in ids[n : n + 5]])
                assert await bot.channel.intake.idle(timeout=10)
            await until(lambda: board_shows(ids[74]))
            assert len(to_chat(api, GROUP)) == 1 and len(to_chat(api, GROUP, "editMessageText")) <= 5
            # Then 105 more, in 21 waves, each as soon as the board shows the last: far more edits wanted than
            # Telegram's 20 a minute into a group allows; the bot spaces them out.
            for n in range(75, 180, 5):
                await feed(bot, [message_update(api, GROUP, user(uid, f"m{uid}"), "签到") for uid in ids[n : n + 5]])
                await until(lambda n=n: board_shows(ids[n + 4]))  # type: ignore[misc]
            await idle(bot)
            posts = to_chat(api, GROUP)
            edits = [c for c in api.calls if c.method == "editMessageText" and c.status == 200]
            assert len(posts) == 1 and BOARD_TITLE in posts[0]["text"]  # one board, no reply per check-in
            board = board_id(api, GROUP, "2026-03-10")
            assert {int(e.params["message_id"]) for e in edits} == {board}
            assert len(edits) >= 21 and edits[-1].at - edits[-21].at >= 60  # 21 edits took over a minute
            assert api.group_load(GROUP) <= 20
            shown = "\n".join([posts[0]["text"], *(str(e.params["text"]) for e in edits)])
            assert all(f"m{uid} (1-day streak)" in shown for uid in ids)  # everyone was on the board
            final = api.messages(GROUP)[board]
            assert "180 members have checked in" in final and all(f"m{uid} " in final for uid in ids[-150:])
            async with bot.runtime.deps.db.read() as repos:
                rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM checkins WHERE day = '2026-03-10'")
            assert rows[0][0] == 180


# ---------------------------------------------------------------------------------------------------
# 2. The board's button.
# ---------------------------------------------------------------------------------------------------
async def test_the_board_button_books_once_and_answers_with_a_toast(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, settings_for(api, tmp_path / "btn.db"), clock) as bot:
            await bot.send(GROUP, BOB, "签到")  # posts the board
            board = board_id(api, GROUP, "2026-03-10")
            posts_before = len(to_chat(api, GROUP))

            api.push_update(callback_update(api, GROUP, ALICE, "v1:checkin:"))
            (toast,) = await api.wait_for(1, "answerCallbackQuery")
            assert "+10 points" in toast["text"] and "1-day streak" in toast["text"] and not toast["show_alert"]
            await until(lambda: any("Alice (1-day streak)" in e["text"] for e in api.sent("editMessageText")))
            assert int(api.sent("editMessageText")[-1]["message_id"]) == board

            api.push_update(callback_update(api, GROUP, ALICE, "v1:checkin:"))
            toasts = await api.wait_for(2, "answerCallbackQuery")
            assert "already checked in today" in toasts[1]["text"]
            await idle(bot)
            assert len(to_chat(api, GROUP)) == posts_before  # the toasts were the only answers
            assert await bot.balance(ALICE) == 10
            assert "2 members have checked in" in api.messages(GROUP)[board]

            clock.advance(timedelta(days=1))
            api.push_update(callback_update(api, GROUP, ALICE, "v1:checkin:"))
            toasts = await api.wait_for(3, "answerCallbackQuery")
            assert "+12 points" in toasts[2]["text"] and "2-day streak" in toasts[2]["text"]
            assert await bot.balance(ALICE) == 22
            await idle(bot)
            new_board = to_chat(api, GROUP)[-1]  # the day's first check-in came by the button: it posts the board
            assert "2026-03-11" in new_board["text"] and "Alice (2-day streak)" in new_board["text"]


# ---------------------------------------------------------------------------------------------------
# 3. Without the board.
# ---------------------------------------------------------------------------------------------------
async def test_without_the_board_every_check_in_gets_a_coalesced_reply(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = settings_for(api, tmp_path / "nob.db", checkin={"board": {"enabled": False}})
        async with running_bot(api, settings, clock) as bot:
            single = await bot.send(GROUP, ALICE, "签到")
            assert "Checked in! +10 points (1-day streak)" in single
            assert to_chat(api, GROUP)[-1]["reply_parameters"]["message_id"] > 0  # quoting Alice

            ids = list(range(3000, 3030))
            updates = [message_update(api, GROUP, user(uid), "/checkin") for uid in ids]
            await feed(bot, updates)
            await idle(bot)
            texts = [p["text"] for p in to_chat(api, GROUP)[1:]]
            assert not api.sent("editMessageText") and not any(BOARD_TITLE in t for t in api.texts())
            answered = answered_in(to_chat(api, GROUP)[1:], asked(updates))
            assert sorted(answered) == ids  # one part per check-in, for its member
            assert sum(t.count("Checked in! +10 points") for t in texts) == 30
            assert len(texts) < 30 and api.group_load(GROUP) <= 20


# ---------------------------------------------------------------------------------------------------
# 4. Coalescing, and one member spamming the group.
# ---------------------------------------------------------------------------------------------------
async def test_group_replies_waiting_together_share_messages_each_part_naming_its_member(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with fake_api() as api:
        async with running_bot(api, settings_for(api, tmp_path / "co.db"), clock) as bot:
            ids = list(range(3000, 3040))
            updates = [message_update(api, GROUP, user(uid), "/points") for uid in ids]
            await feed(bot, updates)
            await idle(bot)
            messages = [p["text"] for p in to_chat(api, GROUP)]
            assert len(messages) <= 10  # 40 answers, a few messages
            for text in messages:
                assert len(text) <= 4096
                # each part starts with its member's mention, followed by that member's own points
                for uid, name in re.findall(r'tg://user\?id=(\d+)">([^<]+)</a> ', text):
                    assert name == f"user{uid}" and f'">user{uid}</a> user{uid}&#x27;s points: 0' in text
            assert sorted(answered_in(to_chat(api, GROUP), asked(updates))) == ids
            assert any(len(MENTION.findall(t)) > 1 for t in messages)
            assert api.group_load(GROUP) <= 20


async def test_a_member_spamming_the_group_does_not_hold_up_the_others(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, settings_for(api, tmp_path / "spam.db"), clock) as bot:
            await bot.send(BOB["id"], BOB, "/start")
            spammer = user(3999, "Spammer")
            await feed(bot, [message_update(api, GROUP, spammer, "/points") for _ in range(150)])
            assert bot.channel.intake is not None and await bot.channel.intake.idle(timeout=20)
            asked_at = PACE.now()
            api.push_update(message_update(api, BOB["id"], BOB, "/points"))
            await until(lambda: bool(arrivals(api, BOB["id"], "Bob's points: 0")))
            (answered,) = arrivals(api, BOB["id"], "Bob's points: 0")
            assert answered - asked_at < 10

            pushed = PACE.now()
            api.push_update(message_update(api, GROUP, CAROL, "/points"))
            await until(lambda: bool(arrivals(api, GROUP, "Carol")), timeout=20)
            (carol,) = arrivals(api, GROUP, "Carol")
            # Carol's answer goes in the group's next message (or the one after, if one was on its way): the
            # spammer's 150 identical answers are said once, they do not fill the group's messages before hers.
            assert len([at for at in arrivals(api, GROUP) if pushed < at < carol]) <= 1
            await idle(bot)
            assert api.group_load(GROUP) <= 20
            assert all(t.count('tg://user?id=3999"') <= 1 for t in api.texts(GROUP))


# ---------------------------------------------------------------------------------------------------
# 5. Priorities.
# ---------------------------------------------------------------------------------------------------
async def test_a_private_answer_overtakes_a_running_broadcast(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        # Room for the whole broadcast to wait in the sender at once, so that only priorities decide the order.
        settings = settings_for(api, tmp_path / "bc.db", delivery={"concurrency": 256})
        async with running_bot(api, settings, clock) as bot:
            # The outbox hands pushes over at its own (real time) pace: here all at once, so the whole broadcast
            # waits in the sender, which alone keeps Telegram's limits (as it does in production).
            bot.channel.pusher.per_second = 1_000_000
            bot.runtime.outbox.register(bot.channel.pusher)
            ids = list(range(4000, 4200))
            await start_privately(bot, ids)
            await idle(bot)
            asker = ids[-1]
            assert "queued for 203 recipients" in await bot.send(STAFF_ID, STAFF, f"/announce {NEWS}")
            await until(lambda: api.texts().count(NEWS) >= 5)  # the broadcast is under way
            api.push_update(message_update(api, asker, user(asker), "/points"))
            await until(lambda: bool(arrivals(api, asker, "points:")))
            assert await bot.runtime.outbox.idle(timeout=30)
            news = sorted(c.at for c in api.calls if c.method == "sendMessage" and c.params.get("text") == NEWS)
            assert len(news) == 203  # the two groups, the 200 and the staff member
            (answered,) = arrivals(api, asker, "points:")
            assert sum(1 for at in news if at > answered) >= 20  # answered ahead of what was queued before it


async def test_a_private_answer_is_prompt_during_a_group_rush(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        # Six messages a minute into the group: the rush's queue lasts a while, however fast the machine.
        settings = settings_for(api, tmp_path / "rush.db", delivery={"group_per_minute": 6})
        async with running_bot(api, settings, clock) as bot:
            await bot.send(ALICE["id"], ALICE, "/start")
            ids = list(range(3000, 3060))
            await feed(bot, [message_update(api, GROUP, user(uid), text) for uid in ids for text in ("签到", "/me")])
            assert bot.channel.intake is not None and await bot.channel.intake.idle(timeout=20)
            assert bot.channel.sender.scope_depths().get(str(GROUP), 0) > 0  # the group has a queue to work off
            asked_at = PACE.now()
            api.push_update(message_update(api, ALICE["id"], ALICE, "/points"))
            await until(lambda: bool(arrivals(api, ALICE["id"], "Alice's points: 0")))
            (answered,) = arrivals(api, ALICE["id"], "Alice's points: 0")
            assert answered - asked_at < 10  # not after the group's queue
            await until(lambda: max(arrivals(api, GROUP), default=0) > answered)  # which was still being worked off
            assert api.group_load(GROUP) <= 20


async def test_staff_answers_go_before_group_chatter(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        # Six messages a minute into the group: the chatter queued below lasts long enough to be overtaken.
        settings = settings_for(api, tmp_path / "st.db", delivery={"group_per_minute": 6})
        async with running_bot(api, settings, clock) as bot:
            assert bot.channel.intake is not None
            await feed(bot, [message_update(api, GROUP, user(uid), "/points") for uid in range(3000, 3100)])
            assert await bot.channel.intake.idle(timeout=20)
            await feed(bot, [message_update(api, GROUP, STAFF, "/award 3000 5 first in line")])
            assert await bot.channel.intake.idle(timeout=20)
            before = len(api.texts(GROUP))  # group messages out (or on their way) when the staff answer queued
            await until(lambda: any(t.startswith("Gave user3000 5 points") for t in api.texts(GROUP)))
            texts = api.texts(GROUP)
            staff_at = next(n for n, t in enumerate(texts) if t.startswith("Gave user3000 5 points"))
            assert staff_at <= before + 1  # at most the message already on its way went first
            assert not MENTION.findall(texts[staff_at])  # its own message, not a line among the chatter
            await until(lambda: len(api.texts(GROUP)) > staff_at + 1)  # chatter queued before it goes after it
            assert MENTION.findall(api.texts(GROUP)[staff_at + 1])


# ---------------------------------------------------------------------------------------------------
# 6. Personal answers out of the group.
# ---------------------------------------------------------------------------------------------------
async def test_points_asked_in_the_group_go_privately_to_a_member_who_started_the_bot(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with fake_api() as api:
        async with running_bot(api, settings_for(api, tmp_path / "pp.db"), clock) as bot:
            await bot.send(ALICE["id"], ALICE, "/start")
            in_group = len(to_chat(api, GROUP))
            assert "Alice's points: 0" in await bot.send(GROUP, ALICE, "/points")
            assert int(api.sent()[-1]["chat_id"]) == ALICE["id"]
            assert "Bob's points: 0" in await bot.send(GROUP, BOB, "/points")  # Bob never started it: the group
            assert int(api.sent()[-1]["chat_id"]) == GROUP
            await idle(bot)
            assert len(to_chat(api, GROUP)) == in_group + 1 and not any("Alice" in t for t in api.texts(GROUP))


async def test_a_code_won_in_the_group_never_shows_there(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, settings_for(api, tmp_path / "code.db"), clock) as bot:
            await bot.send(GROUP, STAFF, "/sale add Jade cup | price=9 stock=10 start=2026-03-10 10:00 --force")
            clock.advance(timedelta(hours=1, minutes=1))
            await bot.send(ALICE["id"], ALICE, "/start")
            await idle(bot)

            api.push_update(message_update(api, GROUP, ALICE, "/claim 1"))  # Alice can be messaged privately
            await until(lambda: any("Your code: S-" in t for t in api.texts(ALICE["id"])))
            api.push_update(message_update(api, GROUP, BOB, "/claim 1"))  # Bob never started the bot
            await until(lambda: any('tg://user?id=102"' in t and "/start" in t for t in api.texts(GROUP)))
            await idle(bot)
            group = "\n".join(api.texts(GROUP))
            assert "Your code was sent to you privately" in group and "open a private chat with @vip_test_bot" in group
            async with bot.runtime.deps.db.read() as repos:
                codes = [c.code for c in await repos.sales.claims(1)]
            assert len(codes) == 2 and not api.texts(BOB["id"])  # Bob's code waits for him

            started_at = PACE.now()
            api.push_update(message_update(api, BOB["id"], BOB, "/start"))
            await until(lambda: len(api.texts(BOB["id"])) == 2)
            assert max(arrivals(api, BOB["id"])) - started_at < 20  # right away
            private = "\n".join(api.texts(BOB["id"]))  # the welcome and his code
            assert "Welcome" in private and sum(c in private for c in codes) == 1
            await idle(bot)
            in_groups = [str(c.params.get("text", "")) for c in api.calls if int(c.params.get("chat_id") or 0) < 0]
            assert in_groups and not any(c in t for t in in_groups for c in codes)  # in no group message at all
            async with bot.runtime.deps.db.read() as repos:
                held = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM outbound WHERE held = 1")
            assert held[0][0] == 0


# ---------------------------------------------------------------------------------------------------
# 7. Staff notices without a staff chat.
# ---------------------------------------------------------------------------------------------------
async def test_staff_notices_reach_each_staff_id_privately_without_a_staff_chat(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with fake_api() as api:
        settings = settings_for(api, tmp_path / "sn.db", staff={"telegram": [STAFF_ID, 601]})
        async with running_bot(api, settings, clock) as bot:
            await bot.send(GROUP, BOB, "/feedback the parcel came late")  # the notices may come before the answer
            await until(lambda: all(any("ticket #1" in t for t in api.texts(chat)) for chat in (GROUP, STAFF_ID, 601)))
            notice = next(t for t in api.texts(STAFF_ID) if "ticket #1" in t)
            assert "the parcel came late" in notice and "/reply 1" in notice
            await idle(bot)
            assert not any("the parcel came late" in t for t in api.texts(GROUP))
            async with bot.runtime.deps.db.read() as repos:
                rows = await repos.conn.execute_fetchall(
                    "SELECT target, state FROM deliveries WHERE target_kind = 'staff'"
                )
            assert rows and all(state == "sent" for _, state in rows)


# ---------------------------------------------------------------------------------------------------
# 8. A flash sale opens in a busy group.
# ---------------------------------------------------------------------------------------------------
async def test_300_presses_at_a_sale_start_are_all_answered_and_the_post_kept_in_budget(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with fake_api() as api:
        settings = settings_for(api, tmp_path / "fs.db", telegram={"concurrent_updates": 32})
        async with running_bot(api, settings, clock) as bot:
            await bot.send(GROUP, STAFF, "/sale add Jade cup | price=9 stock=100 start=2026-03-10 10:00 --force")
            ids = list(range(10_000, 10_300))
            started = set(ids[::5])  # one in five opened a private chat with the bot
            await seed(bot, ids, started=started)
            await idle(bot)
            clock.advance(timedelta(hours=1, minutes=1))
            await bot.runtime.planner.fire()
            await until(lambda: any("flash sale #1" in t and "100/100 left" in t for t in api.texts(GROUP)))
            post = next(m for m, t in api.messages(GROUP).items() if "100/100 left" in t)

            await feed(bot, [callback_update(api, GROUP, user(uid), "v1:claim:1") for uid in ids])
            deadline = time.monotonic() + 30
            while len(api.sent("answerCallbackQuery")) < 300 and time.monotonic() < deadline:
                await refresh_live_posts(bot.runtime.deps, bot.runtime.outbox)  # what the scheduler runs every 5 s
                await asyncio.sleep(0.05)
            toasts = [a["text"] for a in api.sent("answerCallbackQuery")]
            assert len(toasts) == 300
            assert sum("You got" in t for t in toasts) == 100 and sum("sold out" in t for t in toasts) == 200
            await idle(bot)
            await refresh_live_posts(bot.runtime.deps, bot.runtime.outbox)
            await idle(bot)

            stock_edits = [e for e in to_chat(api, GROUP, "editMessageText") if int(e["message_id"]) == post]
            assert stock_edits and "Sold out (all 100)" in api.messages(GROUP)[post]
            assert api.group_load(GROUP) <= 20
            async with bot.runtime.deps.db.read() as repos:
                claims = await repos.sales.claims(1)
                rows = await repos.conn.execute_fetchall("SELECT member_id, external_id FROM identities")
                held = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM outbound WHERE held = 1")
            uid_of = {member_id: int(external) for member_id, external in rows}
            winners = {uid_of[c.member_id]: c.code for c in claims}
            assert len(winners) == 100
            for uid, code in winners.items():  # a code privately to each winner the bot may message, at once
                assert (code in "\n".join(api.texts(uid))) == (uid in started), uid
            assert held[0][0] == len(set(winners) - started)  # the others' codes wait for their /start
            # A winner who never started the bot reads the hint in their own toast; the group hears nothing.
            presses = {c.params["callback_query_id"]: c.params.get("text", "") for c in api.calls
                       if c.method == "answerCallbackQuery"}  # fmt: skip
            assert sum("/start" in t for t in presses.values()) == len(set(winners) - started)
            assert not any("/start" in t for t in api.texts(GROUP))
            assert not any(code in t for t in api.texts(GROUP) for code in winners.values())


# ---------------------------------------------------------------------------------------------------
# 9. The sender itself, on a recording transport and a clock the test moves.
# ---------------------------------------------------------------------------------------------------
class ManualPace(Pace):
    """The sender's time, standing still until the test moves it (the sender's own waits poll briefly)."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__(speed=1.0)
        object.__setattr__(self, "t", start)  # a frozen dataclass: set past its guard

    def now(self) -> float:
        return float(self.__dict__["t"])

    def real(self, seconds: float) -> float:
        return min(max(seconds, 0.0), 0.002)

    def advance(self, seconds: float) -> None:
        object.__setattr__(self, "t", self.now() + seconds)


@dataclass
class Sent:
    at: float
    scope: str
    texts: list[str]
    attempts: int


@dataclass
class RecordingTransport:
    pace: ManualPace
    limits: dict[str, ScopeLimit | None] = field(default_factory=dict)
    script: dict[str, list[Delivered]] = field(default_factory=dict)
    """scope -> outcomes to answer in turn, before answering SENT."""
    calls: list[Sent] = field(default_factory=list)
    latency: float = 0.0
    """Seconds a call takes: the test's clock moves on by that much while it is on its way."""
    gate: asyncio.Semaphore | None = None
    """When set, a call returns only once the test releases it."""

    def limit(self, scope: str) -> ScopeLimit | None:
        return self.limits.get(scope, ScopeLimit(count=1000, window=1.0, gap=0.0))

    async def deliver(self, jobs: list[Job]) -> Delivered:
        head = jobs[0]
        payloads = [await head.render()] if head.render is not None else [j.payload for j in jobs]
        self.calls.append(Sent(self.pace.now(), head.scope, [str(p["text"]) for p in payloads if p], head.attempts))
        self.pace.advance(self.latency)
        if self.gate is not None:
            await self.gate.acquire()
        planned = self.script.get(head.scope)
        return planned.pop(0) if planned else Delivered(Outcome.SENT, message_id=str(len(self.calls)))

    def to(self, scope: str) -> list[Sent]:
        return [c for c in self.calls if c.scope == scope]


async def quiet() -> None:
    """Give the sender's loop some turns (before asserting that it did NOT send something yet)."""
    for _ in range(15):
        await asyncio.sleep(0.002)


@asynccontextmanager
async def manual_sender(
    limits: dict[str, ScopeLimit | None] | None = None, per_second: float = 1000
) -> AsyncIterator[tuple[Sender, RecordingTransport, ManualPace]]:
    pace = ManualPace()
    transport = RecordingTransport(pace, limits or {})
    sender = Sender(transport, per_second=per_second, coalesce_seconds=0.5, max_attempts=3, pace=pace)
    sender.start()
    try:
        yield sender, transport, pace
    finally:
        await sender.stop()


def job(scope: str, text: str, priority: Priority = Priority.ANSWER, results: list[Delivered] | None = None,
        **kwargs: Any) -> Job:  # fmt: skip
    async def record(_: Job, result: Delivered) -> None:
        if results is not None:
            results.append(result)

    return Job(scope, priority, {"text": text}, on_result=record, **kwargs)


async def test_a_flood_wait_pauses_only_its_scope_and_costs_no_attempt() -> None:
    async with manual_sender() as (sender, transport, pace):
        # Four 429s in a row, more than the job's 3 attempts: still delivered, no attempt used.
        transport.script["-1"] = [Delivered(Outcome.FLOOD, "429", retry_after=10.0) for _ in range(4)]
        results: list[Delivered] = []
        flooded = job("-1", "board", Priority.GROUP, results)
        sender.submit(flooded)
        sender.submit(job("-2", "other group"))
        sender.submit(job("7", "private"))
        await until(lambda: len(transport.calls) == 3)
        pace.advance(9.5)
        sender.submit(job("-2", "other group again"))  # the other chats go on meanwhile
        await until(lambda: len(transport.to("-2")) == 2)
        await quiet()
        assert len(transport.to("-1")) == 1  # paused for the 10 s it was told
        pace.advance(0.5)
        for calls in range(2, 6):
            await until(lambda n=calls: len(transport.to("-1")) == n)  # type: ignore[misc]
            pace.advance(10.0)
        await until(lambda: bool(results))
        assert results[0].outcome is Outcome.SENT and flooded.attempts == 0
        floods = transport.to("-1")
        assert [c.attempts for c in floods] == [0] * 5
        assert [b.at - a.at for a, b in itertools.pairwise(floods)] == [10.0] * 4
        assert sender.stats.floods == 4 and sender.stats.retries == 0


async def test_a_transport_error_backs_off_and_retries_until_attempts_run_out() -> None:
    async with manual_sender() as (sender, transport, pace):
        transport.script["7"] = [Delivered(Outcome.RETRY, "502")]
        transport.script["8"] = [Delivered(Outcome.RETRY, "502") for _ in range(5)]
        cured: list[Delivered] = []
        lost: list[Delivered] = []
        sender.submit(job("7", "cured", results=cured))
        sender.submit(job("8", "lost", results=lost))
        await until(lambda: len(transport.calls) == 2)
        pace.advance(1.5)
        await quiet()
        assert len(transport.calls) == 2  # the first backoff is 2 s
        pace.advance(0.5)
        await until(lambda: len(transport.calls) == 4)
        await until(lambda: bool(cured))
        assert cured[0].outcome is Outcome.SENT
        pace.advance(3.5)
        await quiet()
        assert len(transport.to("8")) == 2  # the second is 4 s
        pace.advance(0.5)
        await until(lambda: bool(lost))
        assert [c.attempts for c in transport.to("8")] == [0, 1, 2]  # max_attempts=3: then given up
        assert lost[0].outcome is Outcome.RETRY
        pace.advance(60.0)
        await quiet()
        assert len(transport.to("8")) == 3 and sender.pending() == 0


async def test_a_newer_live_job_replaces_the_queued_one_and_keeps_its_interval() -> None:
    async with manual_sender({"-1": ScopeLimit(count=20, window=60.0, gap=3.0)}) as (sender, transport, pace):
        drawn: list[str] = []

        def live(version: str) -> Job:
            async def render() -> dict[str, Any]:
                drawn.append(version)
                return {"text": version}

            return Job("-1", Priority.GROUP, live_key="board:1", render=render, min_interval=10.0)

        sender.submit(job("-1", "first", Priority.GROUP))  # takes the group's turn: the rest waits 3 s
        await until(lambda: len(transport.calls) == 1)
        for version in ("v1", "v2", "v3"):
            sender.submit(live(version))
        assert sender.scope_depths() == {"-1": 1}  # one board queued, however many changes came in
        pace.advance(3.0)
        await until(lambda: len(transport.calls) == 2)
        assert drawn == ["v3"] and transport.calls[1].texts == ["v3"]  # drawn once, at send time
        sender.submit(live("v4"))
        pace.advance(3.0)  # the group's gap would allow it; the key's 10 s interval does not
        await quiet()
        assert len(transport.calls) == 2
        pace.advance(7.0)
        await until(lambda: len(transport.calls) == 3)
        assert drawn == ["v3", "v4"] and transport.calls[2].at - transport.calls[1].at == 10.0


async def test_a_leading_board_keeps_its_beat_while_other_messages_take_the_turns_between() -> None:
    # 18 in any 60 s, 1.5 s apart; the board leads, every 60/16 = 3.75 s: a flash sale's post, staff answers and
    # a stock line arriving in the middle of a rush go in the gaps and never push a board edit back.
    limits = {"-1": ScopeLimit(count=18, window=60.0, gap=1.5)}
    async with manual_sender(limits) as (sender, transport, pace):
        start = pace.now()

        def board() -> Job:
            async def render() -> dict[str, Any]:
                return {"text": "board"}

            return Job("-1", Priority.GROUP, live_key="board:1", render=render, min_interval=3.75, leads=True)

        for step in range(140):  # 105 s of rush: a check-in (a board change) every 0.75 s
            sender.submit(board())
            if step in (9, 100):  # two more than the board takes in any minute
                for text, priority in [("staff", Priority.STAFF), ("post", Priority.GROUP)]:
                    sender.submit(job("-1", text, priority))
            await quiet()
            pace.advance(0.75)
        boards = [c.at - start for c in transport.to("-1") if c.texts == ["board"]]
        others = [c for c in transport.to("-1") if c.texts != ["board"]]
        assert [b - a for a, b in itertools.pairwise(boards)] == [3.75] * (len(boards) - 1)
        assert sorted(t for c in others for t in c.texts) == ["post", "post", "staff", "staff"]
        times = [c.at for c in transport.to("-1")]
        assert all(b - a >= 1.5 for a, b in itertools.pairwise(times))
        assert all(len([t for t in times if s <= t < s + 60.0]) <= 18 for s in times)


async def test_a_live_job_handed_over_while_its_last_send_is_on_its_way_still_waits_its_interval() -> None:
    async with manual_sender({"-1": ScopeLimit(count=18, window=60.0, gap=1.5)}) as (sender, transport, pace):
        transport.gate = asyncio.Semaphore(0)

        def board() -> Job:
            async def render() -> dict[str, Any]:
                return {"text": "board"}

            return Job("-1", Priority.GROUP, live_key="board:1", render=render, min_interval=4.0, leads=True)

        start = pace.now()
        sender.submit(board())
        await until(lambda: len(transport.calls) == 1)
        sender.submit(board())  # a check-in while the edit is still on its way
        transport.gate.release()
        for _ in range(8):
            transport.gate.release()
            pace.advance(0.5)
            await quiet()
        assert [c.at - start for c in transport.calls] == [0.0, 4.0]  # not 1.5 s later (the group's gap)


async def test_a_scopes_gap_and_window_hold_and_its_queue_goes_by_priority() -> None:
    async with manual_sender({"-1": ScopeLimit(count=3, window=60.0, gap=5.0)}) as (sender, transport, pace):
        start = pace.now()
        sender.submit(job("-1", "m0", Priority.GROUP))
        await until(lambda: len(transport.calls) == 1)
        for text, priority in [("bulk", Priority.BULK), ("chatter", Priority.GROUP), ("staff", Priority.STAFF),
                               ("answer", Priority.ANSWER)]:  # fmt: skip
            sender.submit(job("-1", text, priority))
        sender.submit(job("9", "elsewhere"))  # another chat is not held up by this one
        await until(lambda: len(transport.calls) == 2)
        for step, expected in [(4.5, 2), (0.5, 3), (5.0, 4), (40.0, 4), (9.5, 4), (0.5, 5), (4.5, 5), (0.5, 6)]:
            pace.advance(step)
            await until(lambda n=expected: len(transport.calls) >= n)  # type: ignore[misc]
            await quiet()
            assert len(transport.calls) == expected, (pace.now() - start, transport.calls)
        group = transport.to("-1")
        assert [c.texts for c in group] == [["m0"], ["answer"], ["staff"], ["chatter"], ["bulk"]]
        assert [c.at - start for c in group] == [0.0, 5.0, 10.0, 60.0, 65.0]  # 5 s apart, 3 in any 60 s


async def test_group_replies_coalesce_within_the_window_and_the_text_limit() -> None:
    async with manual_sender() as (sender, transport, pace):
        for n in range(30):
            sender.submit(job("-1", f"{n:03d}" + "x" * 197, Priority.GROUP, coalesce=True))
        sender.submit(job("-1", "with a button", Priority.GROUP))  # not coalescing: its own message
        await until(lambda: len(transport.calls) == 1)
        assert transport.calls[0].texts == ["with a button"]
        await quiet()
        assert len(transport.calls) == 1  # the replies wait out the 0.5 s window, to gather
        pace.advance(0.5)
        await until(lambda: len(transport.calls) == 4)
        parts = [c.texts for c in transport.calls[1:]]
        assert [len(p) for p in parts] == [13, 13, 4]  # 280 characters a part, at most 3800 a message
        assert [t[:3] for p in parts for t in p] == [f"{n:03d}" for n in range(30)]
        assert sender.stats.coalesced == 27


async def test_a_chats_gap_counts_from_when_its_last_call_returned() -> None:
    # Telegram counts a message when it arrives, at the latest when its call returns: after a slow call (3 s on
    # its way) the next one into the chat must still be a whole gap after it.
    async with manual_sender({"9": ScopeLimit(count=1, window=5.0, gap=5.0)}) as (sender, transport, pace):
        transport.latency = 3.0
        start = pace.now()
        sender.submit(job("9", "one"))
        sender.submit(job("9", "two"))
        await until(lambda: len(transport.calls) == 1)
        transport.latency = 0.0
        pace.advance(2.5)  # 5.5 s after the first call was made, 2.5 s after it returned
        await quiet()
        assert len(transport.calls) == 1
        pace.advance(2.5)
        await until(lambda: len(transport.calls) == 2)
        assert transport.calls[1].at - start == 8.0


async def test_calls_on_their_way_count_against_the_overall_limit() -> None:
    async with manual_sender(per_second=2) as (sender, transport, pace):
        gate = transport.gate = asyncio.Semaphore(0)
        returned: list[Delivered] = []
        for n in range(3):
            sender.submit(job(str(n + 1), f"m{n}", results=returned))  # three private chats: no chat limit
        await until(lambda: len(transport.calls) == 2)
        pace.advance(1.5)  # both still on their way: Telegram may count them at any moment yet
        await quiet()
        assert len(transport.calls) == 2
        gate.release()  # one returns
        await until(lambda: len(returned) == 1)
        pace.advance(0.5)
        await quiet()
        assert len(transport.calls) == 2  # it counts for a second after it returned
        pace.advance(0.5)
        await until(lambda: len(transport.calls) == 3)
        for _ in range(2):
            gate.release()
        await until(lambda: len(returned) == 3)


async def test_a_push_handed_to_a_stopped_sender_is_skipped_so_its_row_waits_for_the_next_start() -> None:
    async with manual_sender({"7": ScopeLimit(count=1, window=5.0, gap=5.0)}) as (sender, transport, _pace):
        queued: list[Delivered] = []
        late: list[Delivered] = []
        sender.submit(job("7", "first"))
        await until(lambda: len(transport.calls) == 1)
        sender.submit(job("7", "waits its gap", Priority.BULK, queued, skip_on_stop=True))
        sender.submit(job("7", "a reply row", Priority.ANSWER))  # a reply stays unanswered: its row is resent
        await sender.stop()
        sender.submit(job("7", "after the stop", Priority.BULK, late, skip_on_stop=True))
        await until(lambda: bool(queued) and bool(late))
        assert queued[0].outcome is Outcome.SKIPPED and late[0].outcome is Outcome.SKIPPED
        assert len(transport.calls) == 1
