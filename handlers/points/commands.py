"""The member's own view of points (积分): balance, tier, the way to the next tier, points about to expire,
latest entries."""

from __future__ import annotations

import re

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.loyalty.expiry import expiring_line
from handlers.shared.tiers import next_tier_line, tier_points_of
from storage.ledger import LedgerEntry

_MERGE_NOTE = re.compile(r"(<-|->) #(\d+)")
"""How a merge entry notes the other member: '<- #7' (points from member 7), '-> #7' (moved to member 7)."""


def note_text(deps: Deps, entry: LedgerEntry) -> str:
    """What an entry's note says to the member: a merge's marker in words, any other note as written."""
    found = _MERGE_NOTE.fullmatch(entry.note.strip()) if entry.reason == "merge" else None
    if found is None:
        return entry.note
    key = "points.merged_from" if found.group(1) == "<-" else "points.merged_into"
    return deps.texts.t(key, id=found.group(2))


async def points(req: Request, deps: Deps) -> list[Reply]:
    texts = deps.texts
    async with deps.db.read() as repos:
        member = await repos.members.get(req.member_id)
        entries = await repos.ledger.recent(req.member_id, 5)
        assert member is not None
        points = tier_points_of(deps, member.earned, member.discount)
        expiring = await expiring_line(repos, deps, member.id)
    tier = deps.rules.tier_for(points)
    lines = [
        texts.t("points.header", name=req.name, balance=member.balance, tier=deps.tier_name(tier)),
        next_tier_line(deps, points),
    ]
    if expiring:
        lines.append(expiring)
    if entries:
        lines.append(texts.t("points.recent_header"))
        for entry in entries:
            reason_key = f"reason.{entry.reason}"
            lines.append(
                texts.t(
                    "points.entry",
                    date=deps.local_text(entry.created_at, with_time=False),
                    delta=f"{entry.delta:+d}",
                    reason=texts.t(reason_key) if texts.has(reason_key) else texts.t("reason.other"),
                    note=f" · {note_text(deps, entry)}" if entry.note else "",
                )
            )
    else:
        lines.append(texts.t("points.no_entries"))
    return [Reply("\n".join(lines), personal=True)]
