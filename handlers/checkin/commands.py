"""Daily check-in (签到): once per business day in the shop's zone, with a streak bonus."""

from __future__ import annotations

from datetime import timedelta

from handlers.checkin.board import board_chat
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.shared.broadcast import countdown_text
from handlers.shared.tiers import tier_discount, tier_points_of, tier_up_replies


async def checkin(req: Request, deps: Deps) -> list[Reply]:
    now = deps.now()
    day = deps.calendar.business_day(now)
    rules = deps.rules.checkin
    async with deps.db.transaction() as repos:
        done = await repos.checkins.record(
            req.member_id,
            day.isoformat(),
            (day - timedelta(days=1)).isoformat(),
            int(now.timestamp()),
            rules.base_points,
            rules.streak_bonus,
            rules.streak_bonus_cap,
            chat=board_chat(req.msg) if req.msg.is_group else None,
        )
        if done is None:
            existing = await repos.checkins.on_day(req.member_id, day.isoformat())
        else:
            booking = await repos.ledger.append(
                req.member_id,
                done.points,
                "checkin",
                f"checkin:{req.member_id}:{day.isoformat()}",
                int(now.timestamp()),
                ref=day.isoformat(),
            )
            discount = await tier_discount(repos, deps, req.member_id)
    # In a group with a board the board confirms it (a button press shows the text as a toast).
    on_board = req.msg.is_group and rules.board.enabled
    if done is None:
        opens = deps.calendar.day_start(day + timedelta(days=1))
        return [
            Reply(
                deps.texts.t(
                    "checkin.already",
                    streak=existing.streak if existing else 1,
                    next_open=deps.texts.t(
                        "common.datetime", date=opens.strftime("%Y-%m-%d"), time=opens.strftime("%H:%M")
                    ),
                    wait=countdown_text(deps, opens - now),
                ),
                personal=on_board,
                board=on_board,
            )
        ]
    tier = deps.rules.tier_for(tier_points_of(deps, booking.earned, discount))
    replies = [
        Reply(
            deps.texts.n(
                "checkin.done",
                done.points,
                points=done.points,
                streak=done.streak,
                balance=booking.balance,
                tier=deps.tier_name(tier),
            ),
            board=on_board,
        )
    ]
    return replies + tier_up_replies(deps, req.name, booking.earned - done.points, booking.earned, discount)
