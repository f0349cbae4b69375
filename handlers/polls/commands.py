"""Polls (满意度调查): 1-5 ratings, NPS 0-10, choices (the platform's own poll where there is one) and
rankings built tap by tap with undo. One answer per member, changeable until the poll closes (a finished
ranking stays until the member starts over); closing (on time through the scheduler, or by staff) posts the
results where the poll went and sends staff a chart. A tier-only poll goes privately to those tiers only.
Answers are whole numbers (digits of any script, see `parse_int`); anything else is refused with how to answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from handlers.announcements.recall import recall_announcements
from handlers.core.command import Preparing, required_id
from handlers.core.deps import Deps, Request
from handlers.core.kinds import AnnouncementKind, DueRule, SubjectKind
from handlers.core.messages import Button, Reply
from handlers.core.parsing import extract_flags, parse_id, parse_int, parse_local_datetime, split_first
from handlers.core.subcommands import Subcommands, SubHandler
from handlers.polls import results as poll_results
from handlers.shared.broadcast import plan_at, publish, stored_buttons, unplan_pending
from handlers.shared.charts import bar_chart, draw
from handlers.shared.exports import csv_document
from handlers.shared.tiers import member_tier
from storage.announcements import Announcement
from storage.polls import Answer, Poll, PollClosed
from storage.repos import Repos

QUESTION_LIMIT = 300
OPTION_LIMIT = 100
OPTION_COUNTS = {"choice": (2, 10), "rank": (3, 10), "rating": (0, 0), "nps": (0, 0)}
AUDIENCES = ("all", "groups", "members")
_SEPARATORS = re.compile(r"[\s,，、]+")
_SCORE_UNIT = re.compile(r"(?:⭐|星|分)$")
log = logging.getLogger(__name__)

_DAY_SECONDS = 24 * 60 * 60
_CLOSE = re.compile(r"--close[= ]+(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}[ T]\d{1,2}:\d{2})")


# --- reading numbers --------------------------------------------------------------------------------
def _wholes(text: str) -> list[int] | None:
    """Numbers (0 or more, at most 999) separated by spaces, commas or '、'; None when any part is not one."""
    tokens = [t for t in _SEPARATORS.split(text.strip()) if t]
    numbers = [parse_int(t, 0, 999) for t in tokens]
    return [n for n in numbers if n is not None] if tokens and None not in numbers else None


def _audience(created: Poll) -> tuple[str, tuple[str, ...]]:
    """Who the poll (and its results) reach: a tier-only poll only those tiers, privately."""
    return ("tiers", created.tiers) if created.tiers else (created.audience, ())


# --- what members see ------------------------------------------------------------------------------
def vote_buttons(deps: Deps, poll: Poll) -> tuple[Button, ...]:
    """Short, versioned callback data: each button is the command it stands for."""
    if poll.kind == "rating":
        return tuple(Button(f"{n}⭐", f"v1:vote:{poll.id} {n}") for n in range(1, 6))
    if poll.kind == "nps":
        return tuple(Button(str(n), f"v1:vote:{poll.id} {n}") for n in range(11))
    if poll.kind == "rank":
        items = tuple(Button(f"{i + 1}. {item}"[:40], f"v1:rank:{poll.id} {i}") for i, item in enumerate(poll.options))
        return (*items, Button(deps.texts.t("poll.undo_button"), f"v1:rank:{poll.id} undo"),
                Button(deps.texts.t("poll.restart_button"), f"v1:rank:{poll.id} restart"))  # fmt: skip
    return ()


def poll_text(deps: Deps, poll: Poll) -> str:
    options = "".join(f"\n{i + 1}. {option}" for i, option in enumerate(poll.options))
    how = deps.texts.t(f"poll.how_{poll.kind}", id=poll.id)
    points = deps.texts.n("poll.points_line", poll.points) if poll.points else ""
    return deps.texts.t("poll.post", id=poll.id, question=poll.question, options=options, how=how, points=points,
                        closes=deps.local_text(poll.closes_at))  # fmt: skip


def _ranking_text(deps: Deps, poll: Poll, ranking: list[int]) -> str:
    return " ".join(f"{place + 1}.{poll.options[index]}" for place, index in enumerate(ranking))


# --- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Bars:
    """What the results chart shows."""

    title: str
    labels: list[str]
    values: list[float]
    horizontal: bool
    fallback: str


@dataclass(frozen=True, slots=True)
class Drawn:
    """A poll's results chart, drawn by `prepare_poll` before the update's transaction."""

    poll_id: int
    text: str
    chart: bytes


async def results(deps: Deps, poll: Poll, answers: list[Answer]) -> tuple[str, bytes]:
    """The results summary and its bar chart (PNG), drawn on a worker thread (`charts.draw`): call it outside
    any write transaction."""
    text, bars = _summary(deps, poll, answers)
    return text, await _draw(bars)


async def _draw(bars: _Bars) -> bytes:
    return await draw(bar_chart, bars.title, bars.labels, bars.values, horizontal=bars.horizontal,
                      fallback_title=bars.fallback)  # fmt: skip


def _summary(deps: Deps, poll: Poll, answers: list[Answer]) -> tuple[str, _Bars]:
    """The results summary (quick arithmetic) and what its chart shows (slow to draw)."""
    texts = deps.texts
    done = [a.value for a in answers if a.complete]
    head = texts.t("poll.results_head", id=poll.id, question=poll.question, count=len(done))
    title = f"#{poll.id} {poll.question}"
    fallback = f"#{poll.id}"  # ASCII, for machines without a Chinese font
    if poll.kind == "rating":
        r = poll_results.rating([int(v) for v in done])
        body = texts.t("poll.results_rating", average=f"{r.average:.2f}", satisfaction=f"{r.satisfaction:.0%}",
                       distribution=" ".join(f"{k}⭐×{v}" for k, v in r.distribution.items()))  # fmt: skip
        labels, values, horizontal = [str(k) for k in r.distribution], list(r.distribution.values()), False
    elif poll.kind == "nps":
        n = poll_results.nps([int(v) for v in done])
        body = texts.t("poll.results_nps", score=f"{n.score:+.0f}", promoters=f"{n.promoters:.0%}",
                       passives=f"{n.passives:.0%}", detractors=f"{n.detractors:.0%}")  # fmt: skip
        labels, values, horizontal = [str(k) for k in n.distribution], list(n.distribution.values()), False
    elif poll.kind == "choice":
        counts = poll_results.choice([list(v) for v in done], len(poll.options))
        body = "\n".join(texts.n("poll.results_choice_line", c, n=i + 1, option=o)
                         for i, (o, c) in enumerate(zip(poll.options, counts, strict=True)))  # fmt: skip
        labels, values, horizontal = list(poll.options), counts, True
    else:
        ranked = poll_results.borda([list(v) for v in done], len(poll.options))
        body = "\n".join(
            texts.t("poll.results_rank_line", place=place + 1, option=poll.options[r.index], borda=r.borda,
                    mean=f"{r.mean_rank:.2f}")
            for place, r in enumerate(ranked)
        )  # fmt: skip
        labels, values, horizontal = [poll.options[r.index] for r in ranked], [r.borda for r in ranked], True
    return f"{head}\n{body}", _Bars(title, labels, values, horizontal, fallback)


async def _close(repos: Repos, deps: Deps, poll: Poll) -> str | None:
    """Close the poll (one conditional update); returns the results text from every answer it closed on, or
    None when it was not open any more (closed by someone else meanwhile)."""
    if not await repos.polls.close(poll.id, deps.now_ts()):
        return None
    text, _ = _summary(deps, poll, await repos.polls.answers(poll.id))
    return text


async def _send_staff(repos: Repos, deps: Deps, poll_id: int, text: str, chart: bytes) -> None:
    """Staff get the results with the chart."""
    now = deps.now_ts()
    staff_id = await repos.announcements.create(AnnouncementKind.STAFF, "staff", text, now, now,
                                                subject=(SubjectKind.POLL, poll_id), image=chart)  # fmt: skip
    await repos.deliveries.queue_staff(staff_id, sorted(deps.outbox.staff_channels()))
    await repos.announcements.settle(staff_id, "queued", now)


async def close_at_deadline(repos: Repos, deps: Deps, ann: Announcement) -> Announcement | None:
    """The scheduler's side of closing: the announcement now carries the results for the groups, or None
    when the poll was closed already (nothing more to send). Staff's chart is drawn and sent once the
    scheduler's transaction has committed (`send_closing_chart`)."""
    poll_id = ann.subject_of(SubjectKind.POLL)
    assert poll_id is not None
    poll = await repos.polls.get(poll_id)
    if poll is None or poll.state != "open":
        return None
    text = await _close(repos, deps, poll)
    if text is None:
        return None
    await repos.announcements.set_text(ann.id, text)
    return replace(ann, text=text)


