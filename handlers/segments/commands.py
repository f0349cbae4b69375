"""RFM segments (RFM 分层) for staff: /segments counts members per segment, /segment lists one segment's
members page by page; `segment_audience` gives announcements their audience (one SELECT), `winback` the care
messages.

How members are classified (every member in exactly one segment) is documented in `storage.segments`.
"""

from __future__ import annotations

import logging

from handlers.core.deps import Deps, Request
from handlers.core.kinds import AnnouncementKind
from handlers.core.messages import Reply
from handlers.core.parsing import parse_int, split_first
from handlers.core.rules import SegmentRules
from handlers.shared.broadcast import send_personal, span_text
from storage.deliveries import MemberSelect
from storage.repos import Repos
from storage.segments import DAY, SEGMENTS, CareDue, SegmentBounds, SegmentCounts, members_of

log = logging.getLogger(__name__)

PAGE_SIZE = 20


def segment_bounds(rules: SegmentRules, now: int) -> SegmentBounds:
    """The cut-off instants of the segments at `now` (unix seconds). Each range's start decides; its end is the
    start of the next older segment (dormant_high ends where dormant_low begins, dormant_low ends at lost_days)."""
    return SegmentBounds.at(
        now,
        new_days=rules.new_days,
        active_days=rules.active_days,
        dormant_high_from=rules.dormant_high_days[0],
        dormant_low_from=rules.dormant_low_days[0],
        lost_days=rules.lost_days,
    )


async def segment_member_ids(repos: Repos, rules: SegmentRules, name: str, now: int) -> list[int]:
    """Ids of the members in segment `name` at `now` (an id of `storage.segments.SEGMENTS`; '-' may stand for
    '_', e.g. 'dormant-high'). Raises ValueError for an unknown name."""
    return await repos.segments.member_ids(segment_bounds(rules, now), _segment_id(name))


