"""Staff roles from the configuration: a cashier serves at the till (look up, record purchases, hand over
redemptions) and is refused the rest with the role it needs named; a manager does everything but erasing
personal data; group admins have a role only when `staff.group_admins` gives them one; the shape of the
configuration before roles (plain lists of ids) still loads, each id an owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.config import ConfigError, Settings, StaffSettings, load_settings
from handlers.core.clock import FakeClock
from handlers.core.messages import Identity, Inbound
from handlers.core.roles import Role, higher, may
from tests.conftest import ChatDriver
from tests.fakes.bot_api import user
from tests.tg_harness import ADMIN, ADMIN_ID, ALICE, GROUP, fake_api, harness_settings, running_bot

SALE = "/sale add Jade teapot | price=99 stock=3 start=2026-03-20 10:00"
CASHIER_ID = 650
CASHIER = user(CASHIER_ID, "Carl", "carl")


@pytest.fixture
def till(chat: ChatDriver) -> ChatDriver:
    """The test chat with Carl a cashier and Meg a manager (boss stays the owner)."""
    chat.port.roles.update({"carl": Role.CASHIER, "meg": Role.MANAGER})
    return chat


async def balance_of(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
    assert member is not None
    return member.balance


def test_roles_are_ordered() -> None:
    assert may(Role.OWNER, Role.CASHIER) and may(Role.MANAGER, Role.MANAGER) and may(None, None)
    assert not may(Role.CASHIER, Role.MANAGER) and not may(None, Role.CASHIER)
    assert higher(Role.CASHIER, Role.OWNER) is Role.OWNER and higher(None, Role.CASHIER) is Role.CASHIER


async def test_a_cashier_records_purchases_but_is_refused_deduct_announce_and_sales(till: ChatDriver) -> None:
    await till.say("alice", "hi")
    assert "Recorded a ¥88.00 purchase for Alice" in await till.say("carl", "/purchase @alice 88")
    earned = await balance_of(till, "alice")
    assert earned > 0
    for command in ("/deduct @alice 10", "/announce Big sale tomorrow", SALE, "/award @alice 5", "/void 1"):
        answer = await till.say("carl", command)
        assert answer == "Sorry, this needs the manager role (yours is cashier).", command
    assert await balance_of(till, "alice") == earned  # nothing deducted or awarded
    async with till.runtime.deps.db.read() as repos:
        sales = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM sales")
        announcements = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM announcements")
    assert sales[0][0] == 0 and announcements[0][0] == 0
    # The manager may do all of it.
    assert "Usage" not in await till.say("meg", "/deduct @alice 10") and await balance_of(till, "alice") == earned - 10


async def test_a_cashier_hands_over_a_redemption_and_sees_what_members_see(till: ChatDriver) -> None:
    await till.say("boss", "/reward add Teapot | cost=100 stock=1")
    await till.say("alice", "hi")
    await till.say("boss", "/award @alice 150")
    code = (await till.say("alice", "兑换 1")).split("Your code: ")[1].split(";")[0]
    assert "marked as handed over" in await till.say("carl", f"/redeemed {code}")
    assert "Carl's points: 0" in await till.say("carl", "/points")  # a member's command works for them
    assert "this needs the manager role" in await till.say("carl", "/reward add Cup | cost=5")


async def test_erasing_personal_data_is_the_owners_alone(till: ChatDriver) -> None:
    answer = await till.say("meg", "/forget confirm 1", group=False)
    assert answer == "Sorry, this needs the owner role (yours is manager)."
    assert "this needs the owner role" not in await till.say("boss", "/forget confirm 1", group=False)


async def test_help_lists_the_commands_of_the_senders_role(till: ChatDriver) -> None:
    member = await till.say("alice", "/help", group=False)
    assert "Staff commands:" not in member and "/purchase" not in member
    cashier = await till.say("carl", "/help", group=False)
    assert "Staff commands:" in cashier and "Your role: cashier" in cashier
    assert "/purchase" in cashier and "/redeemed" in cashier and "/member" in cashier
    assert "/deduct" not in cashier and "/announce" not in cashier and "/audit" not in cashier
    assert "/checkin" in cashier  # and every member's command
    manager = await till.say("meg", "/help", group=False)
    assert "Your role: manager" in manager and "/deduct" in manager and "/audit" in manager
    assert "There is no /deduct command" in await till.say("carl", "/help deduct", group=False)


# --- the configuration ---------------------------------------------------------------------------------
def test_the_shape_before_roles_still_loads_with_every_listed_id_an_owner(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("staff:\n  telegram: [111, 222]\n  wechat: [oABC]\n  console: [店长]\n", encoding="utf-8")
    staff = load_settings(path).staff
    assert staff.telegram == {111: Role.OWNER, 222: Role.OWNER}
    assert staff.wechat == {"oABC": Role.OWNER} and staff.console == {"店长": Role.OWNER}
    assert staff.group_admins is None  # group admins have no role unless the configuration says so


def test_roles_per_id_and_for_group_admins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("staff:\n  telegram: {111: owner, 333: cashier}\n  group_admins: cashier\n", encoding="utf-8")
    staff = load_settings(path).staff
    assert staff.telegram == {111: Role.OWNER, 333: Role.CASHIER} and staff.group_admins is Role.CASHIER
    assert [str(i) for i in staff.telegram] == ["111", "333"]  # staff notices still go to each listed id
    monkeypatch.setenv("VIPBOT_STAFF__TELEGRAM", '{"444": "manager", "333": "manager"}')  # adds to the file's
    assert load_settings(path).staff.telegram == {111: Role.OWNER, 333: Role.MANAGER, 444: Role.MANAGER}
    monkeypatch.setenv("VIPBOT_STAFF__TELEGRAM", "[555]")  # a list replaces them
    assert load_settings(path).staff.telegram == {555: Role.OWNER}


def test_an_unknown_role_is_refused_at_start_up(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("staff:\n  telegram: {111: boss}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"staff\.telegram\.111"):
        load_settings(path)
    with pytest.raises(ValueError):
        StaffSettings(group_admins="admin")


# --- the channels ----------------------------------------------------------------------------------------
def inbound(channel: str, who: str) -> Inbound:
    return Inbound(channel=channel, chat_id=f"dm-{who}", sender=Identity(channel, who, who, None), text="/help",
                   is_group=False, key=f"{channel}:{who}", message_id="1")  # fmt: skip


async def test_wechat_and_console_answer_the_configured_role() -> None:
    from bot.console.channel import ConsoleChannel
    from bot.wechat.channel import WeChatChannel

    settings = Settings(staff={"wechat": {"oCASH": "cashier"}, "console": {"店长": "owner", "小李": "cashier"}})
    wechat = WeChatChannel.__new__(WeChatChannel)
    wechat.settings = settings
    assert await wechat.role_of(inbound("wechat", "oCASH")) is Role.CASHIER
    assert await wechat.role_of(inbound("wechat", "oOTHER")) is None
    console = ConsoleChannel(None, "小王", settings.staff.console)  # type: ignore[arg-type]
    assert await console.role_of(inbound("console", "小李")) is Role.CASHIER
    assert await console.role_of(inbound("console", "小王")) is None
    console._meta("/as 小王 manager")
    assert await console.role_of(inbound("console", "小王")) is Role.MANAGER
    assert ConsoleChannel(None, "x", ["boss"]).staff_names == {"boss": Role.OWNER}  # type: ignore[arg-type]


async def test_on_telegram_group_admins_have_no_role_unless_configured(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        settings = harness_settings(api, tmp_path / "a.db", staff={"telegram": {CASHIER_ID: "cashier"}})
        async with running_bot(api, settings, clock) as bot:
            await bot.send(GROUP, ALICE, "/checkin")
            assert "only staff" in await bot.send(GROUP, ADMIN, "/award 5 welcome", reply_to=ALICE)
            assert "only staff" in await bot.send(ADMIN_ID, ADMIN, "/award @alice 5")
            assert await bot.balance(ALICE) == 10  # the check-in only
            assert api.sent("getChatAdministrators") == []  # nobody asks Telegram: admins get nothing anyway


async def test_on_telegram_a_configured_cashier_is_refused_deduct(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        staff = {"telegram": {CASHIER_ID: "cashier"}, "group_admins": "manager"}
        async with running_bot(api, harness_settings(api, tmp_path / "c.db", staff=staff), clock) as bot:
            api.admins[GROUP] = [ADMIN_ID, CASHIER_ID]  # listed as a cashier: that wins over being an admin
            await bot.send(GROUP, ALICE, "/checkin")
            answer = await bot.send(GROUP, CASHIER, "/deduct 5 mistake", reply_to=ALICE)
            assert "needs the manager role (yours is cashier)" in answer
            assert "Recorded a ¥12.00 purchase for Alice" in await bot.send(CASHIER_ID, CASHIER, "/purchase @alice 12")
            await bot.send(GROUP, ADMIN, "/deduct 1 typo", reply_to=ALICE)  # the admins are managers here
            async with bot.runtime.deps.db.read() as repos:
                rows = await repos.audit.page("all", None, 10, 0)
    assert [(r.command, r.role, r.outcome) for r in reversed(rows.rows)] == [
        ("deduct", "cashier", "refused"), ("purchase", "cashier", "done"), ("deduct", "manager", "done"),
    ]
