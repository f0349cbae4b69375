"""GET /healthz: a small JSON status for load balancers and monitors (database, channels, scheduler)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bot.app.runtime import Runtime
from bot.app.web import QuietHandler


class HealthHandler(QuietHandler):
    def initialize(self, runtime: Runtime, channels: Callable[[], dict[str, str]]) -> None:
        self.runtime = runtime
        self.channels = channels

    async def get(self) -> None:
        database = True
        try:
            await asyncio.wait_for(self.runtime.deps.db.ping(), timeout=2)
        except Exception:
            database = False
        scheduler = self.runtime.scheduler.running
        healthy = database and scheduler
        self.set_status(200 if healthy else 503)
        self.finish({"status": "ok" if healthy else "degraded", "database": database, "scheduler": scheduler,
                     "channels": self.channels()})  # fmt: skip
