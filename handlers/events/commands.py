"""Events (活动): staff create, edit and cancel them; promos are planned from the lead schedule so that the
first one goes out at least `promo_lead_days` ahead; members sign up, withdraw and earn attendance points.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from handlers.core.command import Refusal, required_id
from handlers.core.deps import Deps, Request
from handlers.core.kinds import AnnouncementKind, SubjectKind, SubjectState
from handlers.core.messages import Button, Reply
from handlers.core.parsing import extract_flags, parse_id, parse_int, parse_local_datetime, split_first
from handlers.core.subcommands import Subcommands
from handlers.core.targets import resolve_target, split_target
from handlers.shared.broadcast import (
    PROMO_RULES,
    check_lead_time,
    countdown_text,
    inside_lead_time,
    lead_text,
    plan_leads,
    plan_lines,
    publish,
    unplan_pending,
)
from storage.events import AttendResult, Event, SignupResult
from storage.repos import Repos

TITLE_LIMIT = 120
DESCRIPTION_LIMIT = 2000

POINTS_LIMIT = 1_000_000
"""The most points attending one event may earn."""


def join_button(deps: Deps, event_id: int) -> Button:
    """Short, versioned callback data: the button is the command `/join <id>`."""
    return Button(deps.texts.t("event.join_button"), f"v1:join:{event_id}")


def promo_text(deps: Deps, event: Event, due: datetime) -> str:
    start = datetime.fromtimestamp(event.starts_at, due.tzinfo)
    remaining = start - due
    countdown = countdown_text(deps, remaining)
    capacity = deps.texts.t("event.capacity", capacity=event.capacity) if event.capacity else ""
    return deps.texts.t(
        "event.promo",
        id=event.id,
        title=event.title,
        when=deps.local_text(event.starts_at),
        countdown=countdown,
        description=f"\n{event.description}" if event.description else "",
        capacity=capacity,
    )


async def plan_promos(repos: Repos, deps: Deps, event: Event, *, announce_now: bool = True) -> list[tuple[str, int]]:
    """Plan the event's promos from the lead schedule (see `broadcast.plan_leads`)."""
    return await plan_leads(
        repos, deps, event.starts_at, lambda due: promo_text(deps, event, due), (join_button(deps, event.id),),
        announce_now=announce_now, subject=(SubjectKind.EVENT, event.id),
    )  # fmt: skip


async def _event_state(repos: Repos, event_id: int) -> SubjectState | None:
    event = await repos.events.get(event_id)
    return None if event is None else SubjectState(event.state == "active", event.starts_at)


SUBJECTS = {SubjectKind.EVENT: _event_state}
"""A cancelled event's promos are skipped, late ones too."""
DUE_RULES = PROMO_RULES


async def _replan(repos: Repos, deps: Deps, event_id: int, announce_now: bool) -> list[tuple[str, int]]:
    await unplan_pending(repos, deps, (SubjectKind.EVENT, event_id))
    event = await repos.events.get(event_id)
    assert event is not None
    return await plan_promos(repos, deps, event, announce_now=announce_now)


async def _rewrite_promos(repos: Repos, deps: Deps, event_id: int) -> int:
    """Give the event's pending promos its current title, description and capacity; their times (and so
    their countdowns) stay. Returns how many were rewritten."""
    event = await repos.events.get(event_id)
    assert event is not None
    pending = await repos.announcements.pending(kind=AnnouncementKind.PROMO, subject=(SubjectKind.EVENT, event_id))
    for ann in pending:
        await repos.announcements.set_text(ann.id, promo_text(deps, event, datetime.fromtimestamp(ann.due_at, UTC)))
    return len(pending)


# --- /events and /event ----------------------------------------------------------------------------
async def events(req: Request, deps: Deps) -> list[Reply]:
    async with deps.db.read() as repos:
        upcoming = await repos.events.upcoming(deps.now_ts())
    if not upcoming:
        return [Reply(deps.texts.t("events.none"))]
    lines = [deps.texts.t("events.header")]
    for event in upcoming:
        seats = f"{event.joined}/{event.capacity}" if event.capacity else str(event.joined)
        lines.append(deps.texts.t("events.line", id=event.id, when=deps.local_text(event.starts_at),
                                  title=event.title, seats=seats))  # fmt: skip
    lines.append(deps.texts.t("events.footer"))
    return [Reply("\n".join(lines))]