async def send_closing_chart(deps: Deps, poll_id: int) -> None:
    """After a poll closed on time (and that transaction committed): draw its results from a read, with no
    write transaction open, and send them to staff in a short transaction of their own. A closed poll takes
    no more answers, so the picture shows exactly the answers it closed on."""
    async with deps.db.read() as repos:
        found = await repos.polls.get(poll_id)
        answers = await repos.polls.answers(poll_id) if found else []
    if found is None:
        return
    text, chart = await results(deps, found, answers)
    async with deps.db.transaction() as repos:
        await _send_staff(repos, deps, poll_id, text, chart)
    deps.outbox.wake()


# --- staff: /poll ----------------------------------------------------------------------------------
async def prepare_poll(ask: Preparing, deps: Deps) -> Drawn | None:
    """The slow part of ``/poll results`` and ``/poll close``, run by the dispatcher before the update's
    transaction: the poll's answers read and its chart drawn; None for other sub-commands, an unknown poll,
    or (for close) one that is not open."""
    sub, rest = split_first(ask.args)
    poll_id = parse_id(rest)
    if sub.lower() not in ("results", "close") or poll_id is None:
        return None
    async with deps.db.read() as repos:
        found = await repos.polls.get(poll_id)
        answers = await repos.polls.answers(poll_id) if found else []
    if found is None or (sub.lower() == "close" and found.state != "open"):
        return None
    text, chart = await results(deps, found, answers)
    return Drawn(poll_id, text, chart)


