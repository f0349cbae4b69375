"""Staff bookings: /award and /deduct points, /purchase records a purchase that earns points.

Each booking's idempotency key comes from the inbound message, so a re-delivered update books nothing.
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from handlers import referrals
from handlers.deps import Deps, Request
from handlers.messages import Reply
from handlers.parsing import parse_amount_fen, parse_points, split_first, yuan_text
from handlers.polls import plan_purchase_followup
from handlers.targets import TargetArgs, resolve_target, split_target
from handlers.tiers import tier_up_replies
from storage.ledger import InsufficientPoints

_NOTE_LIMIT = 500


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
    except InsufficientPoints:
        return [Reply(texts.t("deduct.insufficient", name=member.display_name, balance=member.balance, points=amount))]
    replies = [Reply(texts.t(f"{command}.done", name=member.display_name, points=amount, balance=booking.balance))]
    if booking.booked and sign > 0:
        replies += tier_up_replies(deps, member.display_name, booking.earned - amount, booking.earned)
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
        balance, total_earned = member.balance, member.earned
        if purchase_id is not None:
            await plan_purchase_followup(repos, deps, member.id)
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
        referral_replies = await referrals.on_purchase(repos, deps, member.id, purchase_id)
    replies = [
        Reply(texts.t("purchase.done", name=member.display_name, amount=yuan_text(fen), points=earned, balance=balance))
    ]
    if purchase_id is not None:
        replies += tier_up_replies(deps, member.display_name, total_earned - earned, total_earned)
    return replies + referral_replies
