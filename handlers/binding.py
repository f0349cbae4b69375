"""One member, two channels: `/bind` gives a short-lived code on one channel; sending `绑定 CODE` (or
`/bind CODE`) on the other links the identities. The member who sent the code is merged into the member
who issued it, in one transaction: rows move over, and the ledger records the points moving across.
"""

from __future__ import annotations

from datetime import timedelta

from handlers.codes import new_code, normalise
from handlers.deps import Deps, Request
from handlers.messages import Reply
from handlers.parsing import split_first
from handlers.targets import TargetArgs, resolve_target

CODE_LIFETIME = timedelta(minutes=10)


async def bind(req: Request, deps: Deps) -> list[Reply]:
    if not req.args.strip():
        code = new_code("B", 6)
        expires = deps.now() + CODE_LIFETIME
        async with deps.db.transaction() as repos:
            await repos.channel_state.create_bind_code(code, req.member_id, int(expires.timestamp()))
        return [Reply(deps.texts.t("bind.code", code=code, minutes=int(CODE_LIFETIME.total_seconds() // 60)),
                      secret=True)]
    code = normalise(req.args)
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        target_id = await repos.channel_state.use_bind_code(code, now)
        if target_id is None:
            return [Reply(deps.texts.t("bind.unknown", code=code))]
        if target_id == req.member_id:
            return [Reply(deps.texts.t("bind.same"))]
        source = await repos.members.get(req.member_id)
        target = await repos.members.get(target_id)
        assert source is not None and target is not None
        key = f"merge:{source.id}:{target.id}"
        if source.balance:
            # The ledger is append-only: the points move across as two recorded entries.
            await repos.ledger.append(source.id, -source.balance, "merge", f"{key}:out", now,
                                      note=f"-> #{target.id}", earned_delta=-source.earned)  # fmt: skip
            await repos.ledger.append(target.id, source.balance, "merge", f"{key}:in", now,
                                      note=f"<- #{source.id}", earned_delta=source.earned)  # fmt: skip
        elif source.earned:
            await repos.channel_state.move_earned(source.id, target.id)
        await repos.channel_state.move_member_rows(source.id, target.id)
        await repos.channel_state.mark_merged(source.id, target.id)
        merged = await repos.members.get(target.id)
    assert merged is not None
    tier = deps.tier_name(deps.rules.tier_for(merged.earned))
    return [Reply(deps.texts.t("bind.done", name=merged.display_name, balance=merged.balance, tier=tier))]


async def unlink(req: Request, deps: Deps) -> list[Reply]:
    """Staff: /unlink <member> <channel> gives that channel's identity a member of its own again."""
    target_text, channel = split_first(req.args)
    channel = channel.strip().lower()
    if not target_text or channel not in ("telegram", "wechat", "console"):
        return deps.usage("unlink")
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        member = await resolve_target(repos, req, TargetArgs(target_text, ""))
        if member is None:
            return [Reply(deps.texts.t("common.member_not_found", target=target_text))]
        identities = await repos.members.identities(member.id)
        if len(identities) < 2 or not any(i.channel == channel for i in identities):
            return [Reply(deps.texts.t("unlink.nothing", name=member.display_name, channel=channel))]
        fresh = await repos.members.create_bare(member.display_name, now)
        await repos.channel_state.detach_identity(channel, member.id, fresh)
    return [Reply(deps.texts.t("unlink.done", name=member.display_name, channel=channel, id=fresh))]