async def poll(req: Request, deps: Deps, prepared: Drawn | None = None) -> list[Reply]:
    """Staff: /poll choice | rank | rating | nps … to open one; /poll close | results | export <id>."""
    return await _SUBCOMMANDS(req, deps, prepared=prepared)


def _creating(kind: str) -> SubHandler:
    """The sub-command that opens a poll of this kind (``/poll choice …``)."""

    async def create(req: Request, deps: Deps, args: str, prepared: Drawn | None = None) -> list[Reply]:
        return await _create(req, deps, kind, args)

    return create


def _of_poll(handler: Callable[[Request, Deps, int, Drawn | None], Awaitable[list[Reply]]]) -> SubHandler:
    """The sub-command that acts on one poll (``/poll close 3``), with its chart if `prepare_poll` drew it."""

    async def on_poll(req: Request, deps: Deps, args: str, prepared: Drawn | None = None) -> list[Reply]:
        poll_id = required_id(deps, args, "poll")
        drawn = prepared if prepared is not None and prepared.poll_id == poll_id else None
        return await handler(req, deps, poll_id, drawn)

    return on_poll


async def _create(req: Request, deps: Deps, kind: str, args: str) -> list[Reply]:
    close_match = _CLOSE.search(args)
    if close_match:
        args = (args[: close_match.start()] + args[close_match.end() :]).strip()
    flags, args = extract_flags(args, {"hours": True, "tier": True, "points": True, "to": True, "multi": False})
    parts = [p.strip() for p in args.split("|")]
    question, options = parts[0][:QUESTION_LIMIT], [p[:OPTION_LIMIT] for p in parts[1:] if p]
    low, high = OPTION_COUNTS[kind]
    if not question or not low <= len(options) <= high or (kind in ("rating", "nps") and len(parts) > 1):
        return deps.usage(f"poll_{kind}")
    now = deps.now()
    closes = now + timedelta(hours=deps.rules.polls.default_open_hours)
    if close_match:
        parsed = parse_local_datetime(close_match.group(1), deps.calendar.zone)
        if parsed is None:
            return deps.usage(f"poll_{kind}")
        closes = parsed[0]
    elif "hours" in flags:
        hours = parse_int(str(flags["hours"]), 1, 24 * 30)
        if hours is None:
            return deps.usage(f"poll_{kind}")
        closes = now + timedelta(hours=hours)
    if closes <= now:
        return [Reply(deps.texts.t("common.in_past", when=deps.local_text(int(closes.timestamp()))))]
    tiers = tuple(t.strip().lower() for t in str(flags.get("tier", "")).split(",") if t.strip())
    points = parse_int(str(flags.get("points", "0")), 0, 10_000)
    audience = str(flags.get("to", "members" if tiers else "all")).lower()
    if (
        any(deps.rules.tier_by_id(t) is None for t in tiers)
        or points is None
        or audience not in AUDIENCES
        or (tiers and audience != "members")  # a post in a group reaches every tier
    ):
        return deps.usage(f"poll_{kind}")
    async with deps.db.transaction() as repos:
        poll_id = await repos.polls.create(
            kind, question, options, bool(flags.get("multi")) and kind == "choice", tiers, points, audience,
            int(closes.timestamp()), req.member_id, deps.now_ts(),
        )  # fmt: skip
        assert poll_id is not None
        created = await repos.polls.get(poll_id)
        assert created is not None
        count = await _post(repos, deps, created)
    deps.outbox.wake()
    return [Reply(deps.texts.n("poll.created", count, id=poll_id, closes=deps.local_text(created.closes_at)))]


