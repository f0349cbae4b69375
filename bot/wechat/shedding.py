"""Load shedding for WeChat's pushed messages: while this process cannot answer the messages it already has
within WeChat's window, a new one is refused at once with 503 instead of joining a queue that only grows.

Past its capacity a worker that takes every message answers none in time (each waits behind all the others,
WeChat cuts it at 5 s and sends it again, which adds to the queue): the whole burst fails. Refused at once, a
message costs almost nothing, WeChat tries it again seconds later (three tries in all), and the messages taken
are answered in time. Two signs of overload, either one enough:

- the event loop runs late: a probe that sleeps `PROBE_SECONDS` wakes more than `LOOP_LAG_LIMIT_SECONDS` late
  (the process has more to do than its CPU allows);
- messages wait for a handler: the last one to start had waited more than `QUEUE_LIMIT_SECONDS`, and others
  still wait (the database, or the handlers, are the bottleneck).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

log = logging.getLogger(__name__)

PROBE_SECONDS = 0.1
LOOP_LAG_LIMIT_SECONDS = 0.5
QUEUE_LIMIT_SECONDS = 2.0
SAID_EVERY_SECONDS = 10.0


class Shedder:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lag = 0.0
        """How late the loop's last probe woke, in seconds."""
        self.waiting = 0
        """Messages waiting for a handler."""
        self.queue_delay = 0.0
        """How long the last message to get a handler had waited for it."""
        self.shed = 0
        """Messages refused so far (for /metrics and the log)."""
        self._task: asyncio.Task[None] | None = None
        self._said_at = -SAID_EVERY_SECONDS

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe(), name="wechat-shedding")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _probe(self) -> None:
        while True:
            asked = self.clock()
            await asyncio.sleep(PROBE_SECONDS)
            self.lag = max(0.0, self.clock() - asked - PROBE_SECONDS)

    @property
    def overloaded(self) -> bool:
        return self.lag > LOOP_LAG_LIMIT_SECONDS or (self.waiting > 0 and self.queue_delay > QUEUE_LIMIT_SECONDS)

    def refuse(self) -> bool:
        """Whether to refuse the message arriving now (counted, and said in the log now and then)."""
        if not self.overloaded:
            return False
        self.shed += 1
        now = self.clock()
        if now - self._said_at >= SAID_EVERY_SECONDS:
            self._said_at = now
            log.warning("wechat: overloaded (event loop %.1f s late, last message waited %.1f s for a handler, %d"
                        " waiting): refusing new messages with 503 so that WeChat tries them again (%d so far)",
                        self.lag, self.queue_delay, self.waiting, self.shed)  # fmt: skip
        return True

    @contextlib.asynccontextmanager
    async def queued(self, slots: asyncio.Semaphore) -> AsyncIterator[None]:
        """Hold one of `slots` (a handler) for the block, measuring how long the message waited for it."""
        entered = self.clock()
        self.waiting += 1
        try:
            await slots.acquire()
        finally:
            self.waiting -= 1
        self.queue_delay = self.clock() - entered if self.waiting else 0.0
        try:
            yield
        finally:
            slots.release()
