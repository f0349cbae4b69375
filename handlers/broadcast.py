"""Announcements as a use case: planning them ahead of a start (the promo lead rule), creating them, and
expanding one into a delivery row per recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from handlers.deps import Deps
from handlers.messages import Button, Reply
from storage.announcements import Announcement
from storage.deliveries import TierRange
from storage.repos import Repos

log = logging.getLogger(__name__)


def buttons_of(ann: Announcement) -> tuple[Button, ...]:
    return tuple(Button(label, data) for label, data in ann.buttons)


async def queue_recipients(repos: Repos, deps: Deps, ann: Announcement) -> int:
    """Create one delivery row per recipient of `ann` on every channel that can push; returns how many."""
    if ann.audience == "personal":
        return 0  # the personal rows were queued with the announcement
    if ann.audience == "staff":
        return await repos.deliveries.queue_staff(ann.id, sorted(deps.outbox.staff_channels()))
    channels = sorted(deps.outbox.channels())
    if ann.audience == "members":
        return await repos.deliveries.queue_members(ann.id, channels)
    if ann.audience == "tiers":
        ranges = []
        for tier_id in ann.tiers:
            tier = deps.rules.tier_by_id(tier_id)
            if tier is not None:
                low, high = deps.rules.tier_range(tier)
                ranges.append(TierRange(low, high))
        return await repos.deliveries.queue_members(ann.id, channels, ranges) if ranges else 0
    count = await repos.deliveries.queue_groups(ann.id, channels)
    if ann.audience == "groups":
        return count
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
    **links: Any,
) -> tuple[int, int]:
    """Create an announcement due now and queue it at once; returns (announcement id, recipients).

    `links` name what it is about (event_id, sale_id, group_buy_id, poll_id, lead, created_by, ...)."""
    now = deps.now_ts()
    ann_id = await repos.announcements.create(kind, audience, text, now, now, tiers=tiers, buttons=buttons, **links)
    ann = await repos.announcements.get(ann_id)
    assert ann is not None
    count = await queue_recipients(repos, deps, ann)
    await repos.announcements.settle(ann_id, "queued", now)
    return ann_id, count


async def send_personal(
    repos: Repos, deps: Deps, kind: str, summary: str, bodies: list[tuple[int, str]], **links: Any
) -> int:
    """One announcement whose recipients each get their own text (codes, personal notices); returns how
    many deliveries were queued. Members who cannot be messaged privately are left out."""
    now = deps.now_ts()
    ann_id = await repos.announcements.create(kind, "personal", summary, now, now, **links)
    channels = sorted(deps.outbox.channels())
    count = await repos.deliveries.queue_personal_many(ann_id, bodies, channels)
    await repos.announcements.settle(ann_id, "queued", now)
    return count


async def notify_staff(repos: Repos, deps: Deps, text: str) -> None:
    await publish(repos, deps, "staff", "staff", text)


def duration_text(deps: Deps, delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return deps.texts.t("time.days_hours", days=days, hours=hours)
    if hours:
        return deps.texts.t("time.hours_minutes", hours=hours, minutes=minutes)
    return deps.texts.t("time.minutes", minutes=minutes)


def check_lead_time(deps: Deps, when: datetime, force: bool) -> Reply | None:
    """Refuse a start in the past, or one inside the promo lead time (five days) unless forced."""
    now = deps.now()
    if when <= now:
        return Reply(deps.texts.t("common.in_past", when=deps.local_text(int(when.timestamp()))))
    rules = deps.rules.events
    if when - now < rules.min_lead and not force:
        earliest = int((now + rules.min_lead).timestamp()) + 59
        earliest -= earliest % 60
        return Reply(deps.texts.t("event.too_soon", days=rules.promo_lead_days, earliest=deps.local_text(earliest)))
    return None


async def plan_leads(
    repos: Repos,
    deps: Deps,
    starts_at: int,
    text_at: Callable[[datetime], str],
    buttons: tuple[tuple[str, str], ...],
    *,
    announce_now: bool = True,
    event_id: int | None = None,
    sale_id: int | None = None,
) -> list[tuple[str, int]]:
    """Plan the promos of something starting at `starts_at`; returns (lead, due) of each, 'now' for one sent
    at once. Leads are counted back from the start in local wall-clock time. If the earliest lead has
    already passed (a forced or moved start), one promo goes out now, unless `announce_now` is False.
    """
    now = deps.now()
    start_local = deps.calendar.local(datetime.fromtimestamp(starts_at, now.tzinfo))
    leads = deps.rules.events.leads()
    planned: list[tuple[str, int]] = []
    if announce_now and start_local - leads[0][1] <= now:
        await publish(
            repos, deps, "promo", "all", text_at(now), buttons=buttons, event_id=event_id, sale_id=sale_id, lead="now"
        )
        planned.append(("now", int(now.timestamp())))
    for label, lead in leads:
        due = (start_local - lead).astimezone(now.tzinfo)
        if due > now:
            await plan_at(repos, deps, "promo", "all", text_at(due), due, buttons=buttons, event_id=event_id,
                          sale_id=sale_id, lead=label)  # fmt: skip
            planned.append((label, int(due.timestamp())))
    return planned


async def plan_at(
    repos: Repos,
    deps: Deps,
    kind: str,
    audience: str,
    text: str,
    due: datetime,
    **links: Any,
) -> int:
    """Create an announcement due at `due` and give it its scheduler job."""
    ann_id = await repos.announcements.create(kind, audience, text, int(due.timestamp()), deps.now_ts(), **links)
    deps.planner.plan(ann_id, due)
    return ann_id


def plan_lines(deps: Deps, planned: list[tuple[str, int]]) -> str:
    return "\n".join(
        deps.texts.t("event.plan_now", when=deps.local_text(due))
        if lead == "now"
        else deps.texts.t("event.plan_line", lead=lead, when=deps.local_text(due))
        for lead, due in planned
    )