async def _post(repos: Repos, deps: Deps, created: Poll) -> int:
    """Publish the poll and plan its closing; returns the number of recipients."""
    kind = AnnouncementKind.POLL_NATIVE if created.kind == "choice" else AnnouncementKind.POLL
    audience, tiers = _audience(created)
    _, count = await publish(repos, deps, kind, audience, poll_text(deps, created), tiers=tiers,
                             buttons=vote_buttons(deps, created), subject=(SubjectKind.POLL, created.id))  # fmt: skip
    closes = datetime.fromtimestamp(created.closes_at, deps.now().tzinfo)
    results_audience = "tiers" if tiers else "groups"
    await plan_at(repos, deps, AnnouncementKind.POLL_CLOSE, results_audience, created.question, closes, tiers=tiers,
                  subject=(SubjectKind.POLL, created.id))  # fmt: skip
    return count


async def _close_now(req: Request, deps: Deps, poll_id: int, drawn: Drawn | None) -> list[Reply]:
    """The chart was drawn before this transaction (`prepare_poll`) from the answers then: an answer that
    races the close may be missing from the picture, never from the text, which counts every answer the poll
    closed on."""
    not_open = [Reply(deps.texts.t("poll.not_open", id=poll_id))]
    async with deps.db.transaction() as repos:
        found = await repos.polls.get(poll_id)
        if found is None or found.state != "open" or drawn is None:
            return not_open
        text = await _close(repos, deps, found)
        if text is None:
            return not_open
        await unplan_pending(repos, deps, (SubjectKind.POLL, poll_id))
        chart = drawn.chart
        await _send_staff(repos, deps, poll_id, text, chart)
        _, tiers = _audience(found)
        await publish(repos, deps, AnnouncementKind.POLL_RESULTS, "tiers" if tiers else "groups", text, tiers=tiers,
                      subject=(SubjectKind.POLL, poll_id))  # fmt: skip
    deps.outbox.wake()
    return [Reply(text, image=chart)]


