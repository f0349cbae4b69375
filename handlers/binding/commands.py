"""One member, two channels: `/bind` in a private chat gives a short-lived code; sending `绑定 CODE` (or
`/bind CODE`) privately on another channel links the identities. The member who sent the code is merged into
the member who asked for it, in one transaction: rows move over, and the ledger records the points moving
across.

A code is a key to the asker's points, so: it is given and taken only in private chats, links only an
identity on another channel than the one it was asked on (never a second account on the same platform),
works once and for `binding.code_minutes`, and wrong codes are limited per member and for everyone together
(counted in the database, so a burst of guesses is stopped as surely as a slow one). The asker is told on
every channel they have when their code links an account. `/unlink` gives one identity a member of its own
again and never takes a member's last identity, so points, purchases and a birthday always stay reachable.
"""

from __future__ import annotations

import re

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import split_first
from handlers.core.targets import TargetArgs, resolve_target
from handlers.referrals.commands import follow_merge, paid_between, take_back
from handlers.shared.broadcast import send_personal
from handlers.shared.codes import ALPHABET, new_code, normalise
from handlers.shared.tiers import member_tier
from storage.members import MemberIdentity
from storage.repos import Repos

CODE_PREFIX = "B"
CODE_LENGTH = 8
"""31^8 ≈ 8.5 * 10^11 codes: with the limit on wrong codes, guessing a live one is out of reach."""
_CODE = re.compile(rf"{CODE_PREFIX}-?([{ALPHABET}]{{{CODE_LENGTH}}})")
_CODE_ATTEMPTS = 8
ALL_TRIES = "all"
"""The key of everyone's budget of wrong codes (binding and phone-claim codes share it)."""


def _typed_code(text: str) -> str:
    """A code as a member may type it ('b-7kq2 xm3p', 'B7KQ2XM3P', '7KQ2XM3P') in the form it is stored."""
    cleaned = normalise(text)
    match = _CODE.fullmatch(cleaned) or re.fullmatch(rf"([{ALPHABET}]{{{CODE_LENGTH}}})", cleaned)
    return f"{CODE_PREFIX}-{match.group(1)}" if match else cleaned[:20]


def channel_name(deps: Deps, channel: str) -> str:
    key = f"bind.channel.{channel}"
    return deps.texts.t(key) if deps.texts.has(key) else channel


async def bind(req: Request, deps: Deps) -> list[Reply]:
    if req.msg.is_group:
        text = deps.texts.t("bind.private_only")
        if req.args.strip():  # a code shown in a group is no secret any more
            async with deps.db.transaction() as repos:
                await repos.channel_state.drop_bind_code(_typed_code(req.args))
            text += "\n" + deps.texts.t("bind.code_dropped")
        return [Reply(text)]
    if not req.args.strip():
        return await _issue(req, deps)
    return await _link(req, deps, _typed_code(req.args))


async def _issue(req: Request, deps: Deps) -> list[Reply]:
    minutes = deps.rules.binding.code_minutes
    now = deps.now_ts()
    sender = req.msg.sender
    async with deps.db.transaction() as repos:
        for _ in range(_CODE_ATTEMPTS):  # a clash with another live code is rare; draw again
            code = new_code(CODE_PREFIX, CODE_LENGTH)
            if await repos.channel_state.create_bind_code(
                code, req.member_id, sender.channel, sender.external_id, now, now + minutes * 60
            ):
                break
        else:
            raise RuntimeError("could not find a free binding code")
    return [Reply(deps.texts.n("bind.code", minutes, code=code), secret=True)]


async def take_try(repos: Repos, deps: Deps, req: Request) -> int | None:
    """Count this code against the sender's and everyone's wrong codes; None if it may be tried, else when
    trying is possible again (unix seconds)."""
    rules = deps.rules.binding
    now, window = deps.now_ts(), rules.window_minutes * 60
    state = repos.channel_state
    mine = f"member:{req.member_id}"
    if not await state.take_bind_try(mine, rules.failures_per_member, now, window):
        return await state.bind_tries_reopen_at(mine, window) or now + window
    if not await state.take_bind_try(ALL_TRIES, rules.failures_overall, now, window):
        await state.give_back_bind_try(mine)
        return await state.bind_tries_reopen_at(ALL_TRIES, window) or now + window
    return None


