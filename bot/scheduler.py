"""Housekeeping jobs on the process's one APScheduler (which `bot.runtime` creates and owns)."""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from handlers.deps import Deps

log = logging.getLogger(__name__)

SEEN_UPDATES_KEEP = timedelta(days=2)
"""Telegram keeps an undelivered update for 24 hours; remembering keys for two days is enough."""


def add_housekeeping(scheduler: AsyncIOScheduler, deps: Deps) -> None:
    scheduler.add_job(
        prune_seen_updates, CronTrigger(hour=4, minute=17), args=[deps], id="prune_seen_updates",
        replace_existing=True,
    )  # fmt: skip


async def prune_seen_updates(deps: Deps) -> int:
    """Forget inbound update keys older than SEEN_UPDATES_KEEP."""
    cutoff = int((deps.now() - SEEN_UPDATES_KEEP).timestamp())
    async with deps.db.transaction() as repos:
        removed = await repos.seen_updates.prune(cutoff)
    log.info("pruned %d seen update keys", removed)
    return removed
