"""Group buys (团购): staff open one with a minimum number of members and a deadline; members join with a
button or /groupbuy join; at the deadline it succeeds (everyone gets the group price and a code) or fails
(nobody pays; everyone is told). Tiers listed in config join without a deposit.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from handlers.core.command import id_and_options, required_id
from handlers.core.deps import Deps, Request
from handlers.core.kinds import AnnouncementKind, DueRule, SubjectKind
from handlers.core.messages import Button, Reply
from handlers.core.parsing import (
    option_leftovers,
    parse_amount_fen,
    parse_int,
    parse_local_datetime,
    parse_options,
    yuan_text,
)
from handlers.core.subcommands import Subcommands
from handlers.shared.broadcast import LivePost, live_post, plan_at, publish, send_personal, unplan_pending
from handlers.shared.codes import new_code
from handlers.shared.tiers import member_tier
from storage.announcements import Announcement
from storage.group_buys import GroupBuy
from storage.members import Member
from storage.repos import Repos

ITEM_LIMIT = 80


def join_button(deps: Deps, group_buy_id: int) -> Button:
    return Button(deps.texts.t("groupbuy.join_button"), f"v1:groupbuy:join {group_buy_id}")


def post_text(deps: Deps, buy: GroupBuy) -> str:
    progress = (
        deps.texts.t("groupbuy.missing", missing=buy.missing, joined=buy.joined)
        if buy.missing
        else deps.texts.t("groupbuy.reached", joined=buy.joined)
    )
    return deps.texts.n(
        "groupbuy.post",
        buy.min_members,
        id=buy.id,
        item=buy.item,
        price=yuan_text(buy.price_fen),
        group_price=yuan_text(buy.group_price_fen),
        min=buy.min_members,
        deadline=deps.local_text(buy.deadline_at),
        progress=progress,
    )


def _deposit(deps: Deps, member: Member, buy: GroupBuy) -> int:
    tier = member_tier(deps, member)
    if tier.id in deps.rules.groupbuy.no_deposit_tiers:
        return 0
    return buy.group_price_fen * deps.rules.groupbuy.deposit_percent // 100


STAFF_SUBCOMMANDS = ("add", "edit", "cancel")
"""Only staff may open, correct or cancel a group buy (the dispatcher checks, see handlers.core.table)."""
MEMBER_SUBCOMMANDS = ("join",)
"""Joining is for VIP group members, from a private chat too."""


async def _add(req: Request, deps: Deps, args: str) -> list[Reply]:
    item, _, opts = args.partition("|")
    item = item.strip()[:ITEM_LIMIT]
    options = parse_options(opts)
    if not item or option_leftovers(opts) or not {"price", "group_price", "min", "deadline"} <= set(options):
        return deps.usage("groupbuy_add")
    price = parse_amount_fen(options["price"])
    group_price = parse_amount_fen(options["group_price"])
    minimum = parse_int(options["min"], 0, 1_000_000) or 0
    deadline = parse_local_datetime(options["deadline"], deps.calendar.zone)
    if price is None or group_price is None or not 2 <= minimum <= 10_000 or deadline is None or deadline[1]:
        return deps.usage("groupbuy_add")
    if group_price > price:
        return [Reply(deps.texts.t("groupbuy.price_order")), *deps.usage("groupbuy_add")]
    when = deadline[0]
    if when <= deps.now():
        return [Reply(deps.texts.t("common.in_past", when=deps.local_text(int(when.timestamp())))),
                *deps.usage("groupbuy_add")]  # fmt: skip
    async with deps.db.transaction() as repos:
        buy_id = await repos.group_buys.create(
            item, price, group_price, minimum, int(when.timestamp()), req.member_id, deps.now_ts()
        )
        buy = await repos.group_buys.get(buy_id)
        assert buy is not None
        subject = (SubjectKind.GROUP_BUY, buy_id)
        ann_id, count = await publish(repos, deps, AnnouncementKind.GROUPBUY, "all", post_text(deps, buy),
                                      buttons=(join_button(deps, buy_id),), subject=subject,
                                      created_by=req.member_id)  # fmt: skip
        await plan_at(repos, deps, AnnouncementKind.GROUPBUY_CLOSE, "groups", post_text(deps, buy), when,
                      subject=subject)  # fmt: skip
    deps.outbox.wake()
    deadline = deps.local_text(buy.deadline_at)
    return [Reply(deps.texts.n("groupbuy.created", count, id=buy_id, item=item, deadline=deadline,
                               announcement=ann_id))]  # fmt: skip


async def _join(req: Request, deps: Deps, args: str) -> list[Reply]:
    buy_id = required_id(deps, args, "groupbuy")
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        buy = await repos.group_buys.get(buy_id)
        member = await repos.members.get(req.member_id)
        assert member is not None
        if buy is None or buy.state != "open" or buy.deadline_at <= now:
            return [Reply(deps.texts.t("groupbuy.closed", id=buy_id))]
        deposit = _deposit(deps, member, buy)
        joined = await repos.group_buys.join(buy_id, req.member_id, deposit, now)
        after = await repos.group_buys.get(buy_id)
    assert after is not None
    if not joined:
        return [Reply(deps.texts.t("groupbuy.already", item=buy.item, missing=after.missing))]
    deposit_line = (
        deps.texts.t("groupbuy.deposit", deposit=yuan_text(deposit)) if deposit else deps.texts.t("groupbuy.no_deposit")
    )
    key = "groupbuy.joined" if after.missing else "groupbuy.joined_reached"
    return [Reply(deps.texts.t(key, name=req.name, item=buy.item, missing=after.missing, joined=after.joined,
                               deposit=deposit_line))]  # fmt: skip


async def _status(req: Request, deps: Deps, args: str) -> list[Reply]:
    buy_id = required_id(deps, args, "groupbuy")
    async with deps.db.read() as repos:
        buy = await repos.group_buys.get(buy_id)
        people = await repos.group_buys.participants(buy_id) if buy else []
    if buy is None:
        return [Reply(deps.texts.t("groupbuy.unknown", id=buy_id))]
    lines = [post_text(deps, buy), deps.texts.t(f"groupbuy.state_{buy.state}")]
    mine = next((p for p in people if p.member_id == req.member_id), None)
    if mine is not None and mine.code:
        lines.append(deps.texts.t("groupbuy.your_code", code=mine.code))
    if req.is_staff:
        lines += [deps.texts.t("groupbuy.participant", name=p.display_name, deposit=yuan_text(p.deposit_fen),
                               code=p.code or "-") for p in people]  # fmt: skip
    codes = (mine is not None and bool(mine.code)) or (req.is_staff and any(p.code for p in people))
    return [Reply("\n".join(lines), secret=codes)]  # codes never where others can read them


async def _list(req: Request, deps: Deps, args: str) -> list[Reply]:
    async with deps.db.read() as repos:
        open_buys = await repos.group_buys.open_ones()
    if not open_buys:
        return [Reply(deps.texts.t("groupbuy.none"))]
    lines = [deps.texts.t("groupbuy.list_header")]
    lines += [deps.texts.t("groupbuy.list_line", id=b.id, item=b.item, group_price=yuan_text(b.group_price_fen),
                           missing=b.missing, deadline=deps.local_text(b.deadline_at)) for b in open_buys]  # fmt: skip
    return [Reply("\n".join(lines))]


async def _edit(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/groupbuy edit <id> price=… group_price=… min=… deadline=…: correct a group buy before anyone joined;
    its post follows (a live post) and its deadline is planned anew."""
    buy_id, options = id_and_options(deps, args, "groupbuy_edit", {"price", "group_price", "min", "deadline"})
    async with deps.db.read() as repos:
        found = await repos.group_buys.get(buy_id)
    if found is None or found.state != "open":
        return [Reply(deps.texts.t("groupbuy.unknown", id=buy_id))]
    price = parse_amount_fen(options["price"]) if "price" in options else found.price_fen
    group_price = parse_amount_fen(options["group_price"]) if "group_price" in options else found.group_price_fen
    minimum = parse_int(options["min"], 2, 10_000) if "min" in options else found.min_members
    deadline = parse_local_datetime(options["deadline"], deps.calendar.zone) if "deadline" in options else None
    if price is None or group_price is None or minimum is None or ("deadline" in options and (
        deadline is None or deadline[1]
    )):  # fmt: skip
        return deps.usage("groupbuy_edit")
    if group_price > price:
        return [Reply(deps.texts.t("groupbuy.price_order")), *deps.usage("groupbuy_edit")]
    deadline_at = int(deadline[0].timestamp()) if deadline else found.deadline_at
    if deadline_at <= deps.now_ts():
        return [Reply(deps.texts.t("common.in_past", when=deps.local_text(deadline_at))), *deps.usage("groupbuy_edit")]
    async with deps.db.transaction() as repos:
        if not await repos.group_buys.edit(buy_id, price, group_price, minimum, deadline_at, deps.now_ts()):
            return [Reply(deps.texts.t("groupbuy.edit_joined", id=buy_id))]
        buy = await repos.group_buys.get(buy_id)
        assert buy is not None
        subject = (SubjectKind.GROUP_BUY, buy_id)
        await unplan_pending(repos, deps, subject)  # the deadline's settlement
        when = datetime.fromtimestamp(deadline_at, deps.now().tzinfo)
        await plan_at(repos, deps, AnnouncementKind.GROUPBUY_CLOSE, "groups", post_text(deps, buy), when,
                      subject=subject)  # fmt: skip
    return [Reply(deps.texts.t("groupbuy.edited", id=buy_id, item=buy.item, price=yuan_text(buy.price_fen),
                               group_price=yuan_text(buy.group_price_fen), min=buy.min_members,
                               deadline=deps.local_text(buy.deadline_at)))]  # fmt: skip


