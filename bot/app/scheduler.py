"""Housekeeping jobs on the process's one APScheduler (which `bot.app.runtime` creates and owns)."""

from __future__ import annotations

import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.delivery.outbox import Outbox
from handlers.announcements.commands import report_outcomes
from handlers.core.deps import Deps
from handlers.feedback.commands import escalate as escalate_tickets
from handlers.greetings.commands import plan_greetings, send_birthdays
from handlers.group_buys import commands as group_buys
from handlers.polls.commands import start_survey
from handlers.sales import commands as sales
from handlers.sales.commands import expire_holds
from handlers.segments.commands import winback
from handlers.stats.commands import weekly_report

log = logging.getLogger(__name__)

SEEN_UPDATES_KEEP = timedelta(days=2)
"""Telegram keeps an undelivered update for 24 hours; remembering keys for two days is enough."""


def add_housekeeping(scheduler: AsyncIOScheduler, deps: Deps, outbox: Outbox) -> None:
    scheduler.add_job(
        prune_seen_updates, CronTrigger(hour=4, minute=17), args=[deps], id="prune_seen_updates",
        replace_existing=True,
    )  # fmt: skip
    scheduler.add_job(
        expire_holds, IntervalTrigger(minutes=1), args=[deps], id="expire_sale_holds", replace_existing=True
    )
    scheduler.add_job(
        plan_greetings, CronTrigger(hour=0, minute=5), args=[deps], id="plan_greetings", replace_existing=True
    )
    scheduler.add_job(
        send_birthdays, CronTrigger(hour=deps.rules.birthdays.hour, minute=1), args=[deps], id="birthdays",
        replace_existing=True,
    )  # fmt: skip
    scheduler.add_job(winback, CronTrigger(hour=10, minute=30), args=[deps], id="winback", replace_existing=True)
    reports = deps.rules.reports
    if reports.weekly:
        scheduler.add_job(
            weekly_report, CronTrigger(day_of_week=reports.day, hour=reports.hour), args=[deps], id="weekly_report",
            replace_existing=True,
        )  # fmt: skip
    scheduler.add_job(
        escalate_tickets, IntervalTrigger(minutes=10), args=[deps], id="escalate_tickets", replace_existing=True
    )
    scheduler.add_job(
        report_outcomes, IntervalTrigger(minutes=1), args=[deps], id="report_delivery_outcomes", replace_existing=True
    )
    survey = deps.rules.polls.survey
    if survey.enabled:
        scheduler.add_job(
            start_survey, CronTrigger(day=survey.day, hour=survey.hour, minute=survey.minute), args=[deps],
            id="satisfaction_survey", replace_existing=True,
        )  # fmt: skip
    scheduler.add_job(
        refresh_live_posts, IntervalTrigger(seconds=deps.rules.sales.edit_interval_seconds), args=[deps, outbox],
        id="refresh_live_posts", replace_existing=True,
    )  # fmt: skip


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
