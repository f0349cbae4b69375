"""Staff announcements: /announce now, /schedule for later, /scheduled, /unschedule, /delivery outcome
(and /delivery resend of the uncertain rows, confirmed); the minute job that tells staff of failed and
uncertain deliveries; and the member's /notify switch for private notices.
"""

from __future__ import annotations

from functools import partial

from handlers.core.command import required_id
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import extract_flags, parse_id, parse_local_datetime
from handlers.core.subcommands import Subcommands
from handlers.segments.commands import parse_segment, segment_audience, segment_bounds, segment_name
from handlers.shared.broadcast import lead_text, publish
from storage.announcements import Announcement
from storage.segments import SEGMENTS

TEXT_LIMIT = 3500
"""Leaves room under Telegram's 4,096 characters for the bot's own framing."""
RESEND_WORDS = ("resend", "重发")
CONFIRM_WORDS = ("confirm", "确认")
NOTIFY_ON_WORDS = ("on", "开")
NOTIFY_OFF_WORDS = ("off", "关")
REPORT_BATCH = 20
"""Announcements reported by one run of the minute job (the rest wait for the next minute)."""
REPORT_PROBLEMS = 3
"""Failed or uncertain recipients named in a report, with their reasons."""


def _tiers(deps: Deps, value: str | bool | None) -> tuple[tuple[str, ...], Reply | None]:
    if value is None:
        return (), None
    wanted = tuple(dict.fromkeys(t.strip().lower() for t in str(value).split(",") if t.strip()))
    unknown = [t for t in wanted if deps.rules.tier_by_id(t) is None]
    if unknown or not wanted:
        known = deps.texts.join(t.id for t in deps.rules.tiers)
        return (), Reply(deps.texts.t("announce.unknown_tier", tiers=deps.texts.join(unknown) or "?", known=known))
    return wanted, None


async def announce(req: Request, deps: Deps) -> list[Reply]:
    flags, text = extract_flags(req.args, {"tier": True, "segment": True})
    if not text:
        return deps.usage("announce")
    if "segment" in flags:
        return await _announce_to_segment(req, deps, str(flags["segment"]), text)
    tiers, problem = _tiers(deps, flags.get("tier"))
    if problem is not None:
        return [problem]
    async with deps.db.transaction() as repos:
        ann_id, count = await publish(
            repos, deps, "now", "tiers" if tiers else "all", text[:TEXT_LIMIT], tiers=tiers,
            created_by=req.member_id,
        )  # fmt: skip
    deps.outbox.wake()
    return [Reply(deps.texts.n("announce.queued", count, id=ann_id))]


async def _announce_to_segment(req: Request, deps: Deps, name: str, text: str) -> list[Reply]:
    """Privately to the members of one RFM segment (those who can be messaged and want notices)."""
    segment = parse_segment(deps, name)
    if segment is None:
        return [Reply(deps.texts.t("announce.unknown_segment", segment=name[:30], known=deps.texts.join(SEGMENTS)))]
    now = deps.now_ts()
    audience = segment_audience(deps.rules.segments, segment, now)
    body = text[:TEXT_LIMIT]
    async with deps.db.transaction() as repos:
        # Two statements whatever the segment's size: its count, and the deliveries of those who want notices.
        members = await repos.segments.size(segment_bounds(deps.rules.segments, now), segment)
        ann_id = await repos.announcements.create("now", "personal", body, now, now, created_by=req.member_id)
        count = await repos.deliveries.queue_selected(ann_id, audience, sorted(deps.outbox.channels()))
        await repos.announcements.settle(ann_id, "queued", now)
    deps.outbox.wake()
    shown = segment_name(deps, segment)
    return [Reply(deps.texts.n("announce.segment_queued", count, segment=shown, members=members))]


async def schedule(req: Request, deps: Deps) -> list[Reply]:
    flags, rest = extract_flags(req.args, {"tier": True})
    parsed = parse_local_datetime(rest, deps.calendar.zone)
    if parsed is None or not parsed[1]:
        return deps.usage("schedule")
    when, text = parsed
    if when <= deps.now():
        return [
            Reply(deps.texts.t("common.in_past", when=deps.local_text(int(when.timestamp())))),
            *deps.usage("schedule"),
        ]
    tiers, problem = _tiers(deps, flags.get("tier"))
    if problem is not None:
        return [problem]
    due = int(when.timestamp())
    async with deps.db.transaction() as repos:
        ann_id = await repos.announcements.create(
            "scheduled", "tiers" if tiers else "all", text[:TEXT_LIMIT], due, deps.now_ts(), tiers=tiers,
            created_by=req.member_id,
        )  # fmt: skip
    deps.planner.plan(ann_id, when)
    return [Reply(deps.texts.t("schedule.done", id=ann_id, when=deps.local_text(due)))]


