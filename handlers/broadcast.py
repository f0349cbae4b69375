"""Announcements as a use case: expanding one into delivery rows, and sending what fell due.

`run_due` is what the scheduler calls: each pending announcement whose time has come is queued, or, when
the bot was down too long (past the grace time, or past the event's start), skipped; staff hear of both.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from handlers.deps import Deps
from handlers.messages import Button
from storage.announcements import Announcement
from storage.deliveries import TierRange
from storage.repos import Repos

log = logging.getLogger(__name__)

LATE_NOTICE_AFTER = timedelta(minutes=2)
"""Lateness below this is ordinary scheduler jitter and not reported to staff."""


def buttons_of(ann: Announcement) -> tuple[Button, ...]:
    return tuple(Button(label, data) for label, data in ann.buttons)


async def queue_recipients(repos: Repos, deps: Deps, ann: Announcement) -> int:
    """Create one delivery row per recipient of `ann` on every channel that can push; returns how many."""
    if ann.audience == "staff":
        return await repos.deliveries.queue_staff(ann.id, sorted(deps.outbox.staff_channels()))
    channels = sorted(deps.outbox.channels())
    if ann.audience == "tiers":
        ranges = []
        for tier_id in ann.tiers:
            tier = deps.rules.tier_by_id(tier_id)
            if tier is not None:
                low, high = deps.rules.tier_range(tier)
                ranges.append(TierRange(low, high))
        return await repos.deliveries.queue_members(ann.id, channels, ranges) if ranges else 0
    count = await repos.deliveries.queue_groups(ann.id, channels)
    if ann.audience == "signups" and ann.event_id is not None:
        return count + await repos.deliveries.queue_signups(ann.id, ann.event_id, channels)
    return count + await repos.deliveries.queue_members(ann.id, channels)


async def publish(
    repos: Repos,
    deps: Deps,
    kind: str,
    audience: str,
    text: str,
    *,
    tiers: tuple[str, ...] = (),
    buttons: tuple[tuple[str, str], ...] = (),
    event_id: int | None = None,
    lead: str | None = None,
    created_by: int | None = None,
) -> tuple[int, int]:
    """Create an announcement due now and queue it at once; returns (announcement id, recipients)."""
    now = deps.now_ts()
    ann_id = await repos.announcements.create(
        kind, audience, text, now, now, tiers=tiers, buttons=buttons, event_id=event_id, lead=lead,
        created_by=created_by,
    )  # fmt: skip
    ann = await repos.announcements.get(ann_id)
    assert ann is not None
    count = await queue_recipients(repos, deps, ann)
    await repos.announcements.settle(ann_id, "queued", now)
    return ann_id, count


async def notify_staff(repos: Repos, deps: Deps, text: str) -> None:
    await publish(repos, deps, "staff", "staff", text)


def _duration_text(deps: Deps, delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return deps.texts.t("time.days_hours", days=days, hours=hours)
    if hours:
        return deps.texts.t("time.hours_minutes", hours=hours, minutes=minutes)
    return deps.texts.t("time.minutes", minutes=minutes)


async def run_due(deps: Deps) -> list[int]:
    """Queue or skip every pending announcement that is due; returns the ids that were queued."""
    now = deps.now()
    now_ts = int(now.timestamp())
    grace = deps.rules.events.grace
    queued: list[int] = []
    async with deps.db.transaction() as repos:
        for ann in await repos.announcements.due(now_ts):
            late = now - datetime.fromtimestamp(ann.due_at, now.tzinfo)
            event = await repos.events.get(ann.event_id) if ann.event_id is not None else None
            reason = None
            if event is not None and event.state != "active" and ann.kind != "cancel":
                reason = deps.texts.t("broadcast.reason_cancelled")
            elif event is not None and ann.kind == "promo" and now_ts >= event.starts_at:
                reason = deps.texts.t("broadcast.reason_started")
            elif late > grace:
                reason = deps.texts.t("broadcast.reason_grace", late=_duration_text(deps, late))
            if reason is not None:
                await repos.announcements.settle(ann.id, "skipped", now_ts, reason)
                if ann.kind != "staff":
                    await notify_staff(repos, deps, deps.texts.t("broadcast.skipped", id=ann.id, reason=reason))
                log.info("announcement %s skipped: %s", ann.id, reason)
                continue
            count = await queue_recipients(repos, deps, ann)
            outcome = ""
            if late > LATE_NOTICE_AFTER:
                outcome = deps.texts.t("broadcast.late_outcome", late=_duration_text(deps, late))
                await notify_staff(
                    repos, deps, deps.texts.t("broadcast.late", id=ann.id, late=_duration_text(deps, late), count=count)
                )
            await repos.announcements.settle(ann.id, "queued", now_ts, outcome)
            queued.append(ann.id)
    deps.outbox.wake()
    return queued
