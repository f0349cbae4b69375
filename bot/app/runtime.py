"""Builds what every channel shares: database, dependencies, dispatcher, scheduler and the figures for /metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.app.config import Settings
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
        planner = Planner(scheduler)
        outbox = Outbox(db, settings.delivery)
        metrics.bind(db, outbox)
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
        return cls(settings, deps, dispatcher, scheduler, planner, outbox, metrics)

    async def start(self) -> None:
        """Start sending and scheduling; channels must have registered their pushers before this."""
        await self.outbox.start()
        await plan_greetings(self.deps)
        await self.planner.replan()
        if not self.scheduler.running:
            self.scheduler.start()
        await self.planner.fire()  # whatever fell due while the bot was down
        await send_birthdays(self.deps)  # does nothing before the configured hour, or twice a day

    async def close(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.outbox.stop()
        await self.deps.db.close()