async def scheduled(req: Request, deps: Deps) -> list[Reply]:
    async with deps.db.read() as repos:
        pending = [a for a in await repos.announcements.pending() if a.kind != "staff"]
    if not pending:
        return [Reply(deps.texts.t("scheduled.none"))]
    lines = [deps.texts.t("scheduled.header", count=len(pending))]
    for ann in pending[:30]:
        preview = ann.text.replace("\n", " ")
        preview = preview[:60] + ("…" if len(preview) > 60 else "")
        label = _label(deps, ann)
        lines.append(
            deps.texts.t("scheduled.line", id=ann.id, when=deps.local_text(ann.due_at), label=label, text=preview)
        )
    if len(pending) > 30:
        lines.append(deps.texts.t("scheduled.more", count=len(pending) - 30))
    return [Reply("\n".join(lines))]


def _label(deps: Deps, ann: Announcement) -> str:
    """What a waiting announcement is about, in words ('［活动 #1 提前 5 天］'); '' for one staff scheduled."""
    texts = deps.texts
    if ann.kind == "promo":
        lead = lead_text(deps, ann.lead)
        if lead is not None and ann.event_id is not None:
            return texts.t("scheduled.label.event_promo", event=ann.event_id, lead=lead)
        if lead is not None and ann.sale_id is not None:
            return texts.t("scheduled.label.sale_promo", sale=ann.sale_id, lead=lead)
    elif ann.kind == "sale_early" and ann.sale_id is not None:
        tiers = [tier for tier in map(deps.rules.tier_by_id, ann.tiers) if tier is not None]
        return texts.t("scheduled.label.sale_early", sale=ann.sale_id, tier=texts.join(map(deps.tier_name, tiers)))
    elif ann.kind == "sale_start" and ann.sale_id is not None:
        return texts.t("scheduled.label.sale_start", sale=ann.sale_id)
    elif ann.kind == "groupbuy_close" and ann.group_buy_id is not None:
        return texts.t("scheduled.label.groupbuy_close", group_buy=ann.group_buy_id)
    elif ann.kind == "poll_close" and ann.poll_id is not None:
        return texts.t("scheduled.label.poll_close", poll=ann.poll_id)
    elif ann.kind in ("greeting", "followup"):
        return texts.t(f"scheduled.label.{ann.kind}")
    return ""


async def unschedule(req: Request, deps: Deps) -> list[Reply]:
    ann_id = required_id(deps, req.args, "unschedule")
    async with deps.db.transaction() as repos:
        cancelled = await repos.announcements.settle(ann_id, "cancelled", deps.now_ts())
    if not cancelled:
        return [Reply(deps.texts.t("unschedule.not_pending", id=ann_id))]
    deps.planner.unplan(ann_id)
    return [Reply(deps.texts.t("unschedule.done", id=ann_id))]