async def _link(req: Request, deps: Deps, code: str) -> list[Reply]:
    texts = deps.texts
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        state = repos.channel_state
        reopens = await take_try(repos, deps, req)
        if reopens is not None:
            minutes = max(1, -(-(reopens - now) // 60))
            return [Reply(texts.n("bind.too_many", minutes))]
        issued = await state.use_bind_code(code, req.msg.channel, now)
        if issued is None:  # the try stays counted as a wrong code
            live = await state.live_bind_code(code, now)
            if live is not None and live.channel == req.msg.channel:
                return [Reply(texts.t("bind.other_platform", channel=channel_name(deps, live.channel)))]
            return [Reply(texts.t("bind.unknown", code=code))]
        await state.give_back_bind_try(f"member:{req.member_id}")
        await state.give_back_bind_try(ALL_TRIES)
        if issued.member_id == req.member_id:
            return [Reply(texts.t("bind.same"))]
        source = await repos.members.get(req.member_id)
        target = await repos.members.get(issued.member_id)
        assert source is not None and target is not None
        source_ids, target_ids = await repos.members.identities(source.id), await repos.members.identities(target.id)
        taken = sorted({i.channel for i in source_ids} & {i.channel for i in target_ids})
        if taken:  # one account per platform: a second one would make /unlink ambiguous
            return [Reply(texts.t("bind.channel_taken", channel=channel_name(deps, taken[0])))]
        paid = await paid_between(repos, source.id, target.id)
        owed = sum(r.referrer_points + r.referred_points for r in paid)
        if owed > source.balance + target.balance:
            return [Reply(texts.n("bind.reward_spent", owed))]

        # The asker hears of it on their own identities (queued before the sender's identity moves over).
        channels = texts.join(channel_name(deps, i.channel) for i in source_ids)
        notice = texts.t("bind.linked_notice", name=req.name, channel=channels, when=deps.local_text(now))
        queued = await send_personal(repos, deps, "binding", notice, [(target.id, notice)])

        await follow_merge(repos, deps, source.id, target.id)
        await merge_members(repos, deps, source.id, target.id)
        withdrawn = await take_back(repos, deps, target.id, paid)
        merged = await repos.members.get(target.id)
    if queued:
        deps.outbox.wake()
    assert merged is not None
    tier = deps.tier_name(member_tier(deps, merged))
    text = texts.n("bind.done", merged.balance, name=merged.display_name, tier=tier)
    if withdrawn:
        text += "\n" + texts.n("bind.invite_withdrawn", withdrawn)
    return [Reply(text)]


async def merge_members(repos: Repos, deps: Deps, source_id: int, target_id: int) -> None:
    """Move everything of `source_id` to `target_id`: points through the ledger, rows, identities."""
    now = deps.now_ts()
    source = await repos.members.get(source_id)
    assert source is not None
    key = f"merge:{source_id}:{target_id}"
    if source.balance:
        # The ledger is append-only: the points move across as two recorded entries.
        await repos.ledger.append(source_id, -source.balance, "merge", f"{key}:out", now,
                                  note=deps.texts.t("bind.note_out"), earned_delta=-source.earned)  # fmt: skip
        await repos.ledger.append(target_id, source.balance, "merge", f"{key}:in", now,
                                  note=deps.texts.t("bind.note_in"), earned_delta=source.earned)  # fmt: skip
    elif source.earned:
        await repos.channel_state.move_earned(source_id, target_id)
    await repos.tier_reviews.move(source_id, target_id)
    await repos.channel_state.drop_bind_codes_of(source_id, target_id)
    await repos.channel_state.move_member_rows(source_id, target_id)
    await repos.channel_state.mark_merged(source_id, target_id)


async def unlink(req: Request, deps: Deps) -> list[Reply]:
    """Staff: /unlink <member> <channel> [account] gives one identity of that member a member of its own
    again (with nothing of the member's); the member keeps everything on the identities that remain."""
    texts = deps.texts
    target_text, rest = split_first(req.args)
    channel, account = split_first(rest)
    channel, account = channel.strip().lower(), account.strip().lstrip("@").lower()
    if not target_text or not channel:
        return deps.usage("unlink")
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        member = await resolve_target(repos, req, TargetArgs(target_text, ""))
        if member is None:
            return [Reply(texts.t("common.member_not_found", target=target_text))]
        identities = await repos.members.identities(member.id)
        on_channel = [i for i in identities if i.channel == channel]
        if account:
            on_channel = [i for i in on_channel if account in (i.external_id.lower(), (i.username or ""))]
        shown = channel_name(deps, channel)
        if not on_channel:
            return [Reply(texts.t("unlink.nothing", name=member.display_name, channel=shown))]
        if len(on_channel) > 1:
            accounts = texts.join(_account(i) for i in on_channel)
            return [Reply(texts.t("unlink.which", name=member.display_name, channel=shown, accounts=accounts))]
        if len(identities) < 2:
            return [Reply(texts.t("unlink.last", name=member.display_name, channel=shown))]
        (identity,) = on_channel
        fresh = await repos.members.create_bare(identity.display_name or member.display_name, now, member.id)
        moved = await repos.channel_state.detach_identity(identity.channel, identity.external_id, member.id, fresh)
        assert moved, "the member keeps another identity"
    return [Reply(texts.t("unlink.done", name=member.display_name, channel=shown, id=fresh))]


def _account(identity: MemberIdentity) -> str:
    return f"{identity.external_id} (@{identity.username})" if identity.username else identity.external_id
