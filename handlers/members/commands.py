"""Membership: joining (/start), the profile (/me, with what the bot keeps about the member) and the birthday
(/birthday MM-DD)."""

from __future__ import annotations

from datetime import date

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import parse_month_day, yuan_text
from handlers.members.privacy import stored_data
from handlers.shared.broadcast import span_text
from handlers.shared.tiers import member_tier


async def start(req: Request, deps: Deps) -> list[Reply]:
    key = "start.welcome" if req.new_member else "start.welcome_back"
    return [Reply(deps.texts.t(key, name=req.name))]


async def me(req: Request, deps: Deps) -> list[Reply]:
    texts = deps.texts
    day = deps.calendar.business_day(deps.now())
    async with deps.db.read() as repos:
        member = await repos.members.get(req.member_id)
        latest = await repos.checkins.latest(req.member_id)
        bought = await repos.purchases.summary(req.member_id)
        assert member is not None
        stored = await stored_data(repos, deps, member)
    streak = 0
    if latest is not None and (day - date.fromisoformat(latest.day)).days <= 1:
        streak = latest.streak
    birthday = member.birthday or texts.t("me.no_birthday")
    handle = req.msg.sender.username
    username = texts.t("me.username", username=handle) if handle else ""
    return [
        Reply(
            texts.t(
                "me.profile",
                name=req.name,
                username=username,
                id=member.id,
                joined=deps.local_text(member.joined_at, with_time=False),
                birthday=birthday,
                balance=member.balance,
                earned=member.earned,
                tier=deps.tier_name(member_tier(deps, member)),
                streak=span_text(deps, streak, "days"),
                purchases=bought.count,
                total=yuan_text(bought.total_fen),
            )
            + "\n\n"
            + stored,
            personal=True,
        )
    ]


async def birthday(req: Request, deps: Deps) -> list[Reply]:
    texts = deps.texts
    if not req.args:
        return [Reply(texts.t("common.usage", usage=texts.t("birthday.usage")))]
    parsed = parse_month_day(req.args)
    if parsed is None:
        return [
            Reply(texts.t("birthday.invalid", value=req.args[:20])),
            Reply(texts.t("common.usage", usage=texts.t("birthday.usage")), quote=False),
        ]
    month, day = parsed
    async with deps.db.transaction() as repos:
        await repos.members.set_birthday(req.member_id, f"{month:02d}-{day:02d}", deps.now_ts())
    return [Reply(texts.t("birthday.saved", month=month, day=day))]