async def _delete(req: Request, deps: Deps, poll_id: int, _drawn: Drawn | None) -> list[Reply]:
    """/poll delete <id>: a poll posted by mistake, before its first answer. It closes without results, its
    closing is unplanned and its posts are recalled (handlers.announcements.recall)."""
    async with deps.db.transaction() as repos:
        found = await repos.polls.get(poll_id)
        if found is None:
            return [Reply(deps.texts.t("poll.unknown", id=poll_id))]
        if not await repos.polls.delete(poll_id, deps.now_ts()):
            key = "poll.delete_answered" if found.state == "open" else "poll.not_open"
            return [Reply(deps.texts.t(key, id=poll_id))]
        await unplan_pending(repos, deps, (SubjectKind.POLL, poll_id))
        posted = [a.id for a in await repos.announcements.for_subject(SubjectKind.POLL, poll_id)]
    outcome = await recall_announcements(deps, posted)
    return [Reply(deps.texts.n("poll.deleted", outcome.deleting, id=poll_id, question=found.question))]


async def _results(req: Request, deps: Deps, poll_id: int, drawn: Drawn | None) -> list[Reply]:
    if drawn is None:  # `prepare_poll` found no such poll
        return [Reply(deps.texts.t("poll.unknown", id=poll_id))]
    return [Reply(drawn.text, image=drawn.chart)]


async def _export(req: Request, deps: Deps, poll_id: int, _drawn: Drawn | None) -> list[Reply]:
    async with deps.db.read() as repos:
        found = await repos.polls.get(poll_id)
        answers = await repos.polls.answers(poll_id) if found else []
    if found is None:
        return [Reply(deps.texts.t("poll.unknown", id=poll_id))]
    texts = deps.texts
    header = [texts.t(f"poll.column_{c}") for c in ("member_id", "member", "answer", "complete", "answered")]
    rows = [
        (a.member_id, a.display_name, _answer_text(deps, found, a.value),
         texts.t("poll.complete_yes" if a.complete else "poll.complete_no"), deps.local_text(a.answered_at))
        for a in answers
    ]  # fmt: skip
    caption = deps.texts.n("poll.exported", len(answers), id=poll_id)
    return [Reply(caption, document=(f"poll-{poll_id}-answers.csv", csv_document(header, rows)))]


_SUBCOMMANDS = Subcommands(
    "poll",
    {
        **{kind: _creating(kind) for kind in OPTION_COUNTS},
        "close": _of_poll(_close_now),
        "delete": _of_poll(_delete),
        "results": _of_poll(_results),
        "export": _of_poll(_export),
    },
)


def _answer_text(deps: Deps, poll: Poll, value: Any) -> str:
    """An answer as the member gave it: the number, the chosen options as a list, or the ranking in order."""
    if poll.kind in ("rating", "nps"):
        return str(value)
    if poll.kind == "choice":
        return deps.texts.join(poll.options[i] for i in value if 0 <= i < len(poll.options))
    return _ranking_text(deps, poll, [i for i in value if 0 <= i < len(poll.options)])


async def polls(req: Request, deps: Deps) -> list[Reply]:
    """Anyone: the polls open now."""
    async with deps.db.read() as repos:
        open_polls = await repos.polls.open_ones()
        member = await repos.members.get(req.member_id)
    tier = member_tier(deps, member).id if member is not None else None
    open_polls = [p for p in open_polls if not p.tiers or tier in p.tiers or req.is_staff]
    if not open_polls:
        return [Reply(deps.texts.t("poll.none"))]
    lines = [deps.texts.t("poll.list_header")]
    lines += [deps.texts.t("poll.list_line", id=p.id, question=p.question, closes=deps.local_text(p.closes_at),
                           how=deps.texts.t(f"poll.how_{p.kind}", id=p.id)) for p in open_polls]  # fmt: skip
    return [Reply("\n".join(lines))]


