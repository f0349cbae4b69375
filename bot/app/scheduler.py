"""Jobs on the process's one APScheduler (which `bot.app.runtime` creates and owns): the runtime's housekeeping and
the jobs the features declare."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.delivery.outbox import Outbox
from handlers.core.deps import Deps
from handlers.core.jobs import Every, Job
from handlers.group_buys import commands as group_buys
from handlers.sales import commands as sales

log = logging.getLogger(__name__)

SEEN_UPDATES_KEEP = timedelta(days=2)
"""Telegram keeps an undelivered update for 24 hours; remembering keys for two days is enough."""


def add_housekeeping(scheduler: AsyncIOScheduler, deps: Deps, outbox: Outbox, jobs: Iterable[Job] = ()) -> None:
    """The runtime's own jobs, and every feature's (`Feature.jobs`) on the schedule its rules give."""
    scheduler.add_job(
        prune_seen_updates, CronTrigger(hour=4, minute=17), args=[deps], id="prune_seen_updates",
        replace_existing=True,
    )  # fmt: skip
    scheduler.add_job(
        refresh_live_posts, IntervalTrigger(seconds=deps.rules.sales.edit_interval_seconds), args=[deps, outbox],
        id="refresh_live_posts", replace_existing=True,
    )  # fmt: skip
    for job in jobs:
        schedule = job.schedule(deps.rules)
        if schedule is None:
            continue  # turned off in the configuration
        if isinstance(schedule, Every):
            trigger: IntervalTrigger | CronTrigger = IntervalTrigger(seconds=schedule.seconds)
        else:
            trigger = CronTrigger(**schedule.fields)
        scheduler.add_job(job.run, trigger, args=[deps], id=job.id, replace_existing=True)


async def refresh_live_posts(deps: Deps, outbox: Outbox) -> int:
    """Edit the group posts of running flash sales and open group buys whose numbers changed.

    Runs every `sales.edit_interval_seconds` (15 s by default: at most 4 edits a minute per post, leaving a busy group's
    Telegram's 20 messages a minute into one group)."""
    try:
        posts = [*await sales.live_posts(deps), *await group_buys.live_posts(deps)]
        return await outbox.edit_posts(posts)
    except Exception:
        log.exception("refreshing live posts failed")
        return 0


async def prune_seen_updates(deps: Deps) -> int:
    """Forget handled inbound update keys older than SEEN_UPDATES_KEEP."""
    cutoff = int((deps.now() - SEEN_UPDATES_KEEP).timestamp())
    async with deps.db.transaction() as repos:
        removed = await repos.inbox.prune(cutoff)
    log.info("pruned %d seen update keys", removed)
    return removed
