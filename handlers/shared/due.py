"""What the scheduler calls: each pending announcement whose time has come is queued, or, when the bot was
down too long (past the grace time) or its subject no longer wants it (cancelled, already started), skipped.
Staff hear of both. Deadlines (a group buy's, a poll's) settle their subject first, however late.

What a kind does when due is declared by its feature (a `DueRule` in its `Feature`, see handlers.core.kinds);
this module only dispatches. Nothing slow runs in its transaction: a rule's `after_commit` step (the chart of a
poll closed on time) runs after it commits.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from handlers.core.deps import Deps
from handlers.core.kinds import AfterCommit, AnnouncementKind
from handlers.shared.broadcast import duration_text, notify_staff, queue_recipients
from storage.announcements import Announcement
from storage.repos import Repos

log = logging.getLogger(__name__)

LATE_NOTICE_AFTER = timedelta(minutes=2)
"""Lateness below this is ordinary scheduler jitter and not reported to staff."""


async def _skip_reason(repos: Repos, deps: Deps, ann: Announcement, now_ts: int, late: timedelta) -> str | None:
    texts = deps.texts
    rule = deps.kinds.rule_of(ann.kind)
    state = await deps.kinds.subject_state(repos, ann)
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
    follow_ups: list[tuple[AfterCommit, Announcement]] = []
    async with deps.db.transaction() as repos:
        for due_ann in await repos.announcements.due(now_ts):
            if not await repos.announcements.claim_pending(due_ann.id):  # claim first, then act: another run has it
                continue
            late = now - datetime.fromtimestamp(due_ann.due_at, now.tzinfo)
            reason = await _skip_reason(repos, deps, due_ann, now_ts, late)
            if reason is not None:
                await repos.announcements.settle(due_ann.id, "skipped", now_ts, reason)
                if due_ann.kind != AnnouncementKind.STAFF:
                    await notify_staff(repos, deps, deps.texts.t("broadcast.skipped", id=due_ann.id, reason=reason))
                log.info("announcement %s skipped: %s", due_ann.id, reason)
                continue
            rule = deps.kinds.rule_of(due_ann.kind)
            prepare = rule.prepare
            ann = await prepare(repos, deps, due_ann) if prepare is not None else due_ann
            if ann is None:  # nothing left to send (a poll staff closed already)
                await repos.announcements.settle(due_ann.id, "cancelled", now_ts)
                continue
            if rule.after_commit is not None:
                follow_ups.append((rule.after_commit, ann))
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
    for follow_up, ann in follow_ups:  # with no write transaction open: other writes go on meanwhile
        try:
            await follow_up(deps, ann)
        except Exception:  # the announcement is queued; only its follow-up (staff's chart) is lost
            log.exception("the follow-up of announcement %s failed", ann.id)
    return queued
