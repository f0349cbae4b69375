"""Announcements as a use case: planning them ahead of a start (the promo lead rule), creating them, and
expanding one into a delivery row per recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from handlers.core.command import Refusal
from handlers.core.deps import Deps
from handlers.core.kinds import AnnouncementKind, DueRule, Subject, SubjectKind
from handlers.core.messages import Button, Reply
from handlers.core.rules import parse_duration
from storage.announcements import Announcement
from storage.deliveries import TierRange
from storage.repos import Repos

log = logging.getLogger(__name__)

PROMO_RULES = {AnnouncementKind.PROMO: DueRule(until_start=True)}
"""A promo after its start is pointless; declared by each feature that sends promos (events, sales)."""


def buttons_of(ann: Announcement) -> tuple[Button, ...]:
    """An announcement's buttons as handlers know them (storage keeps (label, data) pairs)."""
    return tuple(Button(label, data) for label, data in ann.buttons)


def stored_buttons(buttons: tuple[Button, ...]) -> tuple[tuple[str, str], ...]:
    """Buttons as storage keeps them, (label, data) pairs: the one place handlers' buttons become pairs."""
    return tuple((button.label, button.data) for button in buttons)


LivePost = tuple[list[int], str, tuple[tuple[str, str], ...]]
"""(announcement ids, current text, buttons) of a group post the scheduler keeps up to date; its buttons as
(label, data) pairs, as the outbox's `edit_posts` takes them."""


def live_post(announcement_ids: list[int], text: str, buttons: tuple[Button, ...]) -> LivePost:
    return announcement_ids, text, stored_buttons(buttons)


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
        if not ranges:
            return 0
        reviewed = deps.rules.tier_review.enabled
        return await repos.deliveries.queue_members(ann.id, channels, ranges, reviewed=reviewed)
    count = await repos.deliveries.queue_groups(ann.id, channels)
    if ann.audience == "groups":
        return count
    event_id = ann.subject_of(SubjectKind.EVENT)
    if ann.audience == "signups" and event_id is not None:
        return count + await repos.deliveries.queue_signups(ann.id, event_id, channels)
    return count + await repos.deliveries.queue_members(ann.id, channels)


async def publish(
    repos: Repos,
    deps: Deps,
    kind: str,
    audience: str,
    text: str,
    *,
    tiers: tuple[str, ...] = (),
    buttons: tuple[Button, ...] = (),
    subject: Subject | None = None,
    **details: Any,
) -> tuple[int, int]:
    """Create an announcement due now and queue it at once; returns (announcement id, recipients).

    `subject`: what it is about, (kind, id); `details`: lead, created_by, image."""
    now = deps.now_ts()
    ann_id = await repos.announcements.create(kind, audience, text, now, now, tiers=tiers, subject=subject,
                                              buttons=stored_buttons(buttons), **details)  # fmt: skip
    ann = await repos.announcements.get(ann_id)
    assert ann is not None
    count = await queue_recipients(repos, deps, ann)
    await repos.announcements.settle(ann_id, "queued", now)
    return ann_id, count


async def send_personal(
    repos: Repos,
    deps: Deps,
    kind: str,
    summary: str,
    bodies: list[tuple[int, str]],
    *,
    buttons: tuple[Button, ...] = (),
    subject: Subject | None = None,
    **details: Any,
) -> int:
    """One announcement whose recipients each get their own text (codes, personal notices); returns how
    many deliveries were queued. Members who cannot be messaged privately are left out."""
    now = deps.now_ts()
    ann_id = await repos.announcements.create(kind, "personal", summary, now, now, buttons=stored_buttons(buttons),
                                              subject=subject, **details)  # fmt: skip
    channels = sorted(deps.outbox.channels())
    count = await repos.deliveries.queue_personal_many(ann_id, bodies, channels)
    await repos.announcements.settle(ann_id, "queued", now)
    return count


async def notify_staff(repos: Repos, deps: Deps, text: str) -> None:
    await publish(repos, deps, AnnouncementKind.STAFF, "staff", text)


def duration_text(deps: Deps, delta: timedelta) -> str:
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return deps.texts.t("time.days_hours", days=days, hours=hours)
    if hours:
        return deps.texts.t("time.hours_minutes", hours=hours, minutes=minutes)
    return deps.texts.t("time.minutes", minutes=minutes)


def span_text(deps: Deps, count: int, unit: str) -> str:
    """A number of days, hours or minutes (`unit`) as the locale says it: '5 天', '1 day', '2 hours'."""
    return deps.texts.n(f"span.{unit}", count)