async def _add(req: Request, deps: Deps, args: str) -> list[Reply]:
    flags, rest = extract_flags(args, {"force": False, "capacity": True, "points": True})
    parsed = parse_local_datetime(rest, deps.calendar.zone)
    if parsed is None:
        return deps.usage("event_add")
    when, tail = parsed
    title, _, description = tail.partition("|")
    title, description = title.strip(), description.strip()
    if not title:
        return deps.usage("event_add")
    capacity = parse_id(str(flags["capacity"])) if "capacity" in flags else None
    points = deps.rules.events.attend_points
    if "points" in flags:
        found_points = parse_int(str(flags["points"]), 0, POINTS_LIMIT)
        points = -1 if found_points is None else found_points
    if ("capacity" in flags and capacity is None) or points < 0:
        return deps.usage("event_add")
    force = bool(flags.get("force"))
    check_lead_time(deps, when, force, "event_add")
    bent = inside_lead_time(deps, when)
    async with deps.db.transaction() as repos:
        event_id = await repos.events.create(
            title[:TITLE_LIMIT], description[:DESCRIPTION_LIMIT], int(when.timestamp()), capacity, points, bent,
            req.member_id, deps.now_ts(),
        )  # fmt: skip
        created = await repos.events.get(event_id)
        assert created is not None
        planned = await plan_promos(repos, deps, created)
    deps.outbox.wake()
    text = deps.texts.t("event.created", id=event_id, title=created.title, when=deps.local_text(created.starts_at),
                        plan=plan_lines(deps, planned))  # fmt: skip
    if bent and any(lead == "now" for lead, _ in planned):  # one message: a busy group's turns are few
        text += "\n\n" + deps.texts.t("event.rule_bent", days=deps.rules.events.promo_lead_days)
    return [Reply(text)]


async def _show(req: Request, deps: Deps, args: str) -> list[Reply]:
    event_id = required_id(deps, args, "event")
    async with deps.db.read() as repos:
        found = await repos.events.get(event_id)
        promos = await repos.announcements.for_subject(SubjectKind.EVENT, event_id) if found else []
    if found is None:
        return [Reply(deps.texts.t("event.unknown", id=event_id))]
    seats = f"{found.joined}/{found.capacity}" if found.capacity else str(found.joined)
    lines = [
        deps.texts.t("event.details", id=found.id, title=found.title, when=deps.local_text(found.starts_at),
                     state=deps.texts.t(f"event.state_{found.state}"), seats=seats, points=found.attend_points,
                     description=found.description or "-"),
    ]  # fmt: skip
    for ann in promos:
        lead = lead_text(deps, ann.lead)
        state = deps.texts.t(f"broadcast.state_{ann.state}")
        values = {"id": ann.id, "when": deps.local_text(ann.due_at), "state": state}
        if lead is not None:
            lines.append(deps.texts.t("event.promo_line", lead=lead, **values))
        elif ann.kind == AnnouncementKind.CANCEL:
            lines.append(deps.texts.t("event.promo_cancel_line", **values))
        else:  # the first promo of an event inside the lead time, sent at once
            lines.append(deps.texts.t("event.promo_now_line", **values))
    return [Reply("\n".join(lines))]


async def _edit(req: Request, deps: Deps, args: str) -> list[Reply]:
    id_text, rest = split_first(args)
    event_id = parse_id(id_text)
    field, value = split_first(rest)
    field = field.lower()
    if event_id is None or field not in ("start", "title", "desc", "capacity", "points") or not value:
        return deps.usage("event_edit")
    changes: dict[str, object] = {}
    announce_now = False
    if field == "start":
        flags, value = extract_flags(value, {"force": False})
        parsed = parse_local_datetime(value, deps.calendar.zone)
        if parsed is None or parsed[1]:
            return deps.usage("event_edit")
        check_lead_time(deps, parsed[0], bool(flags.get("force")), "event_edit")
        changes["starts_at"] = int(parsed[0].timestamp())
        announce_now = True
    elif field == "title":
        changes["title"] = value[:TITLE_LIMIT]
    elif field == "desc":
        changes["description"] = value[:DESCRIPTION_LIMIT]
    elif field == "capacity":
        capacity = None if value.lower() in ("none", "0", "无") else parse_id(value)
        if capacity is None and value.lower() not in ("none", "0", "无"):
            return deps.usage("event_edit")
        changes["capacity"] = capacity
    else:
        found_points = parse_int(value, 0, POINTS_LIMIT)
        if found_points is None:
            return deps.usage("event_edit")
        changes["attend_points"] = found_points
    async with deps.db.transaction() as repos:
        current = await _upcoming(repos, deps, event_id)
        if field == "capacity":
            capacity = changes["capacity"]
            assert capacity is None or isinstance(capacity, int)
            if not await repos.events.set_capacity(event_id, capacity):  # fewer places than sign-ups
                now_joined = await repos.events.get(event_id)
                joined = now_joined.joined if now_joined else current.joined
                return [Reply(deps.texts.n("event.capacity_below", joined, id=event_id))]
        else:
            await repos.events.update(event_id, **changes)
        planned, rewritten = None, 0
        if field == "start":  # only a new start moves the promos
            planned = await _replan(repos, deps, event_id, announce_now)
        elif field in ("title", "desc", "capacity"):  # what the promos say: their texts follow, in place
            rewritten = await _rewrite_promos(repos, deps, event_id)
    deps.outbox.wake()
    text = deps.texts.t("event.edited", id=event_id)
    if planned is not None:
        text += "\n" + (plan_lines(deps, planned) or deps.texts.t("event.no_promos_left"))
    elif rewritten:
        text += "\n" + deps.texts.n("event.promos_updated", rewritten)
    return [Reply(text)]


