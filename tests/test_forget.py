"""A member's own data: /me lists what the bot keeps; /forget asks for erasure, the member confirms, staff
confirm, and the personal data is gone while the books still balance."""

from __future__ import annotations

from dataclasses import replace

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, RecordingPusher, settle


async def member_id(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        found = await repos.members.by_identity(chat.channel, who)
    assert found is not None
    return found.id


async def press(chat: ChatDriver, who: str, data: str) -> str:
    msg = replace(chat.inbound(who, "", group=False), button=data)
    return "\n".join(r.text for r in await chat.runtime.dispatcher.handle(msg, chat.port))


async def books(chat: ChatDriver) -> tuple[dict[int, tuple[int, int]], int]:
    """Every member's (balance, sum of their ledger deltas), and the sum of all balances."""
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall(
            "SELECT m.id, m.balance, COALESCE((SELECT SUM(delta) FROM ledger l WHERE l.member_id = m.id), 0)"
            " FROM members m"
        )
    each = {int(r[0]): (int(r[1]), int(r[2])) for r in rows}
    return each, sum(balance for balance, _ in each.values())


async def count(chat: ChatDriver, sql: str, *params: object) -> int:
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall(sql, params)
    return int(rows[0][0])


async def alice_with_data(chat: ChatDriver) -> int:
    await chat.say("alice", "/start", group=False)
    await chat.say("alice", "/checkin")
    await chat.say("alice", "/birthday 08-15")
    await chat.say("boss", "/purchase @alice 250 scarf")
    await chat.say("bob", "/checkin")
    alice = await member_id(chat, "alice")
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.conn.execute(
            "INSERT INTO customer_profiles(member_id, phone, note, telegram_username, updated_at)"
            " VALUES (?, '13800138000', 'likes silk', 'alice', 0)",
            (alice,),
        )
        await repos.referrals.claim_code(alice, "ALICE1", 0)
    return alice


async def test_me_lists_what_is_kept_privately(chat: ChatDriver) -> None:
    await alice_with_data(chat)
    text = await chat.say("alice", "/me", group=False)
    # her own id on each channel, as staff settings (staff.telegram) take it
    assert "What we keep about you:\n· test: Alice (@alice), ID alice\n· Phone: 13800138000\n" in text
    assert "· Records: check-ins: 1, purchases: 1, poll answers: 0" in text
    assert "Birthday: 08-15" in text and "Points: " in text and "Tier: Gold" in text
    assert "send /forget" in text
    (reply,) = await chat.replies("alice", "/me")  # asked in the group: answered privately
    assert reply.personal


async def test_forget_end_to_end(chat: ChatDriver, pusher: RecordingPusher) -> None:
    alice = await alice_with_data(chat)
    before, total = await books(chat)
    explained = await chat.replies("alice", "/forget", group=False)
    assert "To delete, press the button below or send 确认删除" in explained[0].text
    assert [b.data for b in explained[0].buttons] == ["v1:forget_yes:"]
    assert "Your deletion request is in" in await press(chat, "alice", "v1:forget_yes:")
    await settle(chat.runtime)
    notice = f"Member #{alice} (Alice) asks to have their personal data deleted. To confirm: /forget confirm {alice}"
    assert notice in pusher.to("")
    assert "waiting for staff" in await chat.say("alice", "/me", group=False)
    assert f"Member #{alice} (Alice)" in await chat.say("boss", "/forget list", group=False)
    # Something still queued for her is dropped with her data.
    async with chat.runtime.deps.db.transaction() as repos:
        ann = await repos.announcements.create("points", "personal", "for Alice", 10**10, 0)
        assert await repos.deliveries.queue_personal(ann, alice, "Dear Alice", ["test"]) == 1
        await repos.conn.execute("UPDATE deliveries SET next_attempt_at = 1e12 WHERE announcement_id = ?", (ann,))

    done = await chat.say("boss", f"/forget confirm {alice}", group=False)
    assert done == f"Personal data of member #{alice} deleted; their points records stay, anonymised."

    async with chat.runtime.deps.db.read() as repos:
        erased = await repos.members.get(alice)
        assert erased is not None
        assert erased.display_name == f"Deleted member #{alice}" and erased.birthday is None
        assert await repos.members.identities(alice) == []
        assert await repos.members.phone_of(alice) is None
        assert await repos.referrals.code_of(alice) is None
        assert await repos.members.by_username("test", "alice") is None
    assert await count(chat, "SELECT COUNT(*) FROM deliveries WHERE member_id = ? AND state = 'pending'", alice) == 0
    assert await count(chat, "SELECT COUNT(*) FROM deliveries WHERE target = 'alice'") == 0
    assert await count(chat, "SELECT COUNT(*) FROM ledger WHERE member_id = ?", alice) >= 2  # kept
    assert await count(chat, "SELECT COUNT(*) FROM purchases WHERE member_id = ?", alice) == 1

    after, total_after = await books(chat)
    assert after == before and total_after == total  # nothing moved
    assert all(balance == ledger for balance, ledger in after.values())

    # She is a stranger again: her next message makes a new member.
    assert "Welcome to the VIP club, Alice" in await chat.say("alice", "/start", group=False)
    again = await member_id(chat, "alice")
    assert again != alice
    async with chat.runtime.deps.db.read() as repos:
        fresh = await repos.members.get(again)
    assert fresh is not None and fresh.balance == 0 and fresh.birthday is None
    # Confirming twice erases nothing more.
    assert "has no deletion request waiting" in await chat.say("boss", f"/forget confirm {alice}", group=False)


async def test_the_keyword_confirms_and_the_member_may_withdraw_before_staff(chat: ChatDriver) -> None:
    alice = await alice_with_data(chat)
    assert "Your deletion request is in" in await chat.say("alice", "确认删除", group=False)
    assert "waiting for staff to confirm" in await chat.say("alice", "确认删除", group=False)
    assert await count(chat, "SELECT COUNT(*) FROM erasure_requests WHERE state = 'pending'") == 1
    assert "withdrawn" in await chat.say("alice", "/forget cancel", group=False)
    assert "no deletion request waiting" in await chat.say("alice", "/forget cancel", group=False)
    refused = await chat.say("boss", f"/forget confirm {alice}", group=False)
    assert refused == f"Member #{alice} has no deletion request waiting: nothing deleted."
    async with chat.runtime.deps.db.read() as repos:
        kept = await repos.members.get(alice)
        assert kept is not None and kept.display_name == "Alice" and kept.birthday == "08-15"
        assert await repos.members.phone_of(alice) == "13800138000"


async def test_staff_cannot_erase_a_member_who_did_not_ask(chat: ChatDriver) -> None:
    alice = await alice_with_data(chat)
    refused = await chat.say("boss", f"/forget confirm {alice}", group=False)
    assert refused == f"Member #{alice} has no deletion request waiting: nothing deleted."
    assert len(await chat.runtime.dispatcher.handle(chat.inbound("alice", "/me", group=False), chat.port)) == 1
    async with chat.runtime.deps.db.read() as repos:
        assert len(await repos.members.identities(alice)) == 1
    assert "No deletion requests waiting." in await chat.say("boss", "/forget list", group=False)


async def test_a_member_cannot_confirm_an_erasure(chat: ChatDriver) -> None:
    alice = await alice_with_data(chat)
    await chat.say("alice", "确认删除", group=False)
    assert "only staff" in await chat.say("bob", f"/forget confirm {alice}", group=False)
    assert "only staff" in await chat.say("alice", f"/forget confirm {alice}", group=False)
    assert await count(chat, "SELECT COUNT(*) FROM erasure_requests WHERE state = 'pending'") == 1


async def test_the_request_survives_a_restart(settings: Settings, clock: FakeClock) -> None:
    first = await Runtime.open(settings, clock)
    try:
        chat = ChatDriver(first)
        alice = await alice_with_data(chat)
        await chat.say("alice", "确认删除", group=False)
    finally:
        await first.close()
    second = await Runtime.open(settings, clock)
    try:
        chat = ChatDriver(second)
        listed = await chat.say("boss", "/forget list", group=False, key="after-restart:1")
        assert f"Member #{alice} (Alice)" in listed
        assert "deleted" in await chat.say("boss", f"/forget confirm {alice}", group=False, key="after-restart:2")
    finally:
        await second.close()


async def test_a_phone_claim_waiting_for_the_profile_does_not_block_the_erasure(chat: ChatDriver) -> None:
    alice = await alice_with_data(chat)
    async with chat.runtime.deps.db.transaction() as repos:
        await repos.conn.execute(
            "INSERT INTO claim_codes(phone, code, created_at, expires_at) VALUES ('13800138000', 'C-1', 0, 99)"
        )
    await chat.say("alice", "确认删除", group=False)
    assert "deleted" in await chat.say("boss", f"/forget confirm {alice}", group=False)
    assert await count(chat, "SELECT COUNT(*) FROM customer_profiles WHERE phone = '13800138000'") == 0


async def test_the_erasure_blanks_what_the_audit_log_says_by_and_about_them(chat: ChatDriver) -> None:
    alice = await alice_with_data(chat)  # staff recorded a purchase for her: a row about her
    await chat.say("alice", "/award @bob 1000 me myself")  # refused, but a row by her
    await chat.say("boss", "/award @bob 5 thanks")  # neither by nor about her: kept as it was
    await chat.say("alice", "确认删除", group=False)
    await chat.say("boss", f"/forget confirm {alice}", group=False)
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall(
            "SELECT command, args, actor_external_id, actor_member_id = :id, target_member_id = :id FROM audit_log"
            " WHERE command IN ('purchase', 'award') ORDER BY id",
            {"id": alice},
        )
    assert [tuple(r) for r in rows] == [
        ("purchase", "", "boss", 0, 1),
        ("award", "", "", 1, None),
        ("award", "@bob 5 thanks", "boss", 0, 0),
    ]
