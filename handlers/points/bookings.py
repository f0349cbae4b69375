"""Staff bookings: /award and /deduct points, /purchase records a purchase that earns points.

The answers name the award's ledger entry and the purchase, the numbers `/void` (handlers.points.voids) takes.

Each booking's idempotency key comes from the inbound message, so a re-delivered update books nothing.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import parse_amount_fen, parse_points, split_first, yuan_text
from handlers.core.targets import TargetArgs, resolve_target, split_target
from handlers.polls.commands import plan_purchase_followup
from handlers.referrals import commands as referrals
from handlers.shared.broadcast import send_personal
from handlers.shared.tiers import tier_points_of, tier_up_replies
from storage.ledger import InsufficientPoints
from storage.members import Member
from storage.repos import Repos

_NOTE_LIMIT = 500


async def tell_member(repos: Repos, deps: Deps, req: Request, member: Member, text: str) -> bool:
    """Tell the member of a booking made where they may not read its answer (a private or staff chat, or a
    group of another channel): privately when the bot may message them, else in the VIP groups of their
    channels, naming them. Returns whether anything was queued."""
    identities = await repos.members.identities(member.id)
    msg = req.msg
    if msg.is_group and any(i.channel == msg.channel for i in identities):
        if msg.chat_id in await repos.chats.of_channel(msg.channel):
            return False  # said in their VIP group: the answer there names them
    if await repos.members.can_message(member.id):
        if await send_personal(repos, deps, "points", text, [(member.id, text)]):
            return True
    now = deps.now_ts()
    ann_id: int | None = None
    for identity in identities:
        if identity.channel not in deps.outbox.channels():
            continue
        mention = f"@{identity.username}" if identity.username else member.display_name
        chat_text = deps.texts.t("booking_notice.in_group", mention=mention, text=text)
        for chat_id in await repos.chats.of_channel(identity.channel):
            if ann_id is None:
                ann_id = await repos.announcements.create("points", "personal", text, now, now)
            await repos.tickets.queue_chat(ann_id, identity.channel, chat_id, chat_text)
    if ann_id is None:
        return False
    await repos.announcements.settle(ann_id, "queued", now)
    return True


def booking_notice(
    deps: Deps, key: str, count: int, before: int, after: int, note: str = "", *, discount: int = 0, **values: object
) -> str:
    """The member's own account of a booking, with the tier they reached or fell to, if it changed (lifetime
    points `before` and `after`, less `discount`, the points the tier review set aside)."""
    note_text = deps.texts.t("booking_notice.note", note=note) if note else ""
    lines = [deps.texts.n(f"booking_notice.{key}", count, note=note_text, **values)]
    old = deps.rules.tier_for(tier_points_of(deps, before, discount))
    new = deps.rules.tier_for(tier_points_of(deps, after, discount))
    if new.min_points != old.min_points:
        change = "booking_notice.tier_up" if new.min_points > old.min_points else "booking_notice.tier_down"
        lines.append(deps.texts.t(change, tier=deps.tier_name(new)))
    return "\n".join(lines)


def _not_found(deps: Deps, target: TargetArgs) -> list[Reply]:
    shown = target.target or "?"
    return [Reply(deps.texts.t("common.member_not_found", target=shown))]


async def award(req: Request, deps: Deps) -> list[Reply]:
    return await _book_points(req, deps, "award", sign=1)


async def deduct(req: Request, deps: Deps) -> list[Reply]:
    return await _book_points(req, deps, "deduct", sign=-1)


async def _book_points(req: Request, deps: Deps, command: str, sign: int) -> list[Reply]:
    texts = deps.texts
    target = split_target(req)
    if target is None:
        return deps.usage(command)
    amount_text, note = split_first(target.rest)
    if not amount_text:
        return deps.usage(command)
    maximum = deps.rules.points.max_award
    amount = parse_points(amount_text, maximum)
    if amount is None:
        return [Reply(texts.t("points_arg.invalid", value=amount_text[:20], max=maximum)), *deps.usage(command)]
    note = note[:_NOTE_LIMIT]
    now = deps.now_ts()
    try:
        async with deps.db.transaction() as repos:
            member = await resolve_target(repos, req, target)
            if member is None:
                return _not_found(deps, target)
            # A deduction is a correction: it also lowers lifetime earned points (never below 0).
            booking = await repos.ledger.append(
                member.id,
                sign * amount,
                command,
                f"{command}:{req.msg.key}",
                now,
                note=note,
                earned_delta=sign * amount,
                actor_id=req.member_id,
            )
            told = False
            if booking.booked:
                balance = booking.balance
                notice = booking_notice(deps, command, amount, member.earned, booking.earned, note, balance=balance,
                                        discount=member.discount)  # fmt: skip
                told = await tell_member(repos, deps, req, member, notice)
    except InsufficientPoints:
        return [Reply(texts.n("deduct.insufficient", member.balance, name=member.display_name, points=amount))]
    if told:
        deps.outbox.wake()
    replies = [Reply(texts.n(f"{command}.done", amount, name=member.display_name, balance=booking.balance,
                             entry=booking.entry_id))]  # fmt: skip
    if booking.booked and sign > 0:
        replies += tier_up_replies(deps, member.display_name, booking.earned - amount, booking.earned, member.discount)
    return replies


async def purchase(req: Request, deps: Deps) -> list[Reply]:
    texts = deps.texts
    target = split_target(req)
    if target is None:
        return deps.usage("purchase")
    amount_text, note = split_first(target.rest)
    if not amount_text:
        return deps.usage("purchase")
    fen = parse_amount_fen(amount_text)
    if fen is None:
        return [Reply(texts.t("purchase.invalid_amount", value=amount_text[:20])), *deps.usage("purchase")]
    note = note[:_NOTE_LIMIT]
    earned = int((Decimal(fen) / 100 * deps.rules.points.per_yuan).to_integral_value(ROUND_FLOOR))
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        member = await resolve_target(repos, req, target)
        if member is None:
            return _not_found(deps, target)
        purchase_id = await repos.purchases.record(
            member.id, fen, note, f"purchase:{req.msg.key}", now, recorded_by=req.member_id
        )
        shown_id = purchase_id or await repos.purchases.id_for(f"purchase:{req.msg.key}")
        balance, total_earned = member.balance, member.earned
        if purchase_id is not None:
            await plan_purchase_followup(repos, deps, member.id, now)
        if purchase_id is not None and earned > 0:
            booking = await repos.ledger.append(
                member.id,
                earned,
                "purchase",
                f"purchase:{purchase_id}",
                now,
                note=note,
                ref=str(purchase_id),
                actor_id=req.member_id,
            )
            balance, total_earned = booking.balance, booking.earned
        told = False
        if purchase_id is not None:
            notice = booking_notice(deps, "purchase", earned, member.earned, total_earned, amount=yuan_text(fen),
                                    balance=balance, discount=member.discount)  # fmt: skip
            told = await tell_member(repos, deps, req, member, notice)
        referral_replies = await referrals.on_purchase(repos, deps, member.id, purchase_id)
    if told:
        deps.outbox.wake()
    replies = [
        Reply(
            texts.n(
                "purchase.done", earned, name=member.display_name, amount=yuan_text(fen), balance=balance, id=shown_id
            )
        )
    ]
    if purchase_id is not None:
        replies += tier_up_replies(deps, member.display_name, total_earned - earned, total_earned, member.discount)
    return replies + referral_replies
