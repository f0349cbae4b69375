"""Builds what every channel shares: database, dependencies, dispatcher and scheduler."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.config import Settings
from bot.scheduler import build_scheduler
from handlers.clock import BusinessCalendar, Clock, SystemClock
from handlers.deps import Deps
from handlers.dispatch import Dispatcher
from handlers.i18n import Catalog
from handlers.registry import build_commands
from storage.database import Database

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    deps: Deps
    dispatcher: Dispatcher
    scheduler: AsyncIOScheduler

    @classmethod
    async def open(cls, settings: Settings, clock: Clock | None = None) -> Runtime:
        """Open the database (migrating it) and wire the handlers; the scheduler is not started yet."""
        db = await Database.open(settings.storage.path)
        deps = Deps(
            db=db,
            clock=clock or SystemClock(),
            rules=settings.rules,
            calendar=BusinessCalendar(settings.zone, settings.checkin.rollover_hour),
            texts=Catalog(settings.locale, settings.messages),
        )
        return cls(settings, deps, Dispatcher(deps, build_commands()), build_scheduler(deps))

    def start_scheduler(self) -> None:
        if not self.scheduler.running:
            self.scheduler.start()

    async def close(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await self.deps.db.close()
