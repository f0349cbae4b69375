"""The feedback desk (投诉建议): members open tickets and are promised an answer in time; staff are told, reply,
list and close tickets; the member rates the handling once; unanswered tickets are escalated to staff once.
"""

from __future__ import annotations

import re
from datetime import timedelta

from handlers.core.command import required_id
from handlers.core.deps import Deps, Request
from handlers.core.kinds import AnnouncementKind
from handlers.core.messages import Button, Reply
from handlers.core.parsing import parse_button, parse_id, split_first
from handlers.shared.broadcast import duration_text, notify_staff, send_personal, span_text, stored_buttons
from storage.repos import Repos
from storage.tickets import Ticket

TEXT_LIMIT = 2000
"""Longest feedback or staff reply kept, in characters; a notice with it still fits one chat message."""
PREVIEW = 60
LIST_LIMIT = 30
KEYWORD_KINDS = {"投诉": "complaint", "建议": "suggestion", "反馈": "feedback"}


_SEPARATOR = re.compile(r"^[\s:：]+")
"""What may stand between a keyword and the text: spaces and colons (反馈：…, 投诉: …)."""


def _kind_and_text(req: Request) -> tuple[str, str]:
    """The ticket's kind from the keyword it was sent with (投诉, 建议, 反馈 — also after /feedback), and the
    text without the separator after the keyword."""
    sent = req.msg.text.strip()
    if not sent.startswith("/"):
        for keyword, kind in KEYWORD_KINDS.items():
            if sent.startswith(keyword):
                return kind, _SEPARATOR.sub("", req.args)
    args = _SEPARATOR.sub("", req.args)
    for keyword, kind in KEYWORD_KINDS.items():
        rest = args[len(keyword) :]
        if args.startswith(keyword) and (not rest or _SEPARATOR.match(rest)):
            return kind, _SEPARATOR.sub("", rest)
    return "feedback", args.strip()


def _kind_name(deps: Deps, kind: str) -> str:
    return deps.texts.t(f"feedback.kind_{kind}")


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"


def _too_long(deps: Deps, text: str) -> list[Reply]:
    return [Reply(deps.texts.n("feedback.too_long", len(text), limit=TEXT_LIMIT))]


