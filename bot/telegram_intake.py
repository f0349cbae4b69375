"""Updates in, durably: every Telegram update is stored in the inbox before Telegram is told it arrived,
then handled from there by a few workers.

Polling: `getUpdates` is called with the offset of the last *stored* update + 1, which is what confirms
the earlier ones to Telegram; a crash before the store means Telegram sends them again. Fetching pauses
while `telegram.prefetch` updates wait to be handled (Telegram keeps the rest). A webhook's 200 is sent
only after the store, likewise. A restart resumes the stored updates not yet done, and the "done" mark
commits with the handler's effects (see `Dispatcher.handle_update`), so each update counts once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from storage.database import Database
from storage.preflight import is_storage_fault

log = logging.getLogger(__name__)

CHANNEL = "telegram"
LONG_POLL_SECONDS = 25


def update_key(update_id: int) -> str:
    return f"{CHANNEL}:update:{update_id}"


def sender_of(update: dict[str, Any]) -> object:
    """Who an update is from (their updates must keep their order); the update's own id if nobody."""
    for field in ("message", "edited_message", "callback_query", "poll_answer", "my_chat_member", "chat_member"):
        part = update.get(field)
        if isinstance(part, dict):
            who = part.get("from") or part.get("user")
            if isinstance(who, dict) and "id" in who:
                return who["id"]
    return ("update", update.get("update_id"))


Process = Callable[[str, dict[str, Any]], Awaitable[bool]]
"""Handles one stored update; False when storage failed and it must be tried again later."""


class Intake:
    def __init__(
        self,
        db: Database,
        process: Process,
        *,
        workers: int,
        prefetch: int,
        on_store_fault: Callable[[list[dict[str, Any]], BaseException], None],
    ) -> None:
        self.db = db
        self.process = process
        self.workers = workers
        self.prefetch = prefetch
        self.on_store_fault = on_store_fault
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._queued: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: asyncio.Task[None] | None = None
        self._room = asyncio.Event()
        self._busy = 0
        self._senders: dict[object, tuple[asyncio.Lock, int]] = {}
        """Per sender: the lock that keeps their updates in order, and how many workers hold or await it."""
        self._stopping = False
        self.handled = 0

    # --- the store -----------------------------------------------------------------------------------
    async def store(self, updates: list[dict[str, Any]]) -> list[str]:
        """Keep these updates (one transaction) and queue the new ones; raises when storage fails."""
        items = [(update_key(int(u["update_id"])), json.dumps(u, ensure_ascii=False)) for u in updates]
        async with self.db.transaction() as repos:
            new = await repos.inbox.store(CHANNEL, items, int(time.time()))
        fresh = set(new)
        for update in updates:
            key = update_key(int(update["update_id"]))
            if key in fresh:
                self._enqueue(key, update)
        return new

    def _enqueue(self, key: str, update: dict[str, Any]) -> None:
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait((key, update))

    @property
    def backlog(self) -> int:
        return self._queue.qsize() + self._busy

    # --- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Resume what was stored and not handled, then start the workers."""
        async with self.db.read() as repos:
            stored = await repos.inbox.pending(CHANNEL, 1_000_000)
        for item in stored:
            try:
                self._enqueue(item.key, json.loads(item.payload))
            except (TypeError, ValueError):
                log.warning("inbox: %s is not readable JSON; skipped", item.key)
        if stored:
            log.info("resuming %d stored updates", len(stored))
        self._tasks = [asyncio.create_task(self._work(), name=f"intake-{n}") for n in range(self.workers)]

    def poll(self, client: httpx.AsyncClient, url: str, allowed_updates: list[str]) -> None:
        self._poller = asyncio.create_task(self._poll(client, url, allowed_updates), name="getUpdates")

    async def stop(self, timeout: float) -> None:
        """Stop fetching; finish the updates being handled (bounded); the rest stays stored for the next start."""
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for _ in self._tasks:
            self._queue.put_nowait(("", {}))  # wakes an idle worker so it sees the stop
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self._tasks = []

    async def idle(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while self.backlog:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    # --- polling -------------------------------------------------------------------------------------
    async def _poll(self, client: httpx.AsyncClient, url: str, allowed_updates: list[str]) -> None:
        offset: int | None = None
        pause = 0.5
        while not self._stopping:
            if self.backlog >= self.prefetch:
                self._room.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._room.wait(), 1.0)
                continue
            body: dict[str, Any] = {"timeout": LONG_POLL_SECONDS, "limit": 100, "allowed_updates": allowed_updates}
            if offset is not None:
                body["offset"] = offset
            try:
                response = await client.post(url, json=body, timeout=LONG_POLL_SECONDS + 10)
                data = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("getUpdates failed: %s; trying again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            if not data.get("ok"):
                wait = float((data.get("parameters") or {}).get("retry_after") or pause)
                log.warning("getUpdates refused: %s; trying again in %.1f s", data.get("description"), wait)
                await asyncio.sleep(wait)
                pause = min(pause * 2, 30.0)
                continue
            result = data.get("result") or []
            updates = [u for u in result if isinstance(u, dict) and isinstance(u.get("update_id"), int)]
            if not updates:
                pause = 0.5
                continue
            try:
                await self.store(updates)
            except Exception as exc:
                if not is_storage_fault(exc):
                    log.exception("storing %d updates failed", len(updates))
                self.on_store_fault(updates, exc)
                await asyncio.sleep(pause)  # not confirmed: Telegram sends them again
                pause = min(pause * 2, 30.0)
                continue
            pause = 0.5
            offset = max(u["update_id"] for u in updates) + 1  # confirms exactly what is stored

    # --- handling ------------------------------------------------------------------------------------
    async def _work(self) -> None:
        retry = 1.0
        while not self._stopping:
            key, update = await self._queue.get()
            if not key or self._stopping:
                if key:
                    self._queued.discard(key)
                continue
            self._busy += 1
            sender = sender_of(update)
            # One member's updates are handled in the order they came (a re-vote after a vote), while
            # different members' run side by side. The lock is taken before anything can yield.
            lock, users = self._senders.get(sender) or (asyncio.Lock(), 0)
            self._senders[sender] = (lock, users + 1)
            try:
                async with lock:
                    ok = await self.process(key, update)
            except Exception:
                log.exception("handling %s failed", key)
                ok = True  # a bug, not the disk: trying again would fail the same way
            finally:
                self._busy -= 1
                self._room.set()
                lock, users = self._senders[sender]
                if users > 1:
                    self._senders[sender] = (lock, users - 1)
                else:
                    del self._senders[sender]  # nobody else waits: keeps the map small
            if ok:
                self._queued.discard(key)
                self.handled += 1
                retry = 1.0
            else:  # storage failed: it stays stored (or Telegram keeps it); try again when space may be back
                asyncio.get_running_loop().call_later(retry, self._queue.put_nowait, (key, update))
                retry = min(retry * 2, 30.0)
            if not self._queue.empty():
                # Handling an update need not wait for anything (its statements run on the loop), so without
                # this one worker would take a whole backlog in one go and the loop would run nothing else
                # meanwhile: no SIGTERM, no getUpdates, no webhook answer, no reply sent, no start-up step.
                await asyncio.sleep(0)