async def _report(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/delivery <id>: how far an announcement's delivery got, and what failed."""
    ann_id = required_id(deps, args, "delivery")
    async with deps.db.read() as repos:
        ann = await repos.announcements.get(ann_id)
        counts = await repos.deliveries.counts(ann_id)
        failures = await repos.deliveries.failures(ann_id)
    if ann is None:
        return [Reply(deps.texts.t("delivery.unknown", id=ann_id))]
    total = sum(counts.values())
    text = deps.texts.n(
        "delivery.status",
        total,
        id=ann_id,
        state=deps.texts.t(f"broadcast.state_{ann.state}"),
        total=total,
        sent=counts.get("sent", 0),
        pending=counts.get("pending", 0) + counts.get("sending", 0),
        failed=counts.get("failed", 0),
        uncertain=counts.get("uncertain", 0),
    )
    if ann.outcome:
        text += "\n" + ann.outcome
    for target, error in failures:
        shown = target or deps.texts.t("delivery.staff_target")  # a staff notice's row names no one
        text += "\n" + deps.texts.t("delivery.failure", target=shown, error=error)
    return [Reply(text)]


async def _resend(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/delivery resend <id> [confirm]: uncertain rows may have arrived, so staff confirm knowingly."""
    words = args.split()
    ann_id = parse_id(words[0]) if words else None
    confirmed = len(words) == 2 and words[1].lower() in CONFIRM_WORDS
    if ann_id is None or len(words) > 2 or (len(words) == 2 and not confirmed):
        return deps.usage("delivery")
    if not confirmed:
        async with deps.db.read() as repos:
            ann = await repos.announcements.get(ann_id)
            uncertain = (await repos.deliveries.counts(ann_id)).get("uncertain", 0)
    else:
        async with deps.db.transaction() as repos:
            ann = await repos.announcements.get(ann_id)
            uncertain = await repos.deliveries.resend_uncertain(ann_id) if ann is not None else 0
    if ann is None:
        return [Reply(deps.texts.t("delivery.unknown", id=ann_id))]
    if not uncertain:
        return [Reply(deps.texts.t("delivery.resend_none", id=ann_id))]
    if not confirmed:
        return [Reply(deps.texts.n("delivery.resend_ask", uncertain, id=ann_id))]
    deps.outbox.wake()
    return [Reply(deps.texts.n("delivery.resend_done", uncertain, id=ann_id))]


delivery = Subcommands("delivery", dict.fromkeys(RESEND_WORDS, _resend), otherwise=_report)
"""Staff: /delivery <id> for a report, /delivery resend <id> [confirm] (重发)."""


async def report_outcomes(deps: Deps) -> int:
    """The minute job: one staff notice for each announcement whose deliveries have all settled with some
    failed or uncertain, marked reported in the same transaction so it is told exactly once. Returns how
    many were reported. Staff notices themselves are never reported."""
    staff = sorted(deps.outbox.staff_channels())
    if not staff:
        return 0
    now = deps.now_ts()
    reported = 0
    async with deps.db.transaction() as repos:
        for ann_id in await repos.announcements.unreported_outcomes(REPORT_BATCH):
            ann = await repos.announcements.get(ann_id)
            if ann is None or not await repos.announcements.mark_outcome_reported(ann_id, now):
                continue
            counts = await repos.deliveries.counts(ann_id)
            problems = await repos.deliveries.problems(ann_id, REPORT_PROBLEMS)
            notice = await repos.announcements.create("staff", "staff", _outcome_text(deps, ann, counts, problems),
                                                      now, now)  # fmt: skip
            await repos.deliveries.queue_staff(notice, staff)
            await repos.announcements.settle(notice, "queued", now)
            reported += 1
    if reported:
        deps.outbox.wake()
    return reported


def _outcome_text(deps: Deps, ann: Announcement, counts: dict[str, int], problems: list[tuple[str, str, str]]) -> str:
    preview = ann.text.replace("\n", " ")
    preview = preview[:40] + ("…" if len(preview) > 40 else "")
    uncertain = counts.get("uncertain", 0)
    total = sum(counts.values())
    head = deps.texts.n(
        "delivery.report", total, id=ann.id, text=preview, total=total, sent=counts.get("sent", 0),
        failed=counts.get("failed", 0), uncertain=uncertain,
    )  # fmt: skip
    lines = [head]
    for state, target, error in problems:
        label = deps.texts.t("delivery.report_failed" if state == "failed" else "delivery.report_uncertain")
        shown = target or deps.texts.t("delivery.staff_target")
        lines.append(deps.texts.t("delivery.report_problem", state=label, target=shown, error=error[:200] or "?"))
    if uncertain:
        lines.append(deps.texts.n("delivery.report_resend", uncertain, id=ann.id))
    lines.append(deps.texts.t("delivery.report_details", id=ann.id))
    return "\n".join(lines)


async def _notify_status(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/notify alone (or with something else): whether announcements reach the member privately."""
    async with deps.db.read() as repos:
        current = await repos.members.notify(req.member_id)
    state = deps.texts.t("notify.state_on" if current else "notify.state_off")
    return [Reply(deps.texts.t("notify.status", state=state)), *deps.usage("notify")]


async def _set_notify(req: Request, deps: Deps, args: str, *, on: bool) -> list[Reply]:
    """/notify on | off: announcements reach the member privately, or not."""
    async with deps.db.transaction() as repos:
        await repos.members.set_notify(req.member_id, on)
        reachable = await repos.members.can_message(req.member_id)
    if on and not reachable:
        return [Reply(deps.texts.t("notify.on_needs_start"))]
    return [Reply(deps.texts.t("notify.enabled" if on else "notify.disabled"))]


notify = Subcommands(
    "notify",
    {
        **dict.fromkeys(NOTIFY_ON_WORDS, partial(_set_notify, on=True)),
        **dict.fromkeys(NOTIFY_OFF_WORDS, partial(_set_notify, on=False)),
    },
    missing=_notify_status,
    otherwise=_notify_status,
    alone=True,
)
"""/notify on | off (开 | 关); anything else shows the current choice."""