def _answer_within(deps: Deps) -> str:
    """The promised answer time as the locale says it: '24 hours', '1 hour', or '30 minutes' for half an hour."""
    minutes = max(round(deps.rules.feedback.answer_within / timedelta(minutes=1)), 1)
    if minutes % 60 == 0:
        return span_text(deps, minutes // 60, "hours")
    return span_text(deps, minutes, "minutes")


async def _mention(repos: Repos, ticket: Ticket) -> str:
    """How to name the member in the chat the ticket came from: @username when known, else their name."""
    for identity in await repos.members.identities(ticket.member_id):
        if identity.channel == ticket.channel and identity.username:
            return f"@{identity.username}"
    return ticket.member_name


async def _tell_member(
    repos: Repos,
    deps: Deps,
    ticket: Ticket,
    private_text: str,
    chat_text: str,
    buttons: tuple[Button, ...] = (),
) -> str:
    """Queue a message to the ticket's member: privately when possible, else in the chat the ticket was
    opened in. Returns how: 'private', 'chat', or 'none' when neither can be reached now."""
    if await repos.members.can_message(ticket.member_id):
        sent = await send_personal(repos, deps, AnnouncementKind.FEEDBACK, private_text,
                                   [(ticket.member_id, private_text)], buttons=buttons)  # fmt: skip
        if sent:
            return "private"
    if ticket.channel not in deps.outbox.channels():
        return "none"
    now = deps.now_ts()
    ann_id = await repos.announcements.create(AnnouncementKind.FEEDBACK, "personal", chat_text, now, now,
                                              buttons=stored_buttons(buttons))  # fmt: skip
    await repos.tickets.queue_chat(ann_id, ticket.channel, ticket.chat_id, chat_text)
    await repos.announcements.settle(ann_id, "queued", now)
    return "chat"


# --- members ---------------------------------------------------------------------------------------
async def feedback(req: Request, deps: Deps) -> list[Reply]:
    """Open a ticket: /feedback <text>, or 投诉 / 建议 / 反馈 <text>."""
    kind, text = _kind_and_text(req)
    if not text:
        return deps.usage("feedback")
    if len(text) > TEXT_LIMIT:
        return _too_long(deps, text)
    now = deps.now_ts()
    rules = deps.rules.feedback
    answer_by = now + int(rules.answer_within.total_seconds())
    msg = req.msg
    username = f" (@{msg.sender.username})" if msg.sender.username else ""
    where = deps.texts.t("feedback.where_group" if msg.is_group else "feedback.where_private")
    async with deps.db.transaction() as repos:
        ticket_id = await repos.tickets.open(req.member_id, kind, msg.channel, msg.chat_id, msg.is_group, text,
                                             now, answer_by)  # fmt: skip
        notice = deps.texts.t("feedback.staff_notice", id=ticket_id, kind=_kind_name(deps, kind), name=req.name,
                              username=username, where=where, text=text, when=deps.local_text(answer_by))  # fmt: skip
        await notify_staff(repos, deps, notice)
    deps.outbox.wake()
    return [
        Reply(deps.texts.t("feedback.received", id=ticket_id, kind=_kind_name(deps, kind),
                           within=_answer_within(deps), when=deps.local_text(answer_by)))
    ]  # fmt: skip


async def rate_ticket(req: Request, deps: Deps) -> list[Reply]:
    """/rate_ticket <ticket> <1-5>, usually from the buttons sent when the ticket was closed."""
    head, rest = split_first(req.args)
    ticket_id = parse_id(head)
    if ticket_id is None or rest not in ("1", "2", "3", "4", "5"):
        return deps.usage("rate_ticket")
    rating = int(rest)
    async with deps.db.transaction() as repos:
        ticket = await repos.tickets.get(ticket_id)
        if ticket is None or ticket.member_id != req.member_id:
            return [Reply(deps.texts.t("rate_ticket.not_yours", id=ticket_id))]
        if ticket.state != "closed":
            return [Reply(deps.texts.t("rate_ticket.not_closed", id=ticket_id))]
        rated = await repos.tickets.rate(ticket_id, req.member_id, rating, deps.now_ts())
    if not rated:
        return [Reply(deps.texts.t("rate_ticket.already", id=ticket_id))]
    return [Reply(deps.texts.t("rate_ticket.thanks", id=ticket_id, rating=rating))]


BUTTON_DATA_BYTES = 64
"""The most a button's data may hold (Telegram's limit); a longer message is not offered as a one-tap ticket."""


async def fallback(req: Request, deps: Deps) -> list[Reply]:
    """Free text in a private chat that is no command (你好, 在吗？): where the menu is, how to reach staff,
    and, when the message fits a button, one tap to pass it to staff as a ticket. Never used in groups,
    where members chat with each other."""
    lines = [deps.texts.t("fallback.answer", name=req.name, within=_answer_within(deps))]
    buttons = [Button(deps.texts.t("fallback.menu_button"), "v1:help:")]
    text = req.args.strip()
    data = f"v1:feedback:{text}"
    if text and len(data.encode("utf-8")) <= BUTTON_DATA_BYTES and parse_button(data) is not None:
        lines.append(deps.texts.t("fallback.offer"))
        buttons.append(Button(deps.texts.t("fallback.ticket_button"), data))
    return [Reply("\n".join(lines), buttons=tuple(buttons))]


# --- staff -----------------------------------------------------------------------------------------
async def reply(req: Request, deps: Deps) -> list[Reply]:
    """/reply <ticket> <text>: answer the member privately, or in the chat the ticket came from."""
    head, text = split_first(req.args)
    ticket_id = parse_id(head)
    if ticket_id is None or not text:
        return deps.usage("reply")
    if len(text) > TEXT_LIMIT:
        return _too_long(deps, text)
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        ticket = await repos.tickets.get(ticket_id)
        if ticket is None:
            return [Reply(deps.texts.t("feedback.unknown", id=ticket_id))]
        if ticket.state == "closed":
            return [Reply(deps.texts.t("reply.closed", id=ticket_id))]
        kind = _kind_name(deps, ticket.kind)
        private_text = deps.texts.t("reply.private", id=ticket_id, kind=kind, text=text)
        chat_text = deps.texts.t("reply.in_chat", id=ticket_id, kind=kind, text=text,
                                 mention=await _mention(repos, ticket))  # fmt: skip
        via = await _tell_member(repos, deps, ticket, private_text, chat_text)
        await repos.tickets.add_message(ticket_id, req.member_id, "staff", text, now, via)
        if via != "none":  # an answer the member cannot get yet does not count as answered
            await repos.tickets.mark_answered(ticket_id, now)
    deps.outbox.wake()
    return [Reply(deps.texts.t(f"reply.sent_{via}", id=ticket_id, name=ticket.member_name))]


async def tickets(req: Request, deps: Deps) -> list[Reply]:
    """/tickets: unclosed tickets oldest first, late ones flagged; /tickets <id>: one ticket in full."""
    if req.args:
        ticket_id = required_id(deps, req.args, "tickets")
        return await _show(deps, ticket_id)
    now = deps.now_ts()
    async with deps.db.read() as repos:
        waiting = await repos.tickets.unclosed(LIST_LIMIT)
    if not waiting:
        return [Reply(deps.texts.t("tickets.none"))]
    lines = [deps.texts.t("tickets.header", count=len(waiting))]
    for ticket in waiting:
        late = ticket.state == "open" and now > ticket.answer_by
        lines.append(
            deps.texts.t("tickets.line", id=ticket.id, kind=_kind_name(deps, ticket.kind), name=ticket.member_name,
                         age=duration_text(deps, timedelta(seconds=now - ticket.created_at)),
                         state=deps.texts.t(f"feedback.state_{ticket.state}"),
                         late=deps.texts.t("tickets.late") if late else "", preview=_preview(ticket.body))
        )  # fmt: skip
    lines.append(deps.texts.t("tickets.footer"))
    return [Reply("\n".join(lines))]


async def _show(deps: Deps, ticket_id: int) -> list[Reply]:
    async with deps.db.read() as repos:
        ticket = await repos.tickets.get(ticket_id)
        thread = await repos.tickets.messages(ticket_id) if ticket else []
    if ticket is None:
        return [Reply(deps.texts.t("feedback.unknown", id=ticket_id))]
    rating = str(ticket.rating) if ticket.rating is not None else "-"
    lines = [
        deps.texts.t("tickets.details", id=ticket.id, kind=_kind_name(deps, ticket.kind), name=ticket.member_name,
                     state=deps.texts.t(f"feedback.state_{ticket.state}"), opened=deps.local_text(ticket.created_at),
                     when=deps.local_text(ticket.answer_by), rating=rating)
    ]  # fmt: skip
    for message in thread:
        lines.append(deps.texts.t("tickets.message", when=deps.local_text(message.created_at),
                                  name=message.author_name, text=message.body))  # fmt: skip
    return [Reply("\n".join(lines))]


async def close(req: Request, deps: Deps) -> list[Reply]:
    """/close <ticket>: close it and ask the member to rate the handling 1-5."""
    ticket_id = required_id(deps, req.args, "close")
    async with deps.db.transaction() as repos:
        ticket = await repos.tickets.get(ticket_id)
        if ticket is None:
            return [Reply(deps.texts.t("feedback.unknown", id=ticket_id))]
        if not await repos.tickets.close(ticket_id, req.member_id, deps.now_ts()):
            return [Reply(deps.texts.t("close.already", id=ticket_id))]
        kind = _kind_name(deps, ticket.kind)
        buttons = tuple(
            Button(deps.texts.t("close.rate_button", n=n), f"v1:rate_ticket:{ticket_id} {n}") for n in range(1, 6)
        )
        private_text = deps.texts.t("close.ask_private", id=ticket_id, kind=kind)
        chat_text = deps.texts.t("close.ask_in_chat", id=ticket_id, kind=kind, mention=await _mention(repos, ticket))
        via = await _tell_member(repos, deps, ticket, private_text, chat_text, buttons)
    deps.outbox.wake()
    return [Reply(deps.texts.t(f"close.done_{via}", id=ticket_id, name=ticket.member_name))]


# --- the runtime's job -----------------------------------------------------------------------------
async def escalate(deps: Deps) -> int:
    """Remind staff, once, of every ticket still unanswered `escalate_after` after it was opened; returns how
    many. Without a staff chat to tell nothing is marked, so the reminder goes out once one is there."""
    if not deps.outbox.staff_channels():
        return 0
    now = deps.now_ts()
    waited = deps.rules.feedback.escalate_after
    async with deps.db.transaction() as repos:
        due = await repos.tickets.escalate_due(now - int(waited.total_seconds()), now)
        for ticket in due:
            waited_text = duration_text(deps, timedelta(seconds=now - ticket.created_at))
            notice = deps.texts.t("feedback.escalation", id=ticket.id, kind=_kind_name(deps, ticket.kind),
                                  name=ticket.member_name, waited=waited_text, when=deps.local_text(ticket.answer_by),
                                  text=ticket.body)  # fmt: skip
            await notify_staff(repos, deps, notice)
    if due:
        deps.outbox.wake()
    return len(due)
