"""The one APScheduler of the process: created here, started and stopped with the runtime.

Jobs hold ids only and reload what they need when they fire; the database stays the source of truth.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from handlers.deps import Deps

log = logging.getLogger(__name__)

SEEN_UPDATES_KEEP = timedelta(days=2)
"""Telegram keeps an undelivered update for 24 hours; remembering keys for two days is enough."""


def build_scheduler(deps: Deps) -> AsyncIOScheduler:
    # Coalesce missed runs into one, and give a late job an hour instead of APScheduler's default 1 s.
    scheduler = AsyncIOScheduler(
        timezone=deps.calendar.zone,
        job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
    )
    scheduler.add_job(
        prune_seen_updates,
        CronTrigger(hour=4, minute=17),
        args=[deps],
        id="prune_seen_updates",
        replace_existing=True,
    )
    return scheduler


async def prune_seen_updates(deps: Deps) -> int:
    """Forget inbound update keys older than SEEN_UPDATES_KEEP."""
    cutoff = int((deps.now() - SEEN_UPDATES_KEEP).timestamp())
    async with deps.db.transaction() as repos:
        removed = await repos.seen_updates.prune(cutoff)
    log.info("pruned %d seen update keys", removed)
    return removed