# --- members answer --------------------------------------------------------------------------------
async def _load_for_answer(req: Request, deps: Deps, poll_id: int) -> tuple[Poll | None, Reply | None]:
    async with deps.db.read() as repos:
        found = await repos.polls.get(poll_id)
        member = await repos.members.get(req.member_id)
    assert member is not None
    if found is None:
        return None, Reply(deps.texts.t("poll.unknown", id=poll_id))
    if found.state != "open" or found.closes_at <= deps.now_ts():
        return None, Reply(deps.texts.t("poll.closed", id=poll_id))
    if not await req.in_vip_group():
        return None, Reply(deps.texts.t("poll.not_member"))
    if found.tiers and member_tier(deps, member).id not in found.tiers:
        names = deps.texts.join(deps.tier_name(t) for t in deps.rules.tiers if t.id in found.tiers)
        return None, Reply(deps.texts.t("poll.tier_only", tiers=names))
    return found, None


async def _store(repos: Repos, deps: Deps, found: Poll, member_id: int, value: Any, complete: bool) -> None:
    """Store the answer; participation points once per member on a complete answer. Raises PollClosed."""
    now = deps.now_ts()
    await repos.polls.answer(found.id, member_id, value, complete, now)
    if complete and found.points:
        await repos.ledger.append(member_id, found.points, "poll", f"poll:{found.id}:{member_id}", now,
                                  note=found.question[:60], ref=str(found.id))  # fmt: skip


async def _record(req: Request, deps: Deps, found: Poll, value: Any, complete: bool) -> bool:
    """Store the answer in its own transaction; False when the poll is closed."""
    try:
        async with deps.db.transaction() as repos:
            await _store(repos, deps, found, req.member_id, value, complete)
    except PollClosed:
        return False
    return True


def _parse_answer(found: Poll, text: str) -> Any | None:
    """The answer `text` gives to `found` (a number, option indexes, a ranking), or None when it does not fit."""
    if found.kind in ("rating", "nps"):
        low, high = (1, 5) if found.kind == "rating" else (0, 10)
        return parse_int(_SCORE_UNIT.sub("", text.strip()), low, high)
    numbers = _wholes(text)
    if not numbers:
        return None
    if found.kind == "choice":
        picked = sorted(set(numbers))
        if not all(1 <= n <= len(found.options) for n in picked) or (len(picked) > 1 and not found.multi):
            return None
        return [n - 1 for n in picked]
    if sorted(numbers) != list(range(1, len(found.options) + 1)):
        return None
    return [n - 1 for n in numbers]


async def vote(req: Request, deps: Deps) -> list[Reply]:
    """/vote <poll> <answer>: a rating 1-5, a score 0-10, option numbers '1,3', or a full ranking '3 1 2'."""
    id_text, value_text = split_first(req.args)
    poll_id = parse_id(id_text)
    if poll_id is None or not value_text:
        return deps.usage("vote")
    found, problem = await _load_for_answer(req, deps, poll_id)
    if problem is not None or found is None:
        return [problem] if problem else []
    value = _parse_answer(found, value_text)
    if value is None:
        how = deps.texts.t(f"poll.how_{found.kind}", id=poll_id)
        return [Reply(deps.texts.t("poll.bad_answer", id=poll_id, how=how))]
    if not await _record(req, deps, found, value, complete=True):
        return [Reply(deps.texts.t("poll.closed", id=poll_id))]
    return [Reply(deps.texts.t("poll.thanks", answer=_answer_text(deps, found, value)))]


def _rank_next(ranking: list[int], what: str, item: int | None) -> list[int]:
    if what == "restart":
        return []
    if what == "undo" or item is None:
        return ranking[:-1]
    return ranking if item in ranking else [*ranking, item]