def lead_text(deps: Deps, label: str | None) -> str | None:
    """A promo lead ('5d', '2h', '30m') as a span of time ('5 天', '5 days'); None for anything else
    ('now', no lead), which the caller words differently."""
    try:
        lead = parse_duration(label or "")
    except ValueError:
        return None
    unit = (label or "").strip()[-1]
    if unit == "d":
        return span_text(deps, lead.days, "days")
    if unit == "h":
        return span_text(deps, lead // timedelta(hours=1), "hours")
    return span_text(deps, lead // timedelta(minutes=1), "minutes")


def countdown_text(deps: Deps, remaining: timedelta) -> str:
    """How long until a start, as a promo says it: whole days from two days on (never more than are left),
    else hours from 90 minutes on, else minutes."""
    if remaining >= timedelta(days=2):
        return deps.texts.n("broadcast.in_days", remaining // timedelta(days=1))
    if remaining >= timedelta(minutes=90):
        return deps.texts.n("broadcast.in_hours", round(remaining / timedelta(hours=1)))
    return deps.texts.n("broadcast.in_minutes", max(round(remaining / timedelta(minutes=1)), 1))


def local_days_before(instant: datetime, days: int, zone: tzinfo) -> datetime:
    """The instant (UTC) `days` local calendar days before `instant`, at the same local time of day
    (`days` may be negative: after). A wall time that does not exist on that day (skipped by a
    spring-forward) is read with the offset before the gap, so it lands that much later (02:30 becomes
    03:30); one that occurs twice (fall-back) means its first occurrence. This is RFC 5545's rule (fold=0).
    """
    wall = instant.astimezone(zone).replace(tzinfo=None) - timedelta(days=days)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def lead_due(deps: Deps, start: datetime, label: str, lead: timedelta) -> datetime:
    """When the promo `label` ('5d', '2h', '30m') ahead of `start` is due (UTC). Day leads are local calendar
    days (same local time of day, see `local_days_before`); hour and minute leads are elapsed time."""
    if label.strip().endswith("d"):
        return local_days_before(start, lead.days, deps.calendar.zone)
    return start.astimezone(UTC) - lead


def inside_lead_time(deps: Deps, when: datetime) -> bool:
    """Whether a start at `when` breaks the five-day rule: `promo_lead_days` local calendar days before it
    (same local time of day) has already passed."""
    return local_days_before(when, deps.rules.events.promo_lead_days, deps.calendar.zone) < deps.now()


def check_lead_time(deps: Deps, when: datetime, force: bool, usage: str) -> None:
    """Refuse a start in the past, or one inside the promo lead time (five local days) unless forced: a
    `Refusal` that says why, with the usage of the command `usage`."""
    now = deps.now()
    if when <= now:
        raise Refusal(Reply(deps.texts.t("common.in_past", when=deps.local_text(int(when.timestamp())))),
                      *deps.usage(usage))  # fmt: skip
    rules = deps.rules.events
    if inside_lead_time(deps, when) and not force:
        earliest = int(local_days_before(now, -rules.promo_lead_days, deps.calendar.zone).timestamp()) + 59
        earliest -= earliest % 60
        text = deps.texts.t("broadcast.too_soon", days=rules.promo_lead_days, earliest=deps.local_text(earliest))
        raise Refusal(Reply(text), *deps.usage(usage))


async def unplan_pending(repos: Repos, deps: Deps, subject: Subject) -> None:
    """Cancel the announcements about `subject` still pending, and drop their scheduler jobs."""
    for ann_id in await repos.announcements.cancel_pending_for(*subject):
        deps.planner.unplan(ann_id)


async def plan_leads(
    repos: Repos,
    deps: Deps,
    starts_at: int,
    text_at: Callable[[datetime], str],
    buttons: tuple[Button, ...],
    *,
    announce_now: bool = True,
    subject: Subject | None = None,
) -> list[tuple[str, int]]:
    """Plan the promos of something starting at `starts_at`; returns (lead, due) of each, 'now' for one sent
    at once. Day leads are counted back in local calendar days, hour and minute leads in elapsed time (see
    `lead_due`). If the earliest lead has already passed (a forced or moved start), one promo goes out now,
    unless `announce_now` is False. `subject` is what starts, (kind, id).
    """
    now = deps.now()
    start = datetime.fromtimestamp(starts_at, UTC)
    leads = deps.rules.events.leads()
    dues = [(label, lead_due(deps, start, label, lead).astimezone(now.tzinfo)) for label, lead in leads]
    planned: list[tuple[str, int]] = []
    if announce_now and min(due for _, due in dues) <= now:
        await publish(repos, deps, AnnouncementKind.PROMO, "all", text_at(now), buttons=buttons, lead="now",
                      subject=subject)  # fmt: skip
        planned.append(("now", int(now.timestamp())))
    for label, due in dues:
        if due > now:
            await plan_at(repos, deps, AnnouncementKind.PROMO, "all", text_at(due), due, buttons=buttons, lead=label,
                          subject=subject)  # fmt: skip
            planned.append((label, int(due.timestamp())))
    return planned


async def plan_at(
    repos: Repos,
    deps: Deps,
    kind: str,
    audience: str,
    text: str,
    due: datetime,
    *,
    buttons: tuple[Button, ...] = (),
    subject: Subject | None = None,
    **details: Any,
) -> int:
    """Create an announcement due at `due` and give it its scheduler job; `subject` and `details` as for
    `publish`."""
    ann_id = await repos.announcements.create(kind, audience, text, int(due.timestamp()), deps.now_ts(),
                                              buttons=stored_buttons(buttons), subject=subject, **details)  # fmt: skip
    deps.planner.plan(ann_id, due)
    return ann_id


def plan_lines(deps: Deps, planned: list[tuple[str, int]]) -> str:
    """The promo plan for staff, one line per (lead, due) of `plan_leads`: '· 提前 5 天：…', '· 立即：…'."""
    lines = []
    for lead, due in planned:
        span = lead_text(deps, lead)
        if span is None:
            lines.append(deps.texts.t("broadcast.plan_now", when=deps.local_text(due)))
        else:
            lines.append(deps.texts.t("broadcast.plan_line", lead=span, when=deps.local_text(due)))
    return "\n".join(lines)
