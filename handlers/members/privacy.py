"""A member's own data: what the bot keeps about them (/me shows it) and erasing it (/forget).

/forget explains what erasing means and asks for a confirmation (a button or 确认删除); the confirmed request
is stored, staff are told, and the member may withdraw it (/forget cancel) until staff confirm it with
``/forget confirm <member number>``. Erasing keeps the member's row and ledger under a placeholder name
(every balance still equals its ledger, the statistics still add up) and removes what names the person.
"""

from __future__ import annotations

from handlers.core.command import Refusal, required_id
from handlers.core.deps import Deps, Request
from handlers.core.messages import Button, Reply
from handlers.core.subcommands import Subcommands
from handlers.shared.broadcast import notify_staff
from storage.members import Member
from storage.repos import Repos

CONFIRM_BUTTON = "v1:forget_yes:"


async def stored_data(repos: Repos, deps: Deps, member: Member) -> str:
    """The lines of /me that list what the bot keeps about the member, and how to have it erased."""
    texts = deps.texts
    lines = [texts.t("me.stored_header")]
    for identity in await repos.members.identities(member.id):
        handle = texts.t("me.username", username=identity.username) if identity.username else ""
        lines.append(texts.t("me.identity", channel=identity.channel, name=identity.display_name, username=handle,
                             id=identity.external_id))  # the id staff settings (staff.telegram) are keyed by
    phone = await repos.members.phone_of(member.id)
    lines.append(texts.t("me.phone", phone=phone or texts.t("me.no_phone")))
    done = await repos.members.activity(member.id)
    lines.append(texts.t("me.activity", checkins=done.checkins, purchases=done.purchases, answers=done.answers))
    key = "me.erase_pending" if await repos.privacy.is_pending(member.id) else "me.erase_hint"
    lines.append(texts.t(key))
    return "\n".join(lines)


async def _explain(req: Request, deps: Deps, rest: str) -> list[Reply]:
    async with deps.db.read() as repos:
        pending = await repos.privacy.is_pending(req.member_id)
    if pending:
        return [Reply(deps.texts.t("forget.already"), personal=True)]
    button = Button(deps.texts.t("forget.confirm_button"), CONFIRM_BUTTON)
    return [Reply(deps.texts.t("forget.explain"), buttons=(button,), personal=True)]


async def confirm_request(req: Request, deps: Deps) -> list[Reply]:
    """The member's confirmation (the button or 确认删除): the request is stored and staff are told."""
    texts = deps.texts
    async with deps.db.transaction() as repos:
        if not await repos.privacy.ask(req.member_id, deps.now_ts()):
            return [Reply(texts.t("forget.already"), personal=True)]
        await notify_staff(repos, deps, texts.t("forget.staff_notice", id=req.member_id, name=req.name))
    deps.outbox.wake()
    return [Reply(texts.t("forget.asked"), personal=True)]


async def _withdraw(req: Request, deps: Deps, rest: str) -> list[Reply]:
    async with deps.db.transaction() as repos:
        withdrawn = await repos.privacy.withdraw(req.member_id, deps.now_ts())
    return [Reply(deps.texts.t("forget.withdrawn" if withdrawn else "forget.nothing_to_withdraw"), personal=True)]


async def _confirm(req: Request, deps: Deps, rest: str) -> list[Reply]:
    """Staff: erase the personal data of a member who asked for it (and of the accounts linked into theirs)."""
    texts = deps.texts
    member_id = required_id(deps, rest, "forget_confirm")
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        if not await repos.privacy.settle(member_id, req.member_id, now):
            raise Refusal(Reply(texts.t("forget.not_asked", id=member_id)))
        ids = [member_id, *await repos.privacy.linked_into(member_id)]
        await repos.privacy.erase({i: texts.t("forget.placeholder", id=i) for i in ids}, now)
    return [Reply(texts.t("forget.erased", id=member_id))]


async def _list(req: Request, deps: Deps, rest: str) -> list[Reply]:
    texts = deps.texts
    async with deps.db.read() as repos:
        requests = await repos.privacy.pending()
    if not requests:
        return [Reply(texts.t("forget.none_pending"))]
    lines = [texts.t("forget.pending_header")]
    for request in requests:
        lines.append(texts.t("forget.pending_line", id=request.member_id, name=request.display_name,
                             asked=deps.local_text(request.asked_at)))  # fmt: skip
    return [Reply("\n".join(lines))]


forget = Subcommands(
    "forget",
    {"cancel": _withdraw, "撤回": _withdraw, "confirm": _confirm, "确认": _confirm, "list": _list, "列表": _list},
    missing=_explain,
)
STAFF_SUBCOMMANDS = ("confirm", "确认", "list", "列表")