async def rank(req: Request, deps: Deps) -> list[Reply]:
    """A tap in a ranking poll (button ``v1:rank:<poll> <item>|undo|restart``): builds the member's order.

    A finished ranking stays as it is: item taps and undo only remind the member of it; "restart" starts a new
    order, and the finished one counts until the new one is complete."""
    id_text, what = split_first(req.args)
    poll_id = parse_id(id_text)
    item = parse_int(what, 0, 99)
    if poll_id is None or (item is None and what not in ("undo", "restart")):
        return deps.usage("vote")
    found, problem = await _load_for_answer(req, deps, poll_id)
    if problem is not None or found is None or found.kind != "rank":
        return [problem] if problem else deps.usage("vote")
    if item is not None and item >= len(found.options):
        return deps.usage("vote")
    try:
        async with deps.db.transaction() as repos:
            return await _rank_step(repos, deps, found, req.member_id, what, item)
    except PollClosed:
        return [Reply(deps.texts.t("poll.closed", id=poll_id))]


async def _rank_step(repos: Repos, deps: Deps, found: Poll, member_id: int, what: str, item: int | None) -> list[Reply]:
    texts = deps.texts
    restart = texts.t("poll.restart_button")
    items = len(found.options)
    current = await repos.polls.answer_of(found.id, member_id)
    if current is None or not current.complete:
        ranking = _rank_next(list(current.value) if current is not None else [], what, item)
        complete = len(ranking) == items
        await _store(repos, deps, found, member_id, ranking, complete)
        if complete:
            return [Reply(texts.t("poll.rank_done", ranking=_ranking_text(deps, found, ranking), restart=restart))]
        so_far = _ranking_text(deps, found, ranking) or "-"
        return [Reply(texts.t("poll.rank_so_far", ranking=so_far, left=items - len(ranking)))]
    finished = _ranking_text(deps, found, list(current.value))
    if current.draft is None and what != "restart":
        return [Reply(texts.t("poll.rank_kept", ranking=finished, restart=restart))]
    draft = _rank_next(list(current.draft or []), what, item)
    if len(draft) == items:
        await _store(repos, deps, found, member_id, draft, True)
        return [Reply(texts.t("poll.rank_done", ranking=_ranking_text(deps, found, draft), restart=restart))]
    await repos.polls.set_draft(found.id, member_id, draft)
    if what == "restart":
        return [Reply(texts.t("poll.rank_restarted", ranking=finished))]
    so_far = _ranking_text(deps, found, draft) or "-"
    return [Reply(texts.t("poll.rank_so_far_kept", ranking=so_far, left=items - len(draft)))]


def _native_answer(found: Poll, options: str) -> list[int] | None:
    """The option indexes of a native poll answer ('0,2'; '' withdraws), or None when it cannot be genuine:
    a number out of range or not a number, an option twice, or several options on a single-choice poll."""
    if not options.strip():
        return []
    numbers = _wholes(options)
    if not numbers or len(set(numbers)) != len(numbers) or any(n >= len(found.options) for n in numbers):
        return None
    if len(numbers) > 1 and not found.multi:
        return None
    return sorted(numbers)


async def native_vote(req: Request, deps: Deps) -> list[Reply]:
    """An answer to the platform's own poll (``v1:native_vote:<native id> <option,option>``); no reply. An
    answer the platform could not have sent (see `_native_answer`) changes nothing."""
    native_id, options = split_first(req.args)
    async with deps.db.read() as repos:
        poll_id = await repos.polls.by_native(req.msg.channel, native_id)
    if poll_id is None:
        return []
    found, _ = await _load_for_answer(req, deps, poll_id)
    if found is None or found.kind != "choice":
        return []
    picked = _native_answer(found, options)
    if picked is None:
        log.warning("native answer %r to poll %s does not fit it; ignored", options[:40], poll_id)
        return []
    if not picked:
        async with deps.db.transaction() as repos:
            await repos.polls.withdraw(poll_id, req.member_id)
        return []
    await _record(req, deps, found, picked, complete=True)
    return []


