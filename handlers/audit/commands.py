"""/audit: the audit log page by page, newest first, in the shop's local time; and the command line's rows."""

from __future__ import annotations

import getpass

from handlers.core.auditing import ARGS_CHARS
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import parse_int, split_first
from handlers.core.targets import TargetArgs, resolve_target
from storage.audit import AuditEntry, AuditRow, Filter, Outcome
from storage.repos import Repos

PAGE_SIZE = 15

_FILTERS: dict[str, Filter] = {
    "member": "member", "会员": "member", "staff": "staff", "店员": "staff", "today": "since", "今天": "since",
}  # fmt: skip
"""First word -> what to list; a filter on a member is followed by who (a member number or an @username)."""


def _page_number(text: str) -> int | None:
    return parse_int(text.strip() or "1", 1, 999_999)


async def audit(req: Request, deps: Deps) -> list[Reply]:
    word, rest = split_first(req.args)
    chosen = _FILTERS.get(word.lower())
    if chosen is None and word and parse_int(word, 1, 999_999) is None:
        return deps.usage("audit")
    texts = deps.texts
    async with deps.db.read() as repos:
        if chosen is None:  # /audit or /audit 2
            where, value, page = "all", None, _page_number(word)
            header, again = texts.t("audit.header_all"), "/audit"
        elif chosen == "since":
            now = deps.now()
            start = deps.calendar.day_start(deps.calendar.business_day(now))
            where, value, page = chosen, int(start.timestamp()), _page_number(rest)
            header = texts.t("audit.header_today", date=start.strftime("%Y-%m-%d"))
            again = f"/audit {word}"
        else:
            who, rest = split_first(rest)
            member = await resolve_target(repos, req, TargetArgs(who, "")) if who else None
            if member is None:
                return [Reply(texts.t("common.member_not_found", target=who))] if who else deps.usage("audit")
            where, value, page = chosen, member.id, _page_number(rest)
            header = texts.t(f"audit.header_{chosen}", name=member.display_name, id=member.id)
            again = f"/audit {word} {who}"
        if page is None:
            return deps.usage("audit")
        found = await repos.audit.page(where, value, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    if not found.rows:
        return [Reply(texts.t("audit.empty" if page == 1 else "audit.no_page", page=page))]
    lines = [texts.t("audit.header", header=header, page=page), *(_line(deps, row) for row in found.rows)]
    if found.more:
        lines.append(texts.t("audit.more", command=f"{again} {page + 1}"))
    return [Reply("\n".join(lines))]


def _line(deps: Deps, row: AuditRow) -> str:
    texts = deps.texts
    role = texts.t(f"role.{row.role}") if row.role else texts.t("audit.no_role")
    if row.actor_member_id is None:
        actor = texts.t("audit.command_line", user=row.actor_external_id)
    else:
        actor = texts.t("audit.actor", name=row.actor_name, id=row.actor_member_id)
    target = ""
    if row.target_member_id is not None:
        target = texts.t("audit.target", name=row.target_name or "?", id=row.target_member_id)
    if not row.chat_id:
        where = texts.t("audit.where_cli")
    elif row.in_group:
        where = texts.t("audit.where_group", chat=row.chat_id)
    else:
        where = texts.t("audit.where_private", channel=row.actor_channel)
    command = " ".join(part for part in (f"/{row.command}", row.args) if part)
    return texts.t("audit.line", when=deps.local_text(row.at), actor=actor, role=role, command=command,
                   target=target, where=where, outcome=texts.t(f"audit.outcome_{row.outcome}"))  # fmt: skip


async def record_command_line(repos: Repos, command: str, args: str, at: int, outcome: Outcome = "done") -> None:
    """An audit row for something done from the command line (``vipbot import members --confirm``): the actor
    is the system user who ran it; write it in the transaction of what it records."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in a bare container
        user = "?"
    await repos.audit.record(AuditEntry(
        at=at, actor_member_id=None, actor_channel="cli", actor_external_id=user, role=None, command=command,
        subcommand=split_first(args)[0].lower(), args=" ".join(args.split())[:ARGS_CHARS], target_member_id=None,
        chat_id="", in_group=False, outcome=outcome,
    ))  # fmt: skip
