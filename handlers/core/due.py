"""What the scheduler calls: each pending announcement whose time has come is queued, or, when the bot was
down too long (past the grace time) or its subject no longer wants it (cancelled, already started), skipped.
Staff hear of both. Deadlines (a group buy's, a poll's) settle their subject first, however late.

What a kind does when due is declared by its feature in `handlers.core.kinds`; this module only
dispatches. Nothing slow runs in its transaction: the chart of a poll closed on time is drawn after it commits
and sent to staff in a short transaction of its own.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import handlers.core.table  # noqa: F401  (loads every feature, and so every kind's rule)
from handlers.core.deps import Deps
from handlers.core.kinds import AnnouncementKind, SubjectKind, rule_of, subject_state
from handlers.polls.commands import send_closing_chart
from handlers.shared.broadcast import duration_text, notify_staff, queue_recipients
from storage.announcements import Announcement
from storage.repos import Repos

log = logging.getLogger(__name__)

LATE_NOTICE_AFTER = timedelta(minutes=2)
"""Lateness below this is ordinary scheduler jitter and not reported to staff."""


async def _skip_reason(repos: Repos, deps: Deps, ann: Announcement, now_ts: int, late: timedelta) -> str | None:
    texts = deps.texts
    rule = rule_of(ann.kind)
    state = await subject_state(repos, ann)
    if state is not None and not state.active and ann.kind != AnnouncementKind.CANCEL:
        return texts.t("broadcast.reason_cancelled")
    if state is not None and rule.until_start and state.starts_at is not None and now_ts >= state.starts_at:
        return texts.t("broadcast.reason_started")
    if rule.skip is not None:
        reason = await rule.skip(repos, deps, ann, now_ts)
        if reason is not None:
            return reason
    if not rule.deadline and late > deps.rules.events.grace:  # a deadline is always settled, however late
        return texts.t("broadcast.reason_grace", late=duration_text(deps, late))
    return None


async def run_due(deps: Deps) -> list[int]:
    """Queue or skip every pending announcement that is due; returns the ids that were queued."""
    now = deps.now()
    now_ts = int(now.timestamp())
    queued: list[int] = []
    closed_polls: list[int] = []
    async with deps.db.transaction() as repos:
        for due_ann in await repos.announcements.due(now_ts):
            late = now - datetime.fromtimestamp(due_ann.due_at, now.tzinfo)
            reason = await _skip_reason(repos, deps, due_ann, now_ts, late)
            if reason is not None:
                await repos.announcements.settle(due_ann.id, "skipped", now_ts, reason)
                if due_ann.kind != AnnouncementKind.STAFF:
                    await notify_staff(repos, deps, deps.texts.t("broadcast.skipped", id=due_ann.id, reason=reason))
                log.info("announcement %s skipped: %s", due_ann.id, reason)
                continue
            prepare = rule_of(due_ann.kind).prepare
            ann = await prepare(repos, deps, due_ann) if prepare is not None else due_ann
            if ann is None:  # nothing left to send (a poll staff closed already)
                await repos.announcements.settle(due_ann.id, "cancelled", now_ts)
                continue
            poll_id = ann.subject_of(SubjectKind.POLL) if ann.kind == AnnouncementKind.POLL_CLOSE else None
            if poll_id is not None:
                closed_polls.append(poll_id)
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
    for poll_id in closed_polls:  # drawn with no write transaction open: other writes go on meanwhile
        try:
            await send_closing_chart(deps, poll_id)
        except Exception:  # the poll is closed and its results are posted; only staff's picture is lost
            log.exception("sending the results chart of poll %s failed", poll_id)
    return queued