def _segment_id(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def segment_audience(rules: SegmentRules, name: str, now: int) -> MemberSelect:
    """The members of segment `name` at `now` as one SELECT, for queueing deliveries in one statement
    (`DeliveryRepo.queue_selected`). Raises ValueError for an unknown name."""
    return members_of(segment_bounds(rules, now), _segment_id(name))


async def segment_counts(repos: Repos, deps: Deps) -> SegmentCounts:
    return await repos.segments.counts(segment_bounds(deps.rules.segments, deps.now_ts()))


def segment_name(deps: Deps, segment: str) -> str:
    return deps.texts.t(f"segments.name_{segment}")


def parse_segment(deps: Deps, text: str) -> str | None:
    """A segment from its id ('dormant_high'), with '-' for '_', or its display name in the bot's locale."""
    wanted = text.strip().casefold()
    for segment in SEGMENTS:
        if wanted in (segment, segment.replace("_", "-"), segment_name(deps, segment).casefold()):
            return segment
    return None


def _rule_text(deps: Deps, segment: str) -> str:
    """What puts a member in `segment`, with the configured numbers of days."""
    rules = deps.rules.segments

    def span(days: int) -> str:
        return span_text(deps, days, "days")

    days: dict[str, object] = {
        "new": {"days": span(rules.new_days)},
        "active": {"days": span(rules.active_days)},
        "cooling": {"low": min(rules.new_days, rules.active_days), "high": span(rules.dormant_high_days[0])},
        "dormant_high": {"low": rules.dormant_high_days[0], "high": span(rules.dormant_low_days[0])},
        "dormant_low": {"low": rules.dormant_low_days[0], "high": span(rules.lost_days)},
        "lost": {"days": span(rules.lost_days)},
        "never": {},
    }[segment]
    return deps.texts.t(f"segments.rule_{segment}", **days)


def percent(deps: Deps, part: int, whole: int) -> str:
    """`part` of `whole` as '28.6%', or the catalog's n/a when `whole` is 0."""
    return f"{part / whole:.1%}" if whole else deps.texts.t("segments.na")


def counts_line(deps: Deps, counts: SegmentCounts) -> str:
    """All segment counts on one line: 'New 1 · Active 2 · ...'."""
    return " · ".join(f"{segment_name(deps, s)} {counts.members[s]}" for s in SEGMENTS)


# --- staff: /segments, /segment ------------------------------------------------------------------------
async def segments(req: Request, deps: Deps) -> list[Reply]:
    async with deps.db.read() as repos:
        counts = await segment_counts(repos, deps)
    texts = deps.texts
    today = deps.local_text(deps.now_ts(), with_time=False)
    lines = [texts.n("segments.header", counts.total, date=today, total=counts.total)]
    for segment in SEGMENTS:
        count = counts.members[segment]
        lines.append(texts.t("segments.line", name=segment_name(deps, segment), rule=_rule_text(deps, segment),
                             count=count, share=percent(deps, count, counts.total)))  # fmt: skip
    lines.append(texts.t("segments.repurchase", rate=percent(deps, counts.repeat_buyers, counts.buyers),
                         repeat=counts.repeat_buyers, buyers=counts.buyers))  # fmt: skip
    lines.append(texts.t("segments.footer", names=texts.join(SEGMENTS)))
    return [Reply("\n".join(lines))]


async def segment(req: Request, deps: Deps) -> list[Reply]:
    name_text, rest = split_first(req.args)
    chosen = parse_segment(deps, name_text) if name_text else None
    page_text = rest.strip() or "1"
    page = parse_int(page_text, 1, 999_999)
    if chosen is None or page is None:
        return [*deps.usage("segment"), Reply(deps.texts.t("segment.names", names=deps.texts.join(SEGMENTS)))]
    now = deps.now_ts()
    async with deps.db.read() as repos:
        found = await repos.segments.page(
            segment_bounds(deps.rules.segments, now), chosen, PAGE_SIZE, (page - 1) * PAGE_SIZE
        )
    texts = deps.texts
    name = segment_name(deps, chosen)
    pages = max(1, -(-found.total // PAGE_SIZE))
    if found.total == 0:
        return [Reply(texts.t("segment.empty", name=name))]
    if not found.members:
        return [Reply(texts.n("segment.no_page", pages, page=page, pages=pages, name=name))]
    lines = [texts.n("segment.header", found.total, name=name, page=page, pages=pages)]
    for number, member in enumerate(found.members, start=(page - 1) * PAGE_SIZE + 1):
        if member.last_purchase_at is None:
            lines.append(texts.t("segment.line_never", n=number, id=member.member_id, name=member.display_name))
        else:
            last = member.last_purchase_at
            lines.append(texts.t("segment.line", n=number, id=member.member_id, name=member.display_name,
                                 date=deps.local_text(last, with_time=False),
                                 ago=texts.n("segment.days_ago", max(0, (now - last) // DAY)),
                                 purchases=texts.n("segment.purchases", member.purchases)))  # fmt: skip
    if page < pages:
        lines.append(texts.t("segment.more", command=f"/segment {chosen} {page + 1}"))
    return [Reply("\n".join(lines))]


# --- the scheduler: win-back care messages -------------------------------------------------------------
def _care_text(deps: Deps, due: CareDue, now: int) -> str:
    """The catalog's care message of the segment entered (winback.dormant_high / winback.dormant_low)."""
    days = max(0, (now - due.last_purchase_at) // DAY)
    return deps.texts.t(f"winback.{due.segment}", name=due.display_name, days=span_text(deps, days, "days"))


async def winback(deps: Deps) -> int:
    """Send a care message to every member who entered dormant_high or dormant_low since the last run, once per
    entry (a new purchase and a later return to the segment is a new entry); returns how many were sent.

    Does nothing unless `segments.winback` is on. Members who cannot be messaged privately, or turned private
    notices off, are remembered but not marked: they get the message once they can be reached in that entry."""
    if not deps.rules.segments.winback:
        return 0
    now = deps.now_ts()
    channels = sorted(deps.outbox.channels())
    async with deps.db.transaction() as repos:
        entered = await repos.segments.track(segment_bounds(deps.rules.segments, now), now)
        due = await repos.segments.care_due(channels)
        if due:  # marked first: only the entries this run marks get their message (once, however many runs)
            marked = set(await repos.segments.mark_cared([c.member_id for c in due], now))
            due = [c for c in due if c.member_id in marked]
        if due:
            bodies = [(c.member_id, _care_text(deps, c, now)) for c in due]
            summary = deps.texts.n("winback.announcement", len(due))
            await send_personal(repos, deps, AnnouncementKind.WINBACK, summary, bodies)
    log.info("win-back: %d segment entries began, %d care messages queued", entered, len(due))
    if due:
        deps.outbox.wake()
    return len(due)
