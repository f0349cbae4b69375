"""Holiday greetings (节日问候) planned as announcements once per occurrence, with an optional gift of points,
the staff command /greetings, and birthday wishes (生日祝福) sent once per member and day.
"""

from __future__ import annotations

import calendar as gregorian
import logging
from datetime import UTC, date, datetime, time, timedelta

from handlers.core.deps import Deps, Request
from handlers.core.kinds import AnnouncementKind, DueRule, SubjectKind
from handlers.core.messages import Reply
from handlers.core.parsing import split_first
from handlers.greetings.holidays import BUILTIN_IDS, Occurrence, next_occurrence, occurrences
from handlers.shared.broadcast import plan_at, publish, span_text
from storage.announcements import Announcement
from storage.greetings import BirthdayMember
from storage.repos import Repos

log = logging.getLogger(__name__)

PLAN_DAYS = 40
"""Greetings are planned (as pending announcements) this many days ahead."""

LIST_DAYS = 120
"""/greetings lists the holidays of this many days ahead."""


# --- what a holiday greeting says ------------------------------------------------------------------
def _custom_days(deps: Deps) -> list[tuple[str, str]]:
    return [(day.id, day.date) for day in deps.rules.greetings.custom]


def known_ids(deps: Deps) -> list[str]:
    return [*BUILTIN_IDS, *(cid for cid, _ in _custom_days(deps) if cid not in BUILTIN_IDS)]


def holiday_name(deps: Deps, holiday_id: str) -> str:
    for day in deps.rules.greetings.custom:
        if day.id == holiday_id and holiday_id not in BUILTIN_IDS:
            return day.name
    key = f"holiday.name.{holiday_id}"
    return deps.texts.t(key) if deps.texts.has(key) else holiday_id


def gift_points(deps: Deps, holiday_id: str) -> int:
    """Points every member gets with this holiday's greeting: `greetings.gift_points`, else the custom day's."""
    rules = deps.rules.greetings
    if holiday_id in rules.gift_points:
        return max(rules.gift_points[holiday_id], 0)
    return next((day.gift_points for day in rules.custom if day.id == holiday_id), 0)


def greeting_text(deps: Deps, holiday_id: str) -> str:
    """The greeting as members will read it: the configured text, else the catalog's, and the gift line."""
    rules = deps.rules.greetings
    custom = next((day for day in rules.custom if day.id == holiday_id and holiday_id not in BUILTIN_IDS), None)
    key = f"holiday.text.{holiday_id}"
    if rules.texts.get(holiday_id):
        body = rules.texts[holiday_id]
    elif custom is not None and custom.text:
        body = custom.text
    elif custom is None and deps.texts.has(key):
        body = deps.texts.t(key)
    else:
        body = deps.texts.t("holiday.custom_text", name=holiday_name(deps, holiday_id))
    points = gift_points(deps, holiday_id)
    if points:
        body += "\n" + deps.texts.n("holiday.gift", points, points=points)
    return body


def _today(deps: Deps) -> date:
    return deps.calendar.local(deps.now()).date()


def send_time(deps: Deps, day: date) -> datetime:
    rules = deps.rules.greetings
    return datetime.combine(day, time(rules.hour, rules.minute), tzinfo=deps.calendar.zone)


async def _silenced(repos: Repos, deps: Deps) -> set[str]:
    return set(deps.rules.greetings.silenced) | await repos.greetings.silenced()


async def _cancel_pending(repos: Repos, deps: Deps, holiday_ids: list[str] | None) -> int:
    """Cancel the unsent greetings of these holidays (None: all) and forget their plans; returns how many."""
    now = deps.now_ts()
    count = 0
    for plan in await repos.greetings.pending(holiday_ids):
        assert plan.announcement_id is not None
        if await repos.announcements.settle(plan.announcement_id, "cancelled", now):
            await repos.greetings.release(plan.holiday_id, plan.day)
            deps.planner.unplan(plan.announcement_id)
            count += 1
    return count


