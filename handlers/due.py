"""What the scheduler calls: each pending announcement whose time has come is queued, or, when the bot was
down too long (past the grace time) or its subject no longer wants it (cancelled, already started), skipped.
Staff hear of both. Deadlines (a group buy's, a poll's) settle their subject first, however late.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from handlers.broadcast import duration_text, notify_staff, queue_recipients
from handlers.deps import Deps
from handlers.greetings import prepare_greeting
from handlers.group_buys import settle_at_deadline
from handlers.polls import close_at_deadline, prepare_followup
from storage.announcements import Announcement
from storage.repos import Repos

log = logging.getLogger(__name__)

LATE_NOTICE_AFTER = timedelta(minutes=2)
"""Lateness below this is ordinary scheduler jitter and not reported to staff."""


async def _skip_reason(repos: Repos, deps: Deps, ann: Announcement, now_ts: int, late: timedelta) -> str | None:
    texts = deps.texts
    if ann.event_id is not None:
        event = await repos.events.get(ann.event_id)
        if event is not None and event.state != "active" and ann.kind != "cancel":
            return texts.t("broadcast.reason_cancelled")
        if event is not None and ann.kind == "promo" and now_ts >= event.starts_at:
            return texts.t("broadcast.reason_started")
    if ann.sale_id is not None:
        sale = await repos.sales.get(ann.sale_id)
        if sale is not None and sale.state != "active" and ann.kind != "cancel":
            return texts.t("broadcast.reason_cancelled")
        if sale is not None and ann.kind in ("promo", "sale_early") and now_ts >= sale.starts_at:
            return texts.t("broadcast.reason_started")
    if ann.kind in ("groupbuy_close", "poll_close"):
        return None  # a deadline is always settled, however late
    if late > deps.rules.events.grace:
        return texts.t("broadcast.reason_grace", late=duration_text(deps, late))
    return None


async def run_due(deps: Deps) -> list[int]:
    """Queue or skip every pending announcement that is due; returns the ids that were queued."""
    now = deps.now()
    now_ts = int(now.timestamp())
    queued: list[int] = []
    async with deps.db.transaction() as repos:
        for ann in await repos.announcements.due(now_ts):
            late = now - datetime.fromtimestamp(ann.due_at, now.tzinfo)
            reason = await _skip_reason(repos, deps, ann, now_ts, late)
            if reason is not None:
                await repos.announcements.settle(ann.id, "skipped", now_ts, reason)
                if ann.kind != "staff":
                    await notify_staff(repos, deps, deps.texts.t("broadcast.skipped", id=ann.id, reason=reason))
                log.info("announcement %s skipped: %s", ann.id, reason)
                continue
            if ann.kind == "groupbuy_close" and ann.group_buy_id is not None:
                ann = await settle_at_deadline(repos, deps, ann)
            elif ann.kind == "poll_close" and ann.poll_id is not None:
                closed = await close_at_deadline(repos, deps, ann)
                if closed is None:  # closed by staff already
                    await repos.announcements.settle(ann.id, "cancelled", now_ts)
                    continue
                ann = closed
            elif ann.kind == "followup" and ann.member_id is not None:
                await prepare_followup(repos, deps, ann)
            elif ann.kind == "greeting":
                ann = await prepare_greeting(repos, deps, ann)
            count = await queue_recipients(repos, deps, ann)
            outcome = ""
            if late > LATE_NOTICE_AFTER:
                outcome = deps.texts.t("broadcast.late_outcome", late=duration_text(deps, late))
                await notify_staff(
                    repos, deps,
                    deps.texts.n("broadcast.late", count, id=ann.id, late=duration_text(deps, late)),
                )  # fmt: skip
            await repos.announcements.settle(ann.id, "queued", now_ts, outcome)
            queued.append(ann.id)
    deps.outbox.wake()
    return queued
