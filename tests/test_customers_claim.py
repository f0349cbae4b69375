"""Claiming an imported customer record: only with proof. On Telegram the contact-request key sends the
sender's own number (a contact of someone else, or a forwarded one, claims nothing); anywhere a code staff show
for that phone (wrong codes are limited); a typed number alone claims nothing. When claimed, the talking member
and the imported record are one member: the imported number and name, both balances, a balanced ledger."""

from __future__ import annotations

import re
from pathlib import Path

from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.customers import importing
from tests.conftest import ChatDriver
from tests.fakes.bot_api import contact_update
from tests.test_customers_import import HEADER, csv_bytes
from tests.test_wechat import WeChatHarness, wx  # noqa: F401  (the WeChat harness fixture)
from tests.tg_harness import ALICE, BOB, GROUP, Harness, fake_api, harness_settings, running_bot

PHONE = "13800138000"
NAMELESS = "13900139001"
ROWS = [["王小明", PHONE, "03-15", 520, 1999, "", "老客户", "", ""], ["", NAMELESS, "", 40, "", "", "", "", ""]]


async def import_customers(runtime: Runtime, tmp_path: Path) -> dict[str, int]:
    """The shop's file imported (as `vipbot import members --confirm` does); member ids by phone."""
    path = tmp_path / "customers.csv"
    path.write_bytes(csv_bytes(HEADER, ROWS, "utf-8"))
    deps = runtime.deps
    outcome = await importing.import_file(deps.db, path, deps.rules, apply=True, now=deps.now_ts())
    assert outcome.new == 2
    async with deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT phone, member_id FROM customer_profiles")
    return {str(r[0]): int(r[1]) for r in rows}


async def member_of(runtime: Runtime, channel: str, external_id: str) -> tuple[int, str, int]:
    """(member id, name, balance) of an account; every balance equals its ledger."""
    async with runtime.deps.db.read() as repos:
        member = await repos.members.by_identity(channel, external_id)
        assert await repos.ledger.mismatched_balances() == []
    assert member is not None
    return member.id, member.display_name, member.balance


async def share(bot: Harness, sender: dict[str, object], phone: str, user_id: int | None, **kwargs: bool) -> dict:
    before = len(bot.api.sent())
    bot.api.push_update(contact_update(bot.api, int(sender["id"]), sender, phone, user_id, **kwargs))  # type: ignore[arg-type]
    return (await bot.api.wait_for(before + 1))[-1]


# --- Telegram: the contact-request key -----------------------------------------------------------------
async def test_sharing_ones_own_number_claims_the_record(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        ids = await import_customers(bot.runtime, tmp_path)
        alice = int(ALICE["id"])
        await bot.send(GROUP, ALICE, "签到")  # points of her own before she claims
        own_id, _, own_points = await member_of(bot.runtime, "telegram", str(alice))
        assert own_points > 0 and own_id != ids[PHONE]
        await bot.send(alice, ALICE, "绑定手机")
        (key,) = api.sent()[-1]["reply_markup"]["keyboard"][0]
        assert key["request_contact"] is True
        answer = await share(bot, ALICE, f"+86{PHONE}", alice)
        assert "Welcome back" in answer["text"] and answer["reply_markup"] == {"remove_keyboard": True}
        assert await member_of(bot.runtime, "telegram", str(alice)) == (ids[PHONE], "王小明", 520 + own_points)
        assert "already yours" in (await share(bot, ALICE, PHONE, alice))["text"]


async def test_a_contact_of_someone_else_claims_nothing(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api, running_bot(api, harness_settings(api, tmp_path / "s.db"), clock) as bot:
        ids = await import_customers(bot.runtime, tmp_path)
        alice = int(ALICE["id"])
        assert "Only your own" in (await share(bot, ALICE, PHONE, int(BOB["id"])))["text"]
        assert "Only your own" in (await share(bot, ALICE, PHONE, None))["text"]  # typed in: no user
        assert "Only your own" in (await share(bot, ALICE, PHONE, alice, forwarded=True))["text"]
        assert "ask the staff for a code" in await bot.send(alice, ALICE, f"绑定手机 {PHONE}")
        member_id, _, balance = await member_of(bot.runtime, "telegram", str(alice))
        assert member_id != ids[PHONE] and balance == 0
        async with bot.runtime.deps.db.read() as repos:
            assert await repos.members.identities(ids[PHONE]) == []


# --- the code staff show ---------------------------------------------------------------------------------
def code_of(text: str) -> str:
    found = re.search(r"P-[2-9A-HJ-NP-Z]{6}", text)
    assert found is not None, text
    return found.group(0)


async def test_the_right_code_claims_and_wrong_codes_are_limited(
    chat: ChatDriver, runtime: Runtime, tmp_path: Path
) -> None:
    ids = await import_customers(runtime, tmp_path)
    assert "ask the staff for a code" in await chat.say("mallory", f"绑定手机 {PHONE}", group=False)
    assert "staff" in await chat.say("mallory", f"/claimcode {PHONE}", group=False)  # not theirs to ask
    reply = (await chat.replies("boss", f"/claimcode {PHONE}", group=False))[0]
    assert reply.secret
    code = code_of(reply.text)
    wrong = "P-22222" + ("3" if code[-1] != "3" else "4")
    for _ in range(runtime.deps.rules.binding.failures_per_member):
        assert "wrong or expired" in await chat.say("mallory", f"绑定手机 {PHONE} {wrong}", group=False)
    assert "Too many wrong codes" in await chat.say("mallory", f"绑定手机 {PHONE} {code}", group=False)
    assert "Welcome back" in await chat.say("alice", f"绑定手机 {PHONE} {code[2:].lower()}", group=False)
    assert (await member_of(runtime, "test", "alice"))[:2] == (ids[PHONE], "王小明")
    assert "wrong or expired" in await chat.say("bob", f"绑定手机 {PHONE} {code}", group=False)  # once only
    assert (await member_of(runtime, "test", "bob"))[0] != ids[PHONE]


async def test_a_record_without_a_name_takes_the_members_name(
    chat: ChatDriver, runtime: Runtime, tmp_path: Path
) -> None:
    ids = await import_customers(runtime, tmp_path)
    code = code_of(await chat.say("boss", f"/claimcode {NAMELESS}", group=False))
    assert "Welcome back" in await chat.say("carol", f"绑定手机 {NAMELESS} {code}", group=False)
    assert await member_of(runtime, "test", "carol") == (ids[NAMELESS], "Carol", 40)


async def test_the_wechat_typed_flow(wx: WeChatHarness, tmp_path: Path) -> None:  # noqa: F811
    ids = await import_customers(wx.runtime, tmp_path)
    assert "ask the staff for a code" in await wx.say("o-ann", f"绑定手机 {PHONE}")
    code = code_of(await ChatDriver(wx.runtime).say("boss", f"/claimcode {PHONE}", group=False))
    assert "wrong or expired" in await wx.say("o-ann", f"绑定手机 {PHONE} P-222222")
    assert "Welcome back" in await wx.say("o-ann", f"绑定手机 {PHONE} {code}")
    assert (await member_of(wx.runtime, "wechat", "o-ann"))[:2] == (ids[PHONE], "王小明")
