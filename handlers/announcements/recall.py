"""/recall <id>: take back an announcement sent by mistake.

Its deliveries not sent yet are dropped (and a pending announcement is cancelled), and its posts in the VIP
groups are deleted while the platform allows: Telegram lets a bot delete its own group message for 48 hours.
A message already delivered privately stays, and WeChat has no way to take back a message at all; the answer
says what could not be undone. A poll deleted before its first answer (handlers.polls) recalls its posts too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from handlers.core.command import required_id
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply

DELETE_WINDOW = timedelta(hours=48) - timedelta(minutes=5)
"""Telegram deletes a bot's group message for 48 hours; the margin keeps a delete from arriving just late."""


@dataclass(frozen=True, slots=True)
class Recalled:
    found: int
    """Announcements recalled now (not before)."""
    dropped: int
    """Deliveries dropped before they were sent."""
    deleting: int
    """Group posts being deleted (once the transaction commits; a refusal of the platform is logged)."""
    kept: int
    """Group posts left: too old to delete."""


async def recall_announcements(deps: Deps, announcement_ids: Sequence[int]) -> Recalled:
    """Recall each announcement once: drop what is still to send, and delete its recent group posts (after the
    transaction commits: each delete is a call to the platform)."""
    now = deps.now_ts()
    found = dropped = old = 0
    posts: list[tuple[int, str, str, str]] = []
    async with deps.db.transaction() as repos:
        for ann_id in announcement_ids:
            state = await repos.announcements.recall(ann_id, now)
            if state is None:
                continue
            found += 1
            if state == "pending":
                deps.planner.unplan(ann_id)
            dropped += await repos.deliveries.drop_pending(ann_id)
            recent, too_old = await repos.deliveries.posts_to_delete(ann_id, now - int(DELETE_WINDOW.total_seconds()))
            posts += recent
            old += too_old
        deleting = deps.outbox.delete_posts(posts, now)
    return Recalled(found, dropped, deleting, old)


async def recall(req: Request, deps: Deps) -> list[Reply]:
    """Staff: /recall <announcement no.> (the number /announce and /scheduled show)."""
    texts = deps.texts
    ann_id = required_id(deps, req.args, "recall")
    async with deps.db.read() as repos:
        ann = await repos.announcements.get(ann_id)
    if ann is None:
        return [Reply(texts.t("recall.unknown", id=ann_id))]
    outcome = await recall_announcements(deps, [ann_id])
    if not outcome.found:
        return [Reply(texts.t("recall.already", id=ann_id))]
    lines = [
        texts.t("recall.done", id=ann_id),
        texts.n("recall.dropped", outcome.dropped),
        texts.n("recall.deleted", outcome.deleting),
    ]
    if outcome.kept:
        lines.append(texts.n("recall.kept", outcome.kept))
    lines.append(texts.t("recall.private_stays"))
    return [Reply("\n".join(lines))]
