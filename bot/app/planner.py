"""Plans announcements on the one APScheduler: a job per pending announcement, keyed by its id.

The rows are the truth; a job only wakes the bot at the right time, and `handlers.shared.due.run_due`
decides from the rows what to send (or skip). At start-up every pending row gets its job again, and
anything that fell due while the bot was down is handled at once. A sweep every minute catches the rest.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from handlers.core.deps import Deps
from handlers.shared.due import run_due

log = logging.getLogger(__name__)


def job_id(announcement_id: int) -> str:
    return f"announcement:{announcement_id}"


class Planner:
    def __init__(self, scheduler: AsyncIOScheduler) -> None:
        self.scheduler = scheduler
        self._deps: Deps | None = None

    def bind(self, deps: Deps) -> None:
        self._deps = deps

    def plan(self, announcement_id: int, due_at: datetime) -> None:
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
