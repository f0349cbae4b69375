"""Who is staff and who is a member comes from the configuration and the listed VIP groups only: a stranger's
own group gets a notice and nothing is booked there; members-only commands refuse outsiders on every path;
a failed rights check answers with the apology."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver
from tests.fakes.bot_api import FakeBotApi, user
from tests.tg_harness import ADMIN, ALICE, GROUP, STAFF, Harness, fake_api, harness_settings, running_bot

STRANGER_ID = 900
STRANGER = user(STRANGER_ID, "Mallory", "mallory")
STRANGER_GROUP = -100777000
GROUP_BUY = "/groupbuy add Tea set | price=300 group_price=199 min=3 deadline=2026-03-12 20:00"


def no_groups(api: FakeBotApi, db: Path, **overrides: Any) -> Any:
    """The shipped configuration: `telegram.groups: []`."""
    return harness_settings(api, db, telegram={"token": api.token, "base_url": api.base_url, "groups": []},
                            **overrides)  # fmt: skip


async def open_group_buy(bot: Harness) -> None:
    """The staff opens GROUP_BUY in the group: the answer, then the post; both are out when this returns."""
    assert "Group buy #1 opened" in await bot.send(GROUP, STAFF, GROUP_BUY)
    await bot.settle()


async def ledger_rows(bot: Harness) -> int:
    async with bot.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM ledger")
    return int(rows[0][0])


async def member_count(bot: Harness) -> int:
    async with bot.runtime.deps.db.read() as repos:
        return await repos.members.count()


# --- security 1: owning a chat gives no rights ------------------------------------------------------------
async def test_a_stranger_who_adds_the_bot_to_their_own_group_cannot_award_themselves(
    tmp_path: Path, clock: FakeClock
) -> None:
    async with fake_api() as api, running_bot(api, no_groups(api, tmp_path / "s.db"), clock) as bot:
        api.admins[STRANGER_GROUP] = [STRANGER_ID]  # they own the group they added the bot to
        answer = await bot.send(STRANGER_GROUP, STRANGER, "/award @mallory 100000 thanks")
        assert "100000" not in answer and str(STRANGER_GROUP) in answer
        # Nor from a private chat: the groups they own are no VIP groups.
        assert "only staff" in await bot.send(STRANGER_ID, STRANGER, "/award @mallory 100000")
        assert await ledger_rows(bot) == 0
        async with bot.runtime.deps.db.read() as repos:
            member = await repos.members.by_identity("telegram", str(STRANGER_ID))
            groups = await repos.chats.of_channel("telegram")
        assert member is None or member.balance == 0
        assert groups == []  # announcements never go to the stranger's group
        # Staff listed by id stay staff wherever the bot serves.
        await bot.send(STAFF["id"], STAFF, "/award @mallory 5")
        assert await bot.balance(STRANGER) == 5


async def test_group_admins_are_staff_only_in_the_listed_groups(tmp_path: Path, clock: FakeClock) -> None:
    db = tmp_path / "l.db"
    async with fake_api() as api:
        api.admins[STRANGER_GROUP] = [STRANGER_ID]
        async with running_bot(api, no_groups(api, db), clock) as bot:
            async with bot.runtime.deps.db.transaction() as repos:  # a group an earlier version served
                await repos.chats.add("telegram", str(STRANGER_GROUP), 0)
        async with running_bot(api, harness_settings(api, db), clock) as bot:
            async with bot.runtime.deps.db.read() as repos:
                assert await repos.chats.of_channel("telegram") == [str(GROUP)]  # only listed groups get posts
            await bot.send(GROUP, ALICE, "/checkin")
            assert "only staff" in await bot.send(STRANGER_ID, STRANGER, "/award @alice 5")
            await bot.send(GROUP, ADMIN, "/award 5 welcome", reply_to=ALICE)
            assert await bot.balance(ALICE) == 15  # the check-in and the admin's award


async def test_with_no_groups_listed_the_owner_is_told_how_once_in_a_while(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, no_groups(api, tmp_path / "n.db"), clock) as bot:
        notice = await bot.send(STRANGER_GROUP, ALICE, "/checkin")
        assert str(STRANGER_GROUP) in notice and "telegram.groups" in notice and "VIPBOT_TELEGRAM__GROUPS" in notice
        # A prankster cannot make it repeat: the next commands there are not answered for a while.
        await bot.silent(STRANGER_GROUP, ALICE, "/checkin")
        await bot.silent(STRANGER_GROUP, STRANGER, "/points")
        clock.advance(timedelta(hours=2))
        assert str(STRANGER_GROUP) in await bot.send(STRANGER_GROUP, ALICE, "/checkin")
        async with bot.runtime.deps.db.read() as repos:
            assert await repos.members.by_identity("telegram", str(ALICE["id"])) is None  # nothing booked
            checkins = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM checkins")
        assert checkins[0][0] == 0 and await ledger_rows(bot) == 0


# --- security 6: members-only on every path -------------------------------------------------------------
async def test_an_outsider_is_refused_every_members_only_command_from_a_private_chat(chat: ChatDriver) -> None:
    await chat.say("eve", "/start", group=False)
    await chat.say("boss", GROUP_BUY)
    await chat.say("boss", "/event add 2026-03-20 19:30 Tasting | small room")
    await chat.say("boss", "/reward add Tea sample | cost=50")
    await chat.say("boss", "/poll rating How was your visit? --hours 24 --points 5")
    await chat.say("boss", "/award @eve 100")
    chat.port.outsiders.add("eve")  # she left the VIP group
    for command in ("/groupbuy join 1", "团购 join 1", "/join 1", "/redeem 1", "/vote 1 5"):
        answer = await chat.say("eve", command, group=False)
        assert "for members of the VIP group" in answer, command
    async with chat.runtime.deps.db.read() as repos:
        assert await repos.group_buys.participants(1) == []
        signups = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM event_signups")
        redeemed = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM redemptions")
        assert await repos.polls.answers(1) == []
    assert signups[0][0] == 0 and redeemed[0][0] == 0
    # Looking is not taking part: the lists still answer.
    assert "Tea set" in await chat.say("eve", "/groupbuy list", group=False)
    chat.port.outsiders.clear()  # back in the group
    assert "joined the group buy" in await chat.say("eve", "/groupbuy join 1", group=False)


def chat_member(status: str) -> Any:
    def answer(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        who = {"id": int(params["user_id"]), "is_bot": False, "first_name": "x"}
        return 200, {"ok": True, "result": {"status": status, "user": who}}

    return answer


async def test_on_telegram_membership_is_asked_of_the_listed_groups(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "m.db"), clock) as bot:
        await open_group_buy(bot)
        api.fail["getChatMember"] = chat_member("left")
        assert "for members of the VIP group" in await bot.send(ALICE["id"], ALICE, "/groupbuy join 1")
        async with bot.runtime.deps.db.read() as repos:
            assert await repos.group_buys.participants(1) == []
        asked = api.sent("getChatMember")
        assert asked and {int(c["chat_id"]) for c in asked} == {GROUP}


# --- staff rights are known for every command --------------------------------------------------------------
async def test_staff_groupbuy_status_lists_the_participants(chat: ChatDriver) -> None:
    await chat.say("boss", GROUP_BUY)
    await chat.say("ann", "/groupbuy join 1")
    status = await chat.say("boss", "/groupbuy status 1")
    assert "· Ann deposit ¥19.90" in status
    assert "· Ann" not in await chat.say("ben", "/groupbuy status 1")  # members see no one else


async def test_a_failing_admin_lookup_answers_with_the_apology(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "f.db"), clock) as bot:
        await bot.send(GROUP, ALICE, "/checkin")
        bot.channel._admins.clear()  # forget the admin list fetched for the check-in
        api.fail["getChatAdministrators"] = lambda params: (
            500, {"ok": False, "error_code": 500, "description": "Internal Server Error"},
        )  # fmt: skip
        assert "Sorry, something went wrong" in await bot.send(GROUP, ADMIN, "/award @alice 5")
        assert "Sorry, something went wrong" in await bot.send(ADMIN["id"], ADMIN, "/award @alice 5")
        assert await bot.balance(ALICE) == 10  # the check-in only
        # Members' commands do not depend on it: they are answered, without staff extras.
        assert "Alice's points: 10" in await bot.send(GROUP, ALICE, "/points")


async def test_a_failing_membership_lookup_answers_with_the_apology(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "g.db"), clock) as bot:
        await open_group_buy(bot)
        api.fail["getChatMember"] = lambda params: (
            502, {"ok": False, "error_code": 502, "description": "Bad Gateway"},
        )  # fmt: skip
        assert "Sorry, something went wrong" in await bot.send(ALICE["id"], ALICE, "/groupbuy join 1")
        api.fail["getChatMember"] = chat_member("member")
        assert "joined the group buy" in await bot.send(ALICE["id"], ALICE, "/groupbuy join 1")
