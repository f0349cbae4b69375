"""Plans announcements on the leader's APScheduler: a job per pending announcement, keyed by its id.

The rows are the truth; a job only wakes the bot at the right time, and `handlers.shared.due.run_due`
decides from the rows what to send (or skip). At start-up every pending row gets its job again, and
anything that fell due while the bot was down is handled at once. A sweep every minute catches the rest.
A process that does not lead plans nothing itself: it tells the leader (NOTIFY), which plans again from the rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.leader import Leadership
from handlers.core.deps import Deps
from handlers.shared.due import run_due

log = logging.getLogger(__name__)


def job_id(announcement_id: int) -> str:
    return f"announcement:{announcement_id}"


class Planner:
    def __init__(self, scheduler: AsyncIOScheduler, leader: Leadership | None = None) -> None:
        self.scheduler = scheduler
        self.leader = leader
        self._deps: Deps | None = None
        self._replanning: asyncio.Task[tuple[int, float]] | None = None
        if leader is not None:
            leader.listen("vipbot_plan", self._told)

    def bind(self, deps: Deps) -> None:
        self._deps = deps

    def _told(self) -> None:
        """Another process planned an announcement: plan again from the rows (once at a time)."""
        if self.leader is None or not self.leader.leading or self._replanning is not None:
            return
        self._replanning = asyncio.get_running_loop().create_task(self.replan())
        self._replanning.add_done_callback(lambda _: setattr(self, "_replanning", None))

    def plan(self, announcement_id: int, due_at: datetime) -> None:
        if self.leader is not None and self.leader.shared and not self.leader.leading:
            assert self._deps is not None
            self._deps.db.on_commit(lambda: self.leader.notify("vipbot_plan") if self.leader else None)
            return
        # No misfire grace here: a late job always runs, and run_due applies the configured grace itself.
        self.scheduler.add_job(
            self.fire, DateTrigger(run_date=due_at), id=job_id(announcement_id), replace_existing=True,
            misfire_grace_time=None, coalesce=True,
        )  # fmt: skip

    def unplan(self, announcement_id: int) -> None:
        try:
            self.scheduler.remove_job(job_id(announcement_id))
        except JobLookupError:
            pass

    async def fire(self) -> list[int]:
        assert self._deps is not None, "Planner.bind() was not called"
        try:
            return await run_due(self._deps)
        except Exception:
            log.exception("sending due announcements failed; the next sweep retries")
            return []

    async def replan(self) -> tuple[int, float]:
        """Re-create a job for every pending announcement; returns (how many, seconds it took)."""
        assert self._deps is not None
        started = time.perf_counter()
        async with self._deps.db.read() as repos:
            pending = await repos.announcements.pending_times()
        zone = self._deps.calendar.zone
        for announcement_id, due_at in pending:
            self.plan(announcement_id, datetime.fromtimestamp(due_at, zone))
        self.scheduler.add_job(
            self.fire, IntervalTrigger(minutes=1), id="announcement-sweep", replace_existing=True,
            misfire_grace_time=None, coalesce=True,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        log.info("re-planned %d pending announcements in %.3f s", len(pending), elapsed)
        return len(pending), elapsed