async def _cancel(req: Request, deps: Deps, args: str) -> list[Reply]:
    event_id = required_id(deps, args, "event")
    async with deps.db.transaction() as repos:
        found = await repos.events.get(event_id)
        if found is None or not await repos.events.cancel(event_id):
            return [Reply(deps.texts.t("event.unknown", id=event_id))]
        await unplan_pending(repos, deps, (SubjectKind.EVENT, event_id))
        notice = deps.texts.t("event.cancel_notice", title=found.title, when=deps.local_text(found.starts_at))
        ann_id, count = await publish(repos, deps, AnnouncementKind.CANCEL, "signups", notice,
                                      subject=(SubjectKind.EVENT, event_id), created_by=req.member_id)  # fmt: skip
    deps.outbox.wake()
    return [Reply(deps.texts.n("event.cancelled", count, id=event_id, title=found.title, signups=found.joined,
                               announcement=ann_id))]  # fmt: skip


async def _attend(req: Request, deps: Deps, args: str) -> list[Reply]:
    id_text, rest = split_first(args)
    event_id = parse_id(id_text)
    inner = replace(req, args=rest)  # the same audit note: the member found is the audit row's target
    target = split_target(inner)
    if event_id is None or target is None or target.rest:
        return deps.usage("event_attend")
    now = deps.now_ts()
    window = int(deps.rules.events.attend_window.total_seconds())
    async with deps.db.transaction() as repos:
        found = await repos.events.get(event_id)
        if found is None:
            return [Reply(deps.texts.t("event.unknown", id=event_id))]
        closed = _attendance_closed(deps, found, now, window)
        if closed is not None:
            return [closed]
        member = await resolve_target(repos, inner, target)
        if member is None:
            return [Reply(deps.texts.t("common.member_not_found", target=target.target or "?"))]
        result = await repos.events.mark_attended(event_id, member.id, now, window)
        if result is AttendResult.RECORDED and found.attend_points > 0:
            await repos.ledger.append(
                member.id, found.attend_points, "event", f"attend:{event_id}:{member.id}", now,
                note=found.title, ref=str(event_id), actor_id=req.member_id,
            )  # fmt: skip
    if result is AttendResult.CLOSED:  # cancelled just now, between the read and the booking
        return [Reply(deps.texts.t("event.attend_cancelled", id=event_id, title=found.title))]
    if result is AttendResult.ALREADY:
        return [Reply(deps.texts.t("event.attend_again", name=member.display_name, id=event_id))]
    return [Reply(deps.texts.n("event.attended", found.attend_points, name=member.display_name, title=found.title))]


def _attendance_closed(deps: Deps, found: Event, now: int, window: int) -> Reply | None:
    """Why attendance cannot be recorded now (the event is not on), or None when it can."""
    if found.state != "active":
        return Reply(deps.texts.t("event.attend_cancelled", id=found.id, title=found.title))
    if now < found.starts_at:
        return Reply(deps.texts.t("event.attend_not_started", id=found.id, title=found.title,
                                  when=deps.local_text(found.starts_at)))  # fmt: skip
    if now > found.starts_at + window:
        return Reply(deps.texts.t("event.attend_over", id=found.id, title=found.title,
                                  until=deps.local_text(found.starts_at + window)))  # fmt: skip
    return None


event = Subcommands("event", {"add": _add, "show": _show, "edit": _edit, "cancel": _cancel, "attend": _attend})
"""Staff: /event add | show | edit | cancel | attend."""


async def _upcoming(repos: Repos, deps: Deps, event_id: int) -> Event:
    """The event, active and not started yet; refused ("no such event", "already started") otherwise."""
    found = await repos.events.get(event_id)
    if found is None or found.state != "active":
        raise Refusal(Reply(deps.texts.t("event.unknown", id=event_id)))
    if found.starts_at <= deps.now_ts():
        raise Refusal(Reply(deps.texts.t("event.already_started", id=event_id)))
    return found


# --- members sign up -------------------------------------------------------------------------------
async def join(req: Request, deps: Deps) -> list[Reply]:
    event_id = required_id(deps, req.args, "join")
    async with deps.db.transaction() as repos:
        found = await _upcoming(repos, deps, event_id)
        result = await repos.events.join(event_id, req.member_id, deps.now_ts())
        after = await repos.events.get(event_id)
    assert after is not None
    key = {SignupResult.JOINED: "join.done", SignupResult.ALREADY: "join.already", SignupResult.FULL: "join.full"}
    seats = f"{after.joined}/{after.capacity}" if after.capacity else str(after.joined)
    return [Reply(deps.texts.t(key[result], name=req.name, title=found.title, when=deps.local_text(found.starts_at),
                               seats=seats, id=event_id))]  # fmt: skip


async def leave(req: Request, deps: Deps) -> list[Reply]:
    event_id = required_id(deps, req.args, "leave")
    async with deps.db.transaction() as repos:
        found = await repos.events.get(event_id)
        withdrawn = found is not None and await repos.events.withdraw(event_id, req.member_id)
    if found is None:
        return [Reply(deps.texts.t("event.unknown", id=event_id))]
    key = "leave.done" if withdrawn else "leave.not_joined"
    return [Reply(deps.texts.t(key, title=found.title, id=event_id))]
