"""Staff statistics (效果评估): /stats shows members, activity, repurchase, segments, satisfaction, referrals and
points; /report and the weekly job send a chart of the last seven days.

"Last 7 days" is the last seven business days in the shop's zone, today included; the weekly job reports the
seven full days before today.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any

from handlers.core.command import Preparing
from handlers.core.deps import Deps, Request
from handlers.core.i18n import Catalog
from handlers.core.messages import Reply
from handlers.segments.commands import counts_line, percent, segment_counts
from handlers.shared.broadcast import span_text
from handlers.shared.charts import draw
from handlers.stats.chart import ChartWords, drawable, weekly_chart
from storage.repos import Repos
from storage.segments import SegmentCounts
from storage.stats import PointsFlow, RatingShare
from storage.tickets import ticket_stats

log = logging.getLogger(__name__)

WEEKLY_JOB = "weekly_report"
"""The weekly report's idempotency key: (WEEKLY_JOB, the last day of the week it covers)."""

WEEK_DAYS = 7
SATISFACTION_DAYS = 90
"""Rating-poll answers of this many days count towards satisfaction."""


@dataclass(frozen=True, slots=True)
class StaffStats:
    day: date
    members: int
    new_members: int
    """Joined in the last 7 days."""
    checkins_today: int
    active: int
    """Checked in or purchased in the last 7 days."""
    segments: SegmentCounts
    rating: RatingShare
    tickets: dict[str, Any]
    referrals: int
    """Referrals that count (not voided by a link of the two accounts)."""
    points: PointsFlow
    """Issued and redeemed in the last 7 days."""


@dataclass(frozen=True, slots=True)
class WeekSeries:
    days: list[date]
    checkins: list[int]
    new_members: list[int]
    points: list[PointsFlow]


def _day_start(deps: Deps, day: date) -> int:
    return int(deps.calendar.day_start(day).timestamp())


def _week(last_day: date) -> list[date]:
    return [last_day - timedelta(days=WEEK_DAYS - 1 - i) for i in range(WEEK_DAYS)]


async def collect(repos: Repos, deps: Deps) -> StaffStats:
    """Every figure of /stats, read in one go."""
    now = deps.now_ts()
    today = deps.calendar.business_day(deps.now())
    first = _week(today)[0]
    since = _day_start(deps, first)
    members, new_members = await repos.stats.members(since)
    return StaffStats(
        day=today,
        members=members,
        new_members=new_members,
        checkins_today=await repos.stats.checkins_on(today.isoformat()),
        active=await repos.stats.active_members(first.isoformat(), since),
        segments=await segment_counts(repos, deps),
        rating=await repos.stats.rating_share(now - SATISFACTION_DAYS * 86_400),
        tickets=await ticket_stats(repos, now),
        referrals=await repos.stats.referrals(),
        points=await repos.stats.points_flow(since, _day_start(deps, today + timedelta(days=1))),
    )


def stats_text(deps: Deps, s: StaffStats) -> str:
    t = deps.texts.t
    lines = [
        t("stats.header", date=s.day.isoformat()),
        t("stats.members", total=s.members, new=s.new_members),
        t("stats.checkins", count=s.checkins_today),
        t("stats.active", count=s.active, total=s.members, rate=percent(deps, s.active, s.members)),
        t("stats.repurchase", rate=percent(deps, s.segments.repeat_buyers, s.segments.buyers),
          repeat=s.segments.repeat_buyers, buyers=s.segments.buyers),
        t("stats.segments", line=counts_line(deps, s.segments)),
    ]  # fmt: skip
    days = span_text(deps, SATISFACTION_DAYS, "days")
    if s.rating.answers:
        lines.append(t("stats.satisfaction", days=days, rate=percent(deps, s.rating.satisfied, s.rating.answers),
                       satisfied=s.rating.satisfied, count=s.rating.answers))  # fmt: skip
    else:
        lines.append(t("stats.satisfaction_none", days=days))
    tickets = s.tickets
    unclosed = int(tickets["open"]) + int(tickets["answered"])
    if tickets["rated"]:
        lines.append(t("stats.tickets", rated=tickets["rated"], average=f"{tickets['average_rating']:.2f}",
                       rate=percent(deps, tickets["satisfied"], tickets["rated"]), unclosed=unclosed,
                       late=tickets["late"]))  # fmt: skip
    else:
        lines.append(t("stats.tickets_none", unclosed=unclosed, late=tickets["late"]))
    lines.append(t("stats.referrals", count=s.referrals))
    lines.append(t("stats.points", issued=s.points.issued, redeemed=s.points.redeemed))
    return "\n".join(lines)


