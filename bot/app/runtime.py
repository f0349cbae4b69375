"""Builds what every channel shares: database, dependencies, dispatcher, scheduler, leadership and the figures for
/metrics.

Every process answers its webhooks; only the leader (`bot.app.leader`: always the one process on SQLite, one
of several on PostgreSQL) drains the outbox, runs the scheduler (announcements, greetings, live-post edits,
the features' jobs) and whatever the channels start on `on_lead` (Telegram's update handling, token refreshes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app.config import Settings
from bot.app.leader import Leadership, PostgresLeadership, SoleLeadership
from bot.app.metrics import MeteredDispatcher, Metrics
from bot.app.planner import Planner
from bot.app.scheduler import add_housekeeping
from bot.delivery.outbox import Outbox
from handlers.core.clock import BusinessCalendar, Clock, SystemClock
from handlers.core.deps import Deps
from handlers.core.dispatch import Dispatcher
from handlers.core.i18n import Catalog
from handlers.core.table import assemble
from handlers.features import FEATURES
from handlers.greetings.commands import plan_greetings, send_birthdays
from storage.db.open import open_database

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    deps: Deps
    dispatcher: Dispatcher
    scheduler: AsyncIOScheduler
    planner: Planner
    outbox: Outbox
    metrics: Metrics
    leader: Leadership
    _lead_hooks: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this process stopped leading without being asked to (it must stop: see bot.app.leader)."""

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        """Open the database (`storage.url`: SQLite or PostgreSQL, migrating it) and wire the handlers; nothing runs
        until `start()`."""
        storage = settings.storage
        limit = storage.loop_statement_limit(debug=settings.log_level == "DEBUG")
        db = await open_database(storage, loop_statement_ms=limit)
        metrics = Metrics()
        db.on_transaction = metrics.db_seconds.observe
        calendar = BusinessCalendar(settings.zone, settings.checkin.rollover_hour)
        scheduler = AsyncIOScheduler(
            timezone=settings.zone,
            job_defaults={"coalesce": True, "misfire_grace_time": 3600, "max_instances": 1},
        )
        leader: Leadership = (
            PostgresLeadership(storage.url) if storage.engine == "postgresql" else SoleLeadership()
        )
        planner = Planner(scheduler, leader)
        outbox = Outbox(db, settings.delivery, claimant=leader.name, shared=leader.shared,
                        notify=lambda: leader.notify("vipbot_outbox"))  # fmt: skip
        leader.listen("vipbot_outbox", outbox.poke)
        metrics.bind(db, outbox, lambda: leader.leading)
        table = assemble(FEATURES)
        deps = Deps(
            db=db,
            clock=clock or SystemClock(),
            rules=settings.rules,
            calendar=calendar,
            texts=Catalog(settings.locale, settings.messages),
            outbox=outbox,
            planner=planner,
            kinds=table.kinds,
        )
        planner.bind(deps)
        add_housekeeping(scheduler, deps, outbox, table.jobs)
        dispatcher = MeteredDispatcher(deps, table.commands, metrics)
        return cls(settings, deps, dispatcher, scheduler, planner, outbox, metrics, leader)

    def on_lead(self, hook: Callable[[], Awaitable[None]]) -> None:
        """Run `hook` when this process becomes leader (after the outbox and scheduler started)."""
        self._lead_hooks.append(hook)

    async def start(self) -> None:
        """Try for the lead (on SQLite: take it); leading, start sending and scheduling. Channels must have
        registered their pushers and hooks before this."""
        await self.leader.start(self._lead, self.lost.set)

    async def _lead(self) -> None:
        await self.outbox.start()
        await plan_greetings(self.deps)
        await self.planner.replan()
        if not self.scheduler.running:
            self.scheduler.start()
        await self.planner.fire()  # whatever fell due while the bot was down
        await send_birthdays(self.deps)  # does nothing before the configured hour, or twice a day
        for hook in self._lead_hooks:
            await hook()

    async def close(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.outbox.stop()
        await self.leader.stop()  # after the last send: a follower takes over what is left
        await self.deps.db.close()
