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
from handlers.shared.broadcast import plan_at, span_text
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


async def _birthday_gifts(
    repos: Repos, deps: Deps, members: list[BirthdayMember], today: date
) -> dict[int, tuple[int, str]]:
    """Book the birthday gift of every member whose birthday was not set too recently, in one bulk statement
    (once per member and year, by the ledger's idempotency key 'birthday:<member id>:<year>'); returns, per
    member, (points booked, the line that tells them about it, or why there is none)."""
    rules = deps.rules.birthdays
    outcome: dict[int, tuple[int, str]] = {member.id: (0, "") for member in members}
    if rules.gift_points <= 0:
        return outcome
    eligible = []
    for member in members:
        if member.set_at is not None:
            set_day = deps.calendar.local(datetime.fromtimestamp(member.set_at, UTC)).date()
            days = (today - set_day).days
            if days < rules.min_days_before:
                shown = max(days, 0)
                outcome[member.id] = (
                    0,
                    deps.texts.n("birthday_greeting.no_gift_recent", shown, days=shown, min_days=rules.min_days_before),
                )
                continue
        eligible.append(member.id)
    booked = await repos.ledger.gift_to_each(
        eligible, rules.gift_points, "birthday", ("birthday:", f":{today.year}"), deps.now_ts(),
        note=deps.texts.t("birthday_greeting.ledger_note"), ref=today.isoformat(),
    )  # fmt: skip
    line = deps.texts.n("birthday_greeting.gift", rules.gift_points, points=rules.gift_points)
    for member_id in booked:  # the others were given theirs this year (the birthday was moved after it was greeted)
        outcome[member_id] = rules.gift_points, line
    return outcome


def _name(deps: Deps, member: BirthdayMember) -> str:
    return member.display_name or deps.texts.t("birthday_greeting.friend")


def _wish(deps: Deps, key: str, member: BirthdayMember, gift_line: str) -> str:
    return deps.texts.t(key, name=_name(deps, member)) + (f"\n{gift_line}" if gift_line else "")


async def _greet_privately(
    repos: Repos, deps: Deps, members: list[BirthdayMember], gifts: dict[int, tuple[int, str]]
) -> dict[int, int]:
    """Queue a private wish to each member, one announcement each, in a few statements whatever their number;
    returns the announcement id per member reached (a member no running channel reaches is left out)."""
    now = deps.now_ts()
    records = [
        (deps.texts.t("birthday_greeting.record", name=_name(deps, m), id=m.id), (SubjectKind.MEMBER, m.id))
        for m in members
    ]
    ann_ids = await repos.announcements.create_many(AnnouncementKind.BIRTHDAY, "personal", records, now, now)
    bodies = [
        (ann_id, m.id, _wish(deps, "birthday_greeting.private", m, gifts[m.id][1]))
        for ann_id, m in zip(ann_ids, members, strict=True)
    ]
    await repos.deliveries.queue_personal_each(bodies, sorted(deps.outbox.channels()))
    skipped = set(
        await repos.announcements.settle_by_deliveries(ann_ids, now, deps.texts.t("birthday_greeting.unreachable"))
    )
    return {m.id: ann_id for ann_id, m in zip(ann_ids, members, strict=True) if ann_id not in skipped}


async def _greet_in_groups(
    repos: Repos, deps: Deps, members: list[BirthdayMember], gifts: dict[int, tuple[int, str]]
) -> dict[int, int]:
    """Post a wish naming each member in the VIP groups, one announcement each, in a few statements; returns
    the announcement id per member."""
    now = deps.now_ts()
    posts = [(_wish(deps, "birthday_greeting.group", m, gifts[m.id][1]), (SubjectKind.MEMBER, m.id)) for m in members]
    ann_ids = await repos.announcements.create_many(AnnouncementKind.BIRTHDAY, "groups", posts, now, now)
    await repos.deliveries.queue_groups_many(ann_ids, sorted(deps.outbox.channels()))
    await repos.announcements.settle_many(ann_ids, "queued", now)
    return {m.id: ann_id for ann_id, m in zip(ann_ids, members, strict=True)}


async def send_birthdays(deps: Deps) -> int:
    """Greet today's birthdays: privately where possible, else with a post in the VIP groups naming them;
    returns how many members were greeted. Idempotent per member and day; does nothing before the
    configured hour, so the runtime may call it at start-up as well as daily at that hour.

    A fan-out: the members are claimed for the day, their gifts booked and their wishes queued with bulk
    statements, a fixed number of them however many members have their birthday."""
    rules = deps.rules.birthdays
    now_local = deps.calendar.local(deps.now())
    if not rules.enabled or now_local.hour < rules.hour:
        return 0
    today = now_local.date()
    day, keys = today.isoformat(), birthday_keys(today, rules.leap_day_on)
    async with deps.db.transaction() as repos:
        claimed = set(await repos.greetings.claim_birthdays(keys, day, deps.now_ts()))
        if not claimed:
            return 0
        members = [m for m in await repos.greetings.birthdays_on(keys) if m.id in claimed]
        gifts = await _birthday_gifts(repos, deps, members, today)
        # Members who turned private notices off are greeted in the groups.
        private = await _greet_privately(repos, deps, [m for m in members if m.can_message and m.notify], gifts)
        in_groups = await _greet_in_groups(repos, deps, [m for m in members if m.id not in private], gifts)
        await repos.greetings.record_birthdays(day, [
            (m.id, "private" if m.id in private else "group", gifts[m.id][0], private.get(m.id, in_groups.get(m.id)))
            for m in members
        ])  # fmt: skip
    deps.outbox.wake()
    log.info("greeted %d birthdays", len(members))
    return len(members)