# --- the recurring survey and the follow-up after a purchase ---------------------------------------
async def start_survey(deps: Deps) -> int | None:
    """Open this period's satisfaction survey (a 1-5 rating poll), once per day however often called."""
    survey = deps.rules.polls.survey
    local_day = deps.calendar.local(deps.now()).date().isoformat()
    question = survey.question or deps.texts.t("poll.survey_question")
    closes = int((deps.now() + timedelta(hours=survey.open_hours)).timestamp())
    async with deps.db.transaction() as repos:
        poll_id = await repos.polls.create("rating", question, [], False, (), 0, "all", closes, None, deps.now_ts(),
                                           series=f"survey:{local_day}")  # fmt: skip
        if poll_id is None:
            return None
        created = await repos.polls.get(poll_id)
        assert created is not None
        await _post(repos, deps, created)
    deps.outbox.wake()
    return poll_id


async def plan_purchase_followup(repos: Repos, deps: Deps, member_id: int, purchased_at: int) -> None:
    """After a purchase recorded at `purchased_at` (unix seconds), plan a private 1-5 rating request the
    configured number of days later (if configured): the window it is about is those days before it is due."""
    days = deps.rules.polls.survey.purchase_followup_days
    if days:
        due = datetime.fromtimestamp(purchased_at + days * _DAY_SECONDS, deps.now().tzinfo)
        await plan_at(repos, deps, AnnouncementKind.FOLLOWUP, "personal", deps.texts.t("poll.followup_question"),
                      due, subject=(SubjectKind.MEMBER, member_id))  # fmt: skip


async def skip_voided_followup(repos: Repos, deps: Deps, ann: Announcement, now_ts: int) -> str | None:
    """A follow-up whose member has no live purchase left in the window it is about (the purchase was voided)
    is not sent: there is nothing to rate. The window is the configured days before it is due."""
    member_id = ann.subject_of(SubjectKind.MEMBER)
    days = deps.rules.polls.survey.purchase_followup_days
    if member_id is None or not days:  # follow-ups switched off since: the window is unknown, send as planned
        return None
    if await repos.purchases.live_between(member_id, ann.due_at - days * _DAY_SECONDS, ann.due_at):
        return None
    return deps.texts.t("poll.followup_voided")


async def prepare_followup(repos: Repos, deps: Deps, ann: Announcement) -> Announcement:
    """Send the member the rating buttons of this month's follow-up poll (opened on first use)."""
    member_id = ann.subject_of(SubjectKind.MEMBER)
    assert member_id is not None
    month = deps.calendar.local(deps.now()).strftime("%Y-%m")
    series = f"followup:{month}"
    found = await repos.polls.by_series(series)
    if found is None:
        closes = int((deps.now() + timedelta(days=45)).timestamp())
        await repos.polls.create("rating", deps.texts.t("poll.followup_question"), [], False, (), 0, "members",
                                 closes, None, deps.now_ts(), series=series)  # fmt: skip
        found = await repos.polls.by_series(series)
    assert found is not None
    await repos.announcements.set_text(ann.id, ann.text, stored_buttons(vote_buttons(deps, found)))
    await repos.deliveries.queue_personal(ann.id, member_id, ann.text, sorted(deps.outbox.channels()))
    return ann


async def _chart_after_closing(deps: Deps, ann: Announcement) -> None:
    poll_id = ann.subject_of(SubjectKind.POLL)
    if poll_id is not None:
        await send_closing_chart(deps, poll_id)


DUE_RULES = {
    AnnouncementKind.POLL_CLOSE: DueRule(prepare=close_at_deadline, deadline=True, after_commit=_chart_after_closing),
    AnnouncementKind.FOLLOWUP: DueRule(prepare=prepare_followup, skip=skip_voided_followup),
}
