"""/export members [tier <id> | segment <name>] [csv|xlsx] (staff): every member, or those of one tier or one
segment, as a spreadsheet file.

The reading and the writing of the file grow with the shop, so they are the command's `prepare` step: on a
reader's snapshot and a worker thread, before (and outside) the update's write transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from handlers.core.command import Preparing
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.customers.memory import drain
from handlers.customers.rows import tier_lookup
from handlers.customers.spreadsheet import document
from handlers.segments.commands import parse_segment, segment_audience, segment_name
from handlers.shared.tiers import member_tier
from storage.customers import ExportRow

COLUMNS = ("member", "name", "phone", "tier", "balance", "earned", "birthday", "joined", "note")
FORMATS = ("csv", "xlsx")


@dataclass(frozen=True, slots=True)
class ExportChoice:
    what: str
    """What the file holds, for the caption: all members, a tier's or a segment's name."""
    earned_from: int = 0
    earned_below: int | None = None
    only: tuple[str, dict[str, Any]] | None = None
    kind: str = "csv"
    label: str = "all"
    """For the file name."""


def parse_export(deps: Deps, args: str) -> ExportChoice | None:
    """The choice `args` names ('members [tier <id> | segment <name>] [csv|xlsx]'); None when it is not one."""
    words = args.split()
    if not words or words[0].lower() not in ("members", "member", "会员"):
        return None
    words = words[1:]
    kind = "csv"
    if words and words[-1].lower().lstrip(".") in FORMATS:
        kind = words.pop().lower().lstrip(".")
    if not words:
        return ExportChoice(deps.texts.t("export_cmd.all"), kind=kind)
    if len(words) < 2:
        return None
    what, name = words[0].lower(), " ".join(words[1:])
    if what in ("tier", "等级"):
        tier = tier_lookup(deps.rules, lambda t: [deps.tier_name(t)]).get(name.casefold())
        if tier is None:
            return None
        low, high = deps.rules.tier_range(tier)
        return ExportChoice(deps.tier_name(tier), low, high, kind=kind, label=tier.id)
    if what in ("segment", "分层"):
        segment = parse_segment(deps, name)
        if segment is None:
            return None
        chosen = segment_audience(deps.rules.segments, segment, deps.now_ts())
        return ExportChoice(segment_name(deps, segment), only=(chosen.sql, dict(chosen.params)), kind=kind,
                            label=segment)  # fmt: skip
    return None


def _cells(deps: Deps, row: ExportRow) -> list[object]:
    tier = deps.tier_name(member_tier(deps, row))
    joined = deps.local_text(row.joined_at, with_time=False)
    return [row.member_id, row.name, row.phone or "", tier, row.balance, row.earned, row.birthday or "", joined,
            row.note]  # fmt: skip


def _file(deps: Deps, kind: str, header: list[str], rows: list[ExportRow]) -> bytes:
    """The file's bytes (on a worker thread); the rows are freed here too, a slice at a time."""
    data = document(kind, header, (_cells(deps, row) for row in rows))
    drain(rows)
    return data


async def prepare_export(prep: Preparing, deps: Deps) -> list[Reply]:
    """The file (or the usage line), read and written before the update's transaction."""
    choice = parse_export(deps, prep.args)
    if choice is None:
        return deps.usage("export_cmd")
    async with deps.db.read() as repos:
        rows = await repos.customers.export_rows(
            earned_from=choice.earned_from,
            earned_below=choice.earned_below,
            only=choice.only,
            reviewed=deps.rules.tier_review.enabled,
        )
    header = [deps.texts.t(f"export_cmd.column_{name}") for name in COLUMNS]
    count = len(rows)
    data = await asyncio.to_thread(_file, deps, choice.kind, header, rows)
    day = deps.local_text(deps.now_ts(), with_time=False)
    caption = deps.texts.n("export_cmd.done", count, what=choice.what)
    # Names, phones and birthdays: never where other members read.
    return [Reply(caption, document=(f"members-{choice.label}-{day}.{choice.kind}", data), secret=True)]


async def export(req: Request, deps: Deps, prepared: list[Reply]) -> list[Reply]:
    """/export: the file `prepare_export` wrote."""
    return prepared