# --- planning: at start-up and daily ------------------------------------------------------------------
async def plan_greetings(deps: Deps) -> int:
    """Plan a greeting announcement for every holiday of the next PLAN_DAYS days not planned before; returns
    how many were planned. Safe to call at every start-up and daily: the (holiday, day) key plans each once.
    A greeting whose time today has passed is still planned; `run_due` sends it late or skips it (grace)."""
    rules = deps.rules.greetings
    today = _today(deps)
    planned = 0
    async with deps.db.transaction() as repos:
        silenced = await _silenced(repos, deps)
        # Configuration changes take effect here: greetings switched off (or custom days removed) since they
        # were planned are cancelled unsent.
        known = set(known_ids(deps))
        stale = {plan.holiday_id for plan in await repos.greetings.pending() if plan.holiday_id not in known}
        await _cancel_pending(repos, deps, sorted(silenced | stale) if rules.enabled else None)
        if not rules.enabled:
            return 0
        for occ in occurrences(today, today + timedelta(days=PLAN_DAYS), _custom_days(deps)):
            day = occ.day.isoformat()
            if occ.id in silenced or not await repos.greetings.claim_plan(occ.id, day, deps.now_ts()):
                continue
            text = greeting_text(deps, occ.id)
            ann_id = await plan_at(repos, deps, AnnouncementKind.GREETING, "all", text, send_time(deps, occ.day))
            await repos.greetings.attach(occ.id, day, ann_id)
            planned += 1
    if planned:
        log.info("planned %d holiday greetings", planned)
    return planned


async def prepare_greeting(repos: Repos, deps: Deps, ann: Announcement) -> Announcement:
    """Called by `run_due` when a greeting is due: refresh its text from today's configuration and book the
    holiday's gift for every member (once per member, holiday and year, by the ledger's idempotency key)."""
    plan = await repos.greetings.plan_of(ann.id)
    if plan is None or plan.holiday_id not in known_ids(deps):
        return ann  # not planned here, or a custom day removed from the configuration: sent as written
    holiday_id, year = plan.holiday_id, plan.day[:4]
    text = greeting_text(deps, holiday_id)
    if text != ann.text:
        await repos.announcements.set_text(ann.id, text)
    points = gift_points(deps, holiday_id)
    if points:
        # One statement for every member (off the loop), keyed 'greeting:<holiday>:<year>:<member id>'.
        await repos.ledger.gift_to_all(
            points, "greeting", f"greeting:{holiday_id}:{year}:", deps.now_ts(), note=holiday_name(deps, holiday_id),
            ref=f"{holiday_id}:{plan.day}",
        )  # fmt: skip
    updated = await repos.announcements.get(ann.id)
    assert updated is not None
    return updated


DUE_RULES = {AnnouncementKind.GREETING: DueRule(prepare=prepare_greeting)}


# --- /greetings (staff) -----------------------------------------------------------------------------
async def greetings(req: Request, deps: Deps) -> list[Reply]:
    sub, rest = split_first(req.args)
    if not sub:
        return await _list(deps)
    handler = _SUBCOMMANDS.get(sub.lower())
    holiday_id = rest.strip().lower()
    if handler is None or not holiday_id or " " in holiday_id:
        return deps.usage("greetings")
    if holiday_id not in known_ids(deps):
        return [Reply(deps.texts.t("greetings.unknown", id=holiday_id[:40], known=deps.texts.join(known_ids(deps))))]
    return await handler(req, deps, holiday_id)


def _state_text(deps: Deps, occ: Occurrence, silenced: set[str], plans: dict[tuple[str, str], str | None]) -> str:
    if occ.id in silenced:
        return deps.texts.t("greetings.state_off")
    state = plans.get((occ.id, occ.day.isoformat()))
    if state is None:
        return deps.texts.t("greetings.state_later")
    return deps.texts.t(f"greetings.state_{state}")