async def _cancel(req: Request, deps: Deps, args: str) -> list[Reply]:
    buy_id = required_id(deps, args, "groupbuy")
    async with deps.db.transaction() as repos:
        buy = await repos.group_buys.get(buy_id)
        if buy is None or not await repos.group_buys.cancel(buy_id):
            return [Reply(deps.texts.t("groupbuy.unknown", id=buy_id))]
        await unplan_pending(repos, deps, (SubjectKind.GROUP_BUY, buy_id))
        notice = deps.texts.t("groupbuy.cancel_notice", item=buy.item)
        subject = (SubjectKind.GROUP_BUY, buy_id)
        await publish(repos, deps, AnnouncementKind.CANCEL, "groups", notice, subject=subject,
                      created_by=req.member_id)  # fmt: skip
        people = await repos.group_buys.participants(buy_id)
        await send_personal(repos, deps, AnnouncementKind.CANCEL, notice, [(p.member_id, notice) for p in people],
                            subject=subject)  # fmt: skip
    deps.outbox.wake()
    return [Reply(deps.texts.n("groupbuy.cancelled", buy.joined, id=buy_id, item=buy.item, joined=buy.joined))]


async def settle_at_deadline(repos: Repos, deps: Deps, ann: Announcement) -> Announcement:
    """Close the group buy of a deadline announcement: codes for all on success, a notice on failure.
    Returns the announcement with its group text set to the outcome."""
    buy_id = ann.subject_of(SubjectKind.GROUP_BUY)
    assert buy_id is not None
    await repos.group_buys.lock(buy_id)  # decide on what the lock sees: a join or a cancel in flight went first
    buy = await repos.group_buys.get(buy_id)
    if buy is None or buy.state != "open":
        return ann
    succeeded = buy.joined >= buy.min_members
    if not await repos.group_buys.settle(buy.id, succeeded):
        return ann
    people = await repos.group_buys.participants(buy.id)
    bodies = []
    for person in people:
        if succeeded:
            code = new_code("G")
            await repos.group_buys.set_code(buy.id, person.member_id, code)
            price = yuan_text(buy.group_price_fen)
            body = deps.texts.t("groupbuy.success_personal", item=buy.item, group_price=price, code=code)
            bodies.append((person.member_id, body))
        else:
            bodies.append((person.member_id, deps.texts.t("groupbuy.failure_personal", item=buy.item)))
    key = "groupbuy.success" if succeeded else "groupbuy.failure"
    text = deps.texts.t(key, id=buy.id, item=buy.item, joined=buy.joined, min=buy.min_members,
                        group_price=yuan_text(buy.group_price_fen))  # fmt: skip
    await send_personal(repos, deps, AnnouncementKind.GROUPBUY_RESULT, text, bodies,
                        subject=(SubjectKind.GROUP_BUY, buy.id))  # fmt: skip
    await repos.announcements.set_text(ann.id, text)
    return replace(ann, text=text)


DUE_RULES = {AnnouncementKind.GROUPBUY_CLOSE: DueRule(prepare=settle_at_deadline, deadline=True)}


async def live_posts(deps: Deps) -> list[LivePost]:
    """(announcement ids, current text, buttons) of the group posts of open group buys."""
    async with deps.db.read() as repos:
        posts = []
        for buy in await repos.group_buys.open_ones():
            ids = await repos.announcements.of_subject(AnnouncementKind.GROUPBUY, SubjectKind.GROUP_BUY, buy.id)
            posts.append(live_post(ids, post_text(deps, buy), (join_button(deps, buy.id),)))
    return posts


groupbuy = Subcommands(
    "groupbuy",
    {"add": _add, "edit": _edit, "join": _join, "status": _status, "cancel": _cancel, "list": _list},
    missing=_list,
)
"""/groupbuy [list] | join | status; staff: add | edit | cancel (`STAFF_SUBCOMMANDS`, checked by the
dispatcher)."""
