"""Points expiry (off by default): the daily job that books expired points and reminds members before.

Points expire at period boundaries (`points.expiry` in config.yaml): with `end_of_following_year` what was
earned in 2025 expires when 2027 begins (the last day is 2026-12-31); with `months: N` what was earned in a
month expires when the month N+1 months later begins. Spending uses up the oldest points first (storage/expiry.py
says how that is one sum per member). Expired points are ledger entries (reason 'expire') that lower the balance
but not lifetime points, so the tier stays. The job books a boundary during its first week only: turning expiry
on in the middle of a period expires nothing until the next boundary, which members are reminded of first."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from handlers.core.deps import Deps
from handlers.core.jobs import At, Schedule
from handlers.core.rules import ExpiryRules, Rules
from handlers.shared.broadcast import send_personal
from storage.expiry import Due
from storage.repos import Repos

EXPIRY_KIND = "points_expiry"
"""The announcement kind of expiry notices (migration 0021 adds it)."""
LATE_DAYS = 7
"""A boundary is booked on the days after it up to this many (a missed run catches up, a late start does not)."""


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after `day`'s month (negative: before)."""
    years, month = divmod(day.month - 1 + months, 12)
    return date(day.year + years, month + 1, 1)


def boundary_on_or_before(rules: ExpiryRules, today: date) -> date:
    """The latest day on which points expire that is not after `today`."""
    return date(today.year, 1, 1) if rules.rule == "end_of_following_year" else today.replace(day=1)


def next_boundary(rules: ExpiryRules, today: date) -> date:
    """The first day after `today` on which points expire."""
    return date(today.year + 1, 1, 1) if rules.rule == "end_of_following_year" else add_months(today, 1)


def earned_before(rules: ExpiryRules, boundary: date) -> date:
    """Points earned before this day have expired when `boundary` begins."""
    if rules.rule == "end_of_following_year":
        return date(boundary.year - 1, 1, 1)
    return add_months(boundary, -rules.months)


def local_midnight(deps: Deps, day: date) -> int:
    return int(datetime.combine(day, time(), tzinfo=deps.calendar.zone).timestamp())


def today(deps: Deps) -> date:
    return deps.calendar.local(deps.now()).date()


def schedule(rules: Rules) -> Schedule | None:
    expiry = rules.points.expiry
    return At({"hour": expiry.hour, "minute": 7}) if expiry.enabled else None


@dataclass(frozen=True, slots=True)
class ExpiryRun:
    expired: int
    """Members whose points expired in this run."""
    reminded: int
    """Members reminded in this run."""


async def run_expiry(deps: Deps) -> ExpiryRun:
    """The daily job: book what has expired at the latest boundary, then remind members of the next one."""
    rules = deps.rules.points.expiry
    if not rules.enabled:
        return ExpiryRun(0, 0)
    day = today(deps)
    expired = reminded = 0
    boundary = boundary_on_or_before(rules, day)
    if (day - boundary).days < LATE_DAYS:
        async with deps.db.transaction() as repos:
            expired = await _expire(repos, deps, boundary)
    upcoming = next_boundary(rules, day)
    if rules.remind_days and day >= upcoming - timedelta(days=rules.remind_days):
        async with deps.db.transaction() as repos:
            reminded = await _remind(repos, deps, upcoming)
    return ExpiryRun(expired, reminded)


async def _expire(repos: Repos, deps: Deps, boundary: date) -> int:
    rules, texts = deps.rules.points.expiry, deps.texts
    since = earned_before(rules, boundary)
    last_day = (boundary - timedelta(days=1)).isoformat()
    booked = await repos.expiry.expire(
        local_midnight(deps, since), last_day, deps.now_ts(),
        note=texts.t("expiry.ledger_note", since=since.isoformat()), ref=last_day,
    )  # fmt: skip
    bodies = [(due.member_id, texts.n("expiry.expired", due.points, since=since.isoformat())) for due in booked]
    await _tell(repos, deps, texts.t("expiry.expired_record", date=last_day), bodies)
    return len(booked)


async def _remind(repos: Repos, deps: Deps, upcoming: date) -> int:
    texts = deps.texts
    last_day = (upcoming - timedelta(days=1)).isoformat()
    cutoff = local_midnight(deps, earned_before(deps.rules.points.expiry, upcoming))
    due: list[Due] = await repos.expiry.remind(cutoff, last_day, deps.now_ts())
    bodies = [(d.member_id, texts.n("expiry.reminder", d.points, date=last_day)) for d in due]
    await _tell(repos, deps, texts.t("expiry.reminder_record", date=last_day), bodies)
    return len(due)


async def _tell(repos: Repos, deps: Deps, summary: str, bodies: list[tuple[int, str]]) -> None:
    if bodies:
        await send_personal(repos, deps, EXPIRY_KIND, summary, bodies)


async def expiring_line(repos: Repos, deps: Deps, member_id: int) -> str:
    """For the member's own view: how many of their points expire at the next boundary ('' when none or off)."""
    rules = deps.rules.points.expiry
    if not rules.enabled:
        return ""
    upcoming = next_boundary(rules, today(deps))
    points = await repos.expiry.due_for(member_id, local_midnight(deps, earned_before(rules, upcoming)))
    if points <= 0:
        return ""
    last_day = (upcoming - timedelta(days=1)).isoformat()
    return deps.texts.n("expiry.expiring", points, date=last_day)
