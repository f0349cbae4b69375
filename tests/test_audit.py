"""The audit log: every command that needs a staff role leaves a row (who, what, on whom, when, where, how it
ended) in its own transaction, refused attempts too; `/audit` lists them for managers, newest first, page by
page, by member, by staff member or for today."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from handlers.core.clock import FakeClock
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.roles import Role
from storage.audit import AuditRow
from tests.conftest import ChatDriver


@pytest.fixture
def shop(chat: ChatDriver) -> ChatDriver:
    chat.port.roles.update({"carl": Role.CASHIER, "meg": Role.MANAGER})
    return chat


async def rows(chat: ChatDriver) -> list[AuditRow]:
    """Every row, oldest first."""
    async with chat.runtime.deps.db.read() as repos:
        return list(reversed((await repos.audit.page("all", None, 1000, 0)).rows))


async def member_id(chat: ChatDriver, who: str) -> int:
    async with chat.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", who)
    assert member is not None
    return member.id


async def test_allowed_and_refused_staff_actions_are_recorded_with_who_what_target_and_chat(shop: ChatDriver) -> None:
    await shop.say("alice", "hi")
    alice = await member_id(shop, "alice")
    await shop.say("carl", "/purchase @alice 88  new   teapot", group=False)
    await shop.say("carl", "/deduct @alice 10")
    await shop.say("alice", "/checkin")  # a member's command: not audited
    await shop.say("mallory", "/award @mallory 1000")  # no role at all: refused, recorded
    await shop.say("meg", "/award @nobody 5")  # no such member: answered, nothing booked
    carl = await member_id(shop, "carl")
    found = await rows(shop)
    assert [(r.command, r.actor_name, r.role, r.outcome) for r in found] == [
        ("purchase", "Carl", "cashier", "done"),
        ("deduct", "Carl", "cashier", "refused"),
        ("award", "Mallory", None, "refused"),
        ("award", "Meg", "manager", "done"),
    ]
    purchase = found[0]
    assert purchase.actor_member_id == carl and purchase.actor_channel == "test"
    assert purchase.actor_external_id == "carl"
    assert purchase.args == "@alice 88 new teapot"  # trimmed onto one line
    assert purchase.target_member_id == alice and purchase.target_name == "Alice"
    assert purchase.chat_id == "dm-carl" and not purchase.in_group
    assert purchase.at == shop.runtime.deps.now_ts()
    assert found[1].chat_id == "group" and found[1].in_group and found[1].target_member_id is None
    assert found[3].target_member_id is None


async def test_each_row_says_how_the_command_ended(shop: ChatDriver) -> None:
    """Done; undone (the command refused half-way: nothing booked); failed (a crash: nothing booked, the row
    still written in the update's transaction); only sub-commands that need a role are recorded."""
    await shop.say("alice", "hi")
    await shop.say("meg", "/event show x")  # a Refusal: the usage, nothing booked
    await shop.say("meg", "/groupbuy add Tea | price=1")  # a member's command with a manager's sub-command
    await shop.say("carl", "/groupbuy list")  # a member's sub-command: not audited
    dispatcher = shop.runtime.dispatcher
    award = dispatcher._by_name["award"]

    async def crash(req: Request, deps: Deps) -> list[Reply]:
        await award.handler(req, deps)  # books the points, then fails
        raise RuntimeError("boom")

    dispatcher._by_name["award"] = replace(award, handler=crash)
    assert "Sorry, something went wrong" in await shop.say("meg", "/award @alice 5")
    found = await rows(shop)
    assert [(r.command, r.subcommand, r.outcome) for r in found] == [
        ("event", "show", "undone"), ("groupbuy", "add", "done"), ("award", "", "failed"),
    ]
    async with shop.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("test", "alice")
    assert member is not None and member.balance == 0  # the crash booked nothing


async def test_audit_lists_newest_first_with_filters_and_pages(shop: ChatDriver, clock: FakeClock) -> None:
    await shop.say("alice", "hi")
    await shop.say("bob", "hi")
    alice, bob = await member_id(shop, "alice"), await member_id(shop, "bob")
    for n in range(1, 18):
        await shop.say("meg", f"/award @alice {n} round {n}")
    clock.advance(timedelta(days=1))
    await shop.say("carl", "/purchase @bob 20")
    await shop.say("carl", "/announce hello")

    first = await shop.say("meg", "/audit", group=False)
    lines = first.splitlines()
    assert lines[0].startswith("🧾 Audit log, page 1")
    assert "Carl (#" in lines[1] and "[cashier] /announce hello" in lines[1] and "refused" in lines[1]
    assert "/purchase @bob 20 → Bob (#" in lines[2] and "· group group ·" in lines[2] and "done" in lines[2]
    assert len(lines) == 1 + 15 + 1 and "round 5 " in lines[-2] and lines[-1] == "Older entries: /audit 2"
    second = await shop.say("meg", "/audit 2", group=False)  # the first /audit is now the newest row
    assert "round 5 " in second and "round 1 " in second and "Older entries" not in second
    assert "There is no page 9." in await shop.say("meg", "/audit 9", group=False)

    about_bob = await shop.say("meg", f"/audit member {bob}", group=False)
    assert f"about Bob (#{bob})" in about_bob and "/purchase @bob 20" in about_bob and "round" not in about_bob
    by_carl = await shop.say("meg", "/audit staff @carl", group=False)
    assert "/purchase" in by_carl and "/announce" in by_carl and "round" not in by_carl
    today = await shop.say("meg", "/audit today", group=False)
    assert "/purchase" in today and "round" not in today  # yesterday's awards are not today's
    about_alice = await shop.say("meg", f"/audit member {alice} 2", group=False)
    assert "page 2" in about_alice
    assert "I can't find the member @nobody" in await shop.say("meg", "/audit member @nobody", group=False)
    assert "Usage: /audit" in await shop.say("meg", "/audit sideways", group=False)
    # Cashiers do not read the log; reading it is itself recorded.
    assert "needs the manager role" in await shop.say("carl", "/audit", group=False)
    latest = (await rows(shop))[-1]
    assert (latest.command, latest.actor_external_id, latest.outcome) == ("audit", "carl", "refused")


async def test_the_command_line_records_its_own_rows(shop: ChatDriver) -> None:
    from handlers.audit.commands import record_command_line

    deps = shop.runtime.deps
    async with deps.db.transaction() as repos:
        await record_command_line(repos, "import", "members shop.xlsx --confirm", deps.now_ts())
    answer = await shop.say("meg", "/audit", group=False)
    assert "(command line) [no role] /import members shop.xlsx --confirm · command line · done" in answer


async def test_a_handed_over_reward_names_its_member_as_target(shop: ChatDriver) -> None:
    await shop.say("boss", "/reward add Teapot | cost=10")
    await shop.say("alice", "hi")
    alice = await member_id(shop, "alice")
    await shop.say("boss", "/award @alice 50")
    code = (await shop.say("alice", "兑换 1")).split("Your code: ")[1].split(";")[0]
    assert "marked as handed over" in await shop.say("carl", f"/redeemed {code}", group=False)
    latest = (await rows(shop))[-1]
    assert (latest.command, latest.target_member_id, latest.target_name) == ("redeemed", alice, "Alice")