async def _list(deps: Deps) -> list[Reply]:
    today = _today(deps)
    found = occurrences(today, today + timedelta(days=LIST_DAYS), _custom_days(deps))
    async with deps.db.read() as repos:
        silenced = await _silenced(repos, deps)
        plans = {(p.holiday_id, p.day): p.state for p in await repos.greetings.plans_from(today.isoformat())}
    rules = deps.rules.greetings
    lines = [deps.texts.t("greetings.header", time=f"{rules.hour:02d}:{rules.minute:02d}",
                          days=span_text(deps, LIST_DAYS, "days"))]  # fmt: skip
    if not rules.enabled:
        lines.append(deps.texts.t("greetings.disabled"))
    for occ in found:
        points = gift_points(deps, occ.id)
        lines.append(
            deps.texts.t(
                "greetings.line", date=occ.day.isoformat(), id=occ.id, name=holiday_name(deps, occ.id),
                state=_state_text(deps, occ, silenced, plans),
                gift=deps.texts.n("greetings.gift_mark", points, points=points) if points else "",
            )
        )  # fmt: skip
        lines.append(deps.texts.t("greetings.text_line", text=greeting_text(deps, occ.id).replace("\n", " ")))
    if not found:
        lines.append(deps.texts.t("greetings.none"))
    if silenced:
        named = (deps.texts.t("greetings.item", name=holiday_name(deps, i), id=i) for i in sorted(silenced))
        lines.append(deps.texts.t("greetings.silenced", ids=deps.texts.join(named)))
    lines.append(deps.texts.t("greetings.footer"))
    return [Reply("\n".join(lines))]


async def _preview(req: Request, deps: Deps, holiday_id: str) -> list[Reply]:
    occ = next_occurrence(holiday_id, _today(deps), _custom_days(deps))
    async with deps.db.read() as repos:
        off = holiday_id in await _silenced(repos, deps)
    when = deps.local_text(int(send_time(deps, occ.day).timestamp())) if occ else deps.texts.t("greetings.no_date")
    state = deps.texts.t("greetings.state_off") if off else deps.texts.t("greetings.state_on")
    return [
        Reply(deps.texts.t("greetings.preview", id=holiday_id, name=holiday_name(deps, holiday_id), when=when,
                           state=state, text=greeting_text(deps, holiday_id)))
    ]  # fmt: skip


async def _off(req: Request, deps: Deps, holiday_id: str) -> list[Reply]:
    async with deps.db.transaction() as repos:
        fresh = await repos.greetings.silence(holiday_id, req.member_id, deps.now_ts())
        cancelled = await _cancel_pending(repos, deps, [holiday_id])
    name = holiday_name(deps, holiday_id)
    if not fresh:
        return [Reply(deps.texts.t("greetings.off_already", id=holiday_id, name=name))]
    return [Reply(deps.texts.n("greetings.off_done", cancelled, id=holiday_id, name=name, cancelled=cancelled))]


async def _on(req: Request, deps: Deps, holiday_id: str) -> list[Reply]:
    name = holiday_name(deps, holiday_id)
    if holiday_id in deps.rules.greetings.silenced:
        return [Reply(deps.texts.t("greetings.off_in_config", id=holiday_id, name=name))]
    async with deps.db.transaction() as repos:
        was_off = await repos.greetings.unsilence(holiday_id)
    if not was_off:
        return [Reply(deps.texts.t("greetings.on_already", id=holiday_id, name=name))]
    await plan_greetings(deps)
    occ = next_occurrence(holiday_id, _today(deps), _custom_days(deps))
    when = deps.local_text(int(send_time(deps, occ.day).timestamp())) if occ else deps.texts.t("greetings.no_date")
    return [Reply(deps.texts.t("greetings.on_done", id=holiday_id, name=name, when=when))]


_SUBCOMMANDS = {"preview": _preview, "off": _off, "on": _on}


# --- birthdays ----------------------------------------------------------------------------------------
def birthday_keys(day: date, leap_day_on: str) -> list[str]:
    """The birthdays ('MM-DD') greeted on `day`: its own, plus 02-29 on `leap_day_on` in a non-leap year."""
    keys = [day.strftime("%m-%d")]
    if not gregorian.isleap(day.year) and keys[0] == leap_day_on:
        keys.append("02-29")
    return keys