async def stats(req: Request, deps: Deps) -> list[Reply]:
    async with deps.db.read() as repos:
        figures = await collect(repos, deps)
    return [Reply(stats_text(deps, figures))]


# --- the weekly report ----------------------------------------------------------------------------------
async def week_series(repos: Repos, deps: Deps, last_day: date) -> WeekSeries:
    days = _week(last_day)
    starts = [_day_start(deps, day) for day in days]
    until = _day_start(deps, last_day + timedelta(days=1))
    return WeekSeries(
        days=days,
        checkins=await repos.stats.checkins_per_day([d.isoformat() for d in days]),
        new_members=await repos.stats.joined_per_day(starts, until),
        points=await repos.stats.points_per_day(starts, until),
    )


async def render_report(deps: Deps, series: WeekSeries) -> tuple[str, bytes]:
    """The report's caption and its chart (PNG), drawn on a worker thread: call it outside any transaction."""
    first, last = series.days[0].isoformat(), series.days[-1].isoformat()
    issued = [p.issued for p in series.points]
    redeemed = [p.redeemed for p in series.points]
    caption = deps.texts.t("report.caption", first=first, last=last, checkins=sum(series.checkins),
                           new=sum(series.new_members), issued=sum(issued), redeemed=sum(redeemed))  # fmt: skip
    words, fallback = _chart_words(deps.texts, first, last), _chart_words(_ascii_texts(), first, last)
    chart = await draw(_weekly_picture, words, fallback, [d.strftime("%m-%d") for d in series.days],
                       series.checkins, series.new_members, issued, redeemed)  # fmt: skip
    return caption, chart


def _weekly_picture(words: ChartWords, fallback: ChartWords, days: list[str], *series: list[int]) -> bytes:
    """The chart in the configured language's `words` (the bundled CJK font draws them; `fallback`'s ASCII
    words only where no font can). On the worker thread: the first call of a process imports matplotlib and
    registers the font, which takes a moment too."""
    return weekly_chart(drawable(words, fallback), days, *series)


def _chart_words(texts: Catalog, first: str, last: str) -> ChartWords:
    return ChartWords(
        title=texts.t("report.chart.title", first=first, last=last),
        checkins=texts.t("report.chart.checkins"),
        new_members=texts.t("report.chart.new"),
        points=texts.t("report.chart.points"),
        issued=texts.t("report.chart.issued"),
        redeemed=texts.t("report.chart.redeemed"),
    )


@cache
def _ascii_texts() -> Catalog:
    """The English catalog, for the chart's words only when no font can draw the configured language: charts
    bring their own CJK font (`charts.cjk_font`), so this is the last resort of a broken install (the bundled
    font file missing), which `vipbot doctor` reports."""
    return Catalog("en")


async def prepare_report(_: Preparing, deps: Deps) -> tuple[str, bytes]:
    """/report's slow part, run by the dispatcher before the update's transaction: the last seven days, today
    included, read and drawn (caption, chart)."""
    today = deps.calendar.business_day(deps.now())
    async with deps.db.read() as repos:
        series = await week_series(repos, deps, today)
    return await render_report(deps, series)


async def report(req: Request, deps: Deps, prepared: tuple[str, bytes]) -> list[Reply]:
    """/report: the picture `prepare_report` drew."""
    caption, chart = prepared
    return [Reply(caption, image=chart)]


async def weekly_report(deps: Deps) -> bool:
    """The scheduler's weekly job: the seven full days before today, as a picture to the staff chat. Once per
    week: the report claims its week ('weekly_report', last day) in the transaction that queues it, so a second
    run for the same week (another bot process, a restart at that hour) sends nothing. True if it was queued."""
    if not deps.outbox.staff_channels():
        return False
    yesterday = deps.calendar.business_day(deps.now()) - timedelta(days=1)
    period = yesterday.isoformat()
    now = deps.now_ts()
    async with deps.db.read() as repos:
        if await repos.job_runs.ran_at(WEEKLY_JOB, period) is not None:
            return False  # spares drawing the chart; the claim below is what decides
        series = await week_series(repos, deps, yesterday)
    caption, chart = await render_report(deps, series)  # outside the transaction and off the loop: it takes a moment
    async with deps.db.transaction() as repos:
        if not await repos.job_runs.claim(WEEKLY_JOB, period, now):
            log.info("weekly report for the week to %s was sent already; not again", period)
            return False
        ann_id = await repos.announcements.create("staff", "staff", caption, now, now, image=chart)
        await repos.deliveries.queue_staff(ann_id, sorted(deps.outbox.staff_channels()))
        await repos.announcements.settle(ann_id, "queued", now)
    deps.outbox.wake()
    return True