async def _birthday_gift(repos: Repos, deps: Deps, member: BirthdayMember, today: date) -> tuple[int, str]:
    """Book the member's birthday gift unless the birthday was set too recently; returns (points booked, the
    line that tells them about it, or why there is none)."""
    rules = deps.rules.birthdays
    if rules.gift_points <= 0:
        return 0, ""
    if member.set_at is not None:
        set_day = deps.calendar.local(datetime.fromtimestamp(member.set_at, UTC)).date()
        days = (today - set_day).days
        if days < rules.min_days_before:
            return 0, deps.texts.n(
                "birthday_greeting.no_gift_recent", max(days, 0), days=max(days, 0), min_days=rules.min_days_before
            )
    booking = await repos.ledger.append(
        member.id, rules.gift_points, "birthday", f"birthday:{member.id}:{today.year}", deps.now_ts(),
        note=deps.texts.t("birthday_greeting.ledger_note"), ref=today.isoformat(),
    )  # fmt: skip
    if not booking.booked:  # given already this year (the birthday was moved after it was greeted)
        return 0, ""
    return rules.gift_points, deps.texts.n("birthday_greeting.gift", rules.gift_points, points=rules.gift_points)


async def _greet_privately(repos: Repos, deps: Deps, member: BirthdayMember, body: str, record: str) -> int | None:
    """Queue a private wish; returns the announcement id, or None when no running channel reaches them."""
    now = deps.now_ts()
    ann_id = await repos.announcements.create(AnnouncementKind.BIRTHDAY, "personal", record, now, now,
                                              subject=(SubjectKind.MEMBER, member.id))  # fmt: skip
    if await repos.deliveries.queue_personal(ann_id, member.id, body, sorted(deps.outbox.channels())):
        await repos.announcements.settle(ann_id, "queued", now)
        return ann_id
    await repos.announcements.settle(ann_id, "skipped", now, deps.texts.t("birthday_greeting.unreachable"))
    return None


async def send_birthdays(deps: Deps) -> int:
    """Greet today's birthdays: privately where possible, else with a post in the VIP groups naming them;
    returns how many members were greeted. Idempotent per member and day; does nothing before the
    configured hour, so the runtime may call it at start-up as well as daily at that hour."""
    rules = deps.rules.birthdays
    now_local = deps.calendar.local(deps.now())
    if not rules.enabled or now_local.hour < rules.hour:
        return 0
    today = now_local.date()
    day, now = today.isoformat(), deps.now_ts()
    greeted = 0
    async with deps.db.transaction() as repos:
        for member in await repos.greetings.birthdays_on(birthday_keys(today, rules.leap_day_on)):
            if not await repos.greetings.claim_birthday(member.id, day, now):
                continue
            name = member.display_name or deps.texts.t("birthday_greeting.friend")
            gift, gift_line = await _birthday_gift(repos, deps, member, today)
            tail = f"\n{gift_line}" if gift_line else ""
            ann_id = None
            if member.can_message and member.notify:  # members who turned private notices off are greeted in groups
                record = deps.texts.t("birthday_greeting.record", name=name, id=member.id)
                body = deps.texts.t("birthday_greeting.private", name=name) + tail
                ann_id = await _greet_privately(repos, deps, member, body, record)
            via = "private"
            if ann_id is None:
                body = deps.texts.t("birthday_greeting.group", name=name) + tail
                ann_id, _ = await publish(repos, deps, AnnouncementKind.BIRTHDAY, "groups", body,
                                         subject=(SubjectKind.MEMBER, member.id))  # fmt: skip
                via = "group"
            await repos.greetings.record_birthday(member.id, day, via, gift, ann_id)
            greeted += 1
    if greeted:
        deps.outbox.wake()
        log.info("greeted %d birthdays", greeted)
    return greeted
