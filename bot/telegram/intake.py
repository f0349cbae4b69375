"""Updates in, durably: every Telegram update is stored in the inbox before Telegram is told it arrived,
then handled from there by a few workers.

Polling: `getUpdates` is called with the offset of the last *stored* update + 1, which is what confirms
the earlier ones to Telegram; a crash before the store means Telegram sends them again. Fetching pauses
while `telegram.prefetch` updates wait to be handled (Telegram keeps the rest). A webhook's 200 is sent
only after the store, likewise. A restart resumes the stored updates not yet done, and the "done" mark
commits with the handler's effects (see `Dispatcher.handle_update`), so each update counts once.

With several processes on one PostgreSQL database every process stores what its webhook is posted, and only the
leader's intake handles: it looks for updates other processes stored when told so (NOTIFY, `poke`) and every
`SHARED_SWEEP_SECONDS` at the latest.

Nothing read here is trusted: an update whose fields the bot reads have the wrong shape (`update_problem`), a
stored row that is not an update, or one whose handling raises is logged once and marked done, so it never
blocks a worker, stalls polling or comes back at the next start; a webhook answers such a body 400.
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
from cachetools import LRUCache

from storage.db.database import Database
from storage.db.preflight import is_storage_fault

log = logging.getLogger(__name__)

CHANNEL = "telegram"
LONG_POLL_SECONDS = 25
INT64_MAX = 2**63 - 1
CONFLICT_FIRST_PAUSE = 5.0
CONFLICT_MAX_PAUSE = 60.0
"""After a 409 Conflict, getUpdates is tried again after 5 s, then ever more slowly up to once a minute: each try
would cut the other poller's long poll short and take some of its updates."""
_CONFLICT_NAMES = {"poller": "other poller", "webhook": "webhook"}
FINISHED_MEMORY = 50_000
SHARED_SWEEP_SECONDS = 1.0
"""How often the leader looks for updates other processes stored, when no NOTIFY came."""
"""Ids beyond SQLite's integer range are no Telegram ids."""


def update_key(update_id: int) -> str:
    return f"{CHANNEL}:update:{update_id}"


def sender_of(update: dict[str, Any]) -> object:
    """Who an update is from (their updates must keep their order); the update's own id if nobody."""
    for field in ("message", "edited_message", "callback_query", "poll_answer", "my_chat_member", "chat_member"):
        part = update.get(field)
        if isinstance(part, dict):
            who = part.get("from") or part.get("user")
            if isinstance(who, dict) and isinstance(who.get("id"), int | str):
                return who["id"]
    return ("update", update.get("update_id"))


# --- the shape of an update --------------------------------------------------------------------------
def _whole(value: object, low: int = -INT64_MAX, high: int = INT64_MAX) -> bool:
    return type(value) is int and low <= value <= high  # not a bool, not a float, within SQLite's range


def _optional(part: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> bool:
    value = part.get(name)
    return value is None or (isinstance(value, kind) and not (kind is int and isinstance(value, bool)))


def _user_problem(user: object, where: str) -> str | None:
    if not isinstance(user, dict):
        return f"{where} is not an object"
    if not _whole(user.get("id"), 1):
        return f"{where}.id is not a user id"
    if not _optional(user, "is_bot", bool):
        return f"{where}.is_bot is not true or false"
    if not all(_optional(user, name, str) for name in ("first_name", "last_name", "username", "language_code")):
        return f"{where} has a name that is not text"
    return None


def _chat_problem(chat: object, where: str) -> str | None:
    if not isinstance(chat, dict):
        return f"{where} is not an object"
    if not _whole(chat.get("id")) or not isinstance(chat.get("type"), str):
        return f"{where} lacks a chat id or type"
    return None


def _message_problem(message: object, where: str, nested: bool = False) -> str | None:
    if not isinstance(message, dict):
        return f"{where} is not an object"
    if not _whole(message.get("message_id")) or not _whole(message.get("date"), 0):
        return f"{where} lacks a message_id or date"
    problem = _chat_problem(message.get("chat"), f"{where}.chat")
    if problem is None and message.get("from") is not None:
        problem = _user_problem(message["from"], f"{where}.from")
    if problem is None and message.get("sender_chat") is not None:
        problem = _chat_problem(message["sender_chat"], f"{where}.sender_chat")
    if problem is not None:
        return problem
    if not (_optional(message, "text", str) and _optional(message, "caption", str)):
        return f"{where} has a text that is not text"
    if not (_optional(message, "message_thread_id", int) and _optional(message, "is_topic_message", bool)):
        return f"{where} has a malformed topic"
    if not all(_optional(message, name, list) for name in ("entities", "caption_entities")):
        return f"{where} has malformed entities"
    problem = _attachment_problem(message, where)
    if problem is not None:
        return problem
    replied = message.get("reply_to_message")
    if replied is not None:
        if nested:
            return None  # Telegram does not nest replies further; the bot reads no deeper
        return _message_problem(replied, f"{where}.reply_to_message", nested=True)
    return None


def _attachment_problem(message: dict[str, Any], where: str) -> str | None:
    """A file or a shared contact, as far as the bot reads them (name, size and handle; number and user)."""
    document = message.get("document")
    if document is not None:
        if not isinstance(document, dict) or not isinstance(document.get("file_id"), str):
            return f"{where}.document lacks a file_id"
        if not (_optional(document, "file_name", str) and _optional(document, "file_size", int)):
            return f"{where}.document has a malformed name or size"
    contact = message.get("contact")
    if contact is not None:
        if not isinstance(contact, dict) or not isinstance(contact.get("phone_number"), str):
            return f"{where}.contact lacks a phone_number"
        if contact.get("user_id") is not None and not _whole(contact["user_id"], 1):
            return f"{where}.contact.user_id is not a user id"
    return None


def _callback_problem(query: object) -> str | None:
    if not isinstance(query, dict):
        return "callback_query is not an object"
    if not isinstance(query.get("id"), str) or not _optional(query, "data", str):
        return "callback_query lacks an id, or its data is not text"
    problem = _user_problem(query.get("from"), "callback_query.from")
    if problem is None and query.get("message") is not None:
        problem = _message_problem(query["message"], "callback_query.message")
    return problem


def _poll_answer_problem(answer: object) -> str | None:
    if not isinstance(answer, dict):
        return "poll_answer is not an object"
    options = answer.get("option_ids")
    if not isinstance(answer.get("poll_id"), str) or not isinstance(options, list):
        return "poll_answer lacks a poll_id or option_ids"
    if not all(_whole(option, 0) for option in options):
        return "poll_answer has an option that is not a number"
    problem = _user_problem(answer["user"], "poll_answer.user") if answer.get("user") is not None else None
    if problem is None and answer.get("voter_chat") is not None:
        problem = _chat_problem(answer["voter_chat"], "poll_answer.voter_chat")
    return problem


def update_problem(update: object) -> str | None:
    """What is wrong with an update the bot is to handle, or None. Checks the fields the bot reads (the
    message, button press or poll answer, who sent it and where, its text) for the types Telegram gives them
    and for ids within SQLite's range. python-telegram-bot refuses what lacks a field it needs (a user without
    a first name), and the bot ignores the kinds of update it does not read; those are left to it."""
    if not isinstance(update, dict):
        return "not an object"
    if not _whole(update.get("update_id"), 0):
        return "update_id is not a whole number from 0 to 2^63-1"
    # Besides its id, everything an update carries is an object.
    odd = next((name for name, part in update.items() if name != "update_id" and not isinstance(part, dict | None)), "")
    if odd:
        return f"{str(odd)[:40]} is not an object"
    if update.get("message") is not None:
        return _message_problem(update["message"], "message")
    if update.get("callback_query") is not None:
        return _callback_problem(update["callback_query"])
    if update.get("poll_answer") is not None:
        return _poll_answer_problem(update["poll_answer"])
    return None


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
        self._started = False
        self._sweeper: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._skipped = 0
        """Pending updates the last sweep left alone (so that the next one reads past them)."""
        self._finished_here: LRUCache[str, bool] = LRUCache(FINISHED_MEMORY)
        """Updates this process finished with: the sweep leaves them alone, even when one is pending again (a
        handler that failed releases its update for the next start, as on SQLite, not for the next second)."""
        self.handled = 0
        self.failures = 0
        """Updates whose handling raised (a bug, not the disk): skipped, for /metrics."""
        self.floods = 0
        """getUpdates answered 429, for /metrics."""
        self.conflict: str | None = None
        """While getUpdates answers 409 Conflict: "poller" (another process polls this token) or "webhook"."""
        self.conflicts = 0
        """getUpdates answered 409 Conflict, for /metrics."""
        self.conflict_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
        """How the poller waits after a 409 (tests replace it, so that no test sleeps for real)."""

    # --- the store -----------------------------------------------------------------------------------
    async def store(self, updates: list[dict[str, Any]]) -> list[str]:
        """Keep these updates (one transaction) and queue the new ones; raises when storage fails."""
        items = [(update_key(int(u["update_id"])), json.dumps(u, ensure_ascii=False)) for u in updates]
        async with self.db.transaction() as repos:
            new = await repos.inbox.store(CHANNEL, items, int(time.time()))
        fresh = set(new)
        if not self._started:
            return new  # another process leads: it handles them
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
    async def start(self, shared: bool = False) -> None:
        """Resume what was stored and not handled, then start the workers; `shared`: other processes store
        updates too, so keep looking for theirs."""
        self._started = True
        await self._resume()
        self._tasks = [asyncio.create_task(self._work(), name=f"intake-{n}") for n in range(self.workers)]
        if shared:
            self._sweeper = asyncio.create_task(self._sweep(), name="intake-sweep")

    def poke(self) -> None:
        """Another process stored updates (a NOTIFY): look for them now."""
        self._poked.set()

    async def _sweep(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), SHARED_SWEEP_SECONDS)
            self._poked.clear()
            if self._stopping:
                return
            if self.backlog >= self.prefetch:
                continue  # enough in hand; the oldest stored come first once there is room
            try:
                await self._resume(limit=self.prefetch + self.backlog + self._skipped)
            except Exception as exc:
                log.warning("inbox: looking for stored updates failed: %s", exc)

    async def _resume(self, limit: int | None = None) -> None:
        """Queue the stored updates not handled yet (the oldest `limit` of them; all at the start)."""
        async with self.db.read() as repos:
            stored = await repos.inbox.pending(CHANNEL, limit or 1_000_000)
        unreadable: list[str] = []
        skipped = 0
        for item in stored:
            if limit is not None and item.key in self._finished_here:
                skipped += 1  # released by a handler that failed here: for the next start
                continue
            try:
                update = json.loads(item.payload)
            except (TypeError, ValueError, RecursionError):
                update = None
            if isinstance(update, dict):
                self._enqueue(item.key, update)  # a malformed one is skipped by the worker, with its reason
            else:
                unreadable.append(item.key)
        for key in unreadable:
            if await self._mark_done(key):
                log.warning("inbox: %s is not a readable update; skipped", key)
        self._skipped = skipped
        if stored and limit is None:
            log.info("resuming %d stored updates", len(stored) - len(unreadable))

    def poll(self, client: httpx.AsyncClient, url: str, allowed_updates: list[str]) -> None:
        self._poller = asyncio.create_task(self._poll(client, url, allowed_updates), name="getUpdates")

    async def stop(self, timeout: float) -> None:
        """Stop fetching; finish the updates being handled (bounded); the rest stays stored for the next start."""
        self._stopping = True
        self._poked.set()
        if self._sweeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
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
                if not isinstance(data, dict):
                    raise ValueError(f"not a Bot API answer: {str(data)[:80]}")
            except (httpx.HTTPError, ValueError, RecursionError) as exc:
                log.warning("getUpdates failed: %s; trying again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 30.0)
                continue
            if data.get("ok") is not True and data.get("error_code") == 409:
                wait = self._conflicted(str(data.get("description") or ""), pause)
                await self.conflict_sleep(wait)
                pause = min(wait * 2, CONFLICT_MAX_PAUSE)
                continue
            if data.get("ok") is not True:
                if data.get("error_code") == 429:
                    self.floods += 1
                wait = _retry_after(data, pause)
                log.warning("getUpdates refused: %s; trying again in %.1f s", str(data.get("description"))[:200], wait)
                await asyncio.sleep(wait)
                pause = min(pause * 2, 30.0)
                continue
            if self.conflict is not None:
                gone = _CONFLICT_NAMES[self.conflict]
                log.warning("telegram: getUpdates works again (the %s is gone); polling goes on", gone)
                self.conflict = None
            result = data.get("result")
            if not isinstance(result, list):
                result = []
            updates = [u for u in result if isinstance(u, dict) and _whole(u.get("update_id"), 0)]
            if not updates:
                if result:  # only entries without an update_id: nothing to confirm them by
                    log.warning("getUpdates answered %d entries that are not updates; trying again in %.1f s",
                                len(result), pause)  # fmt: skip
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 30.0)
                else:
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

    def _conflicted(self, description: str, pause: float) -> float:
        """getUpdates answered 409 Conflict: say once, as an ERROR, who else takes this bot's updates (another
        poller with the same token, or a webhook), and return how long to wait before trying again. Polling
        goes on: the other one may be stopping (a restart elsewhere, a deploy), and then this one takes over."""
        cause = "webhook" if "webhook" in description.lower() else "poller"
        self.conflicts += 1
        wait = min(max(pause, CONFLICT_FIRST_PAUSE), CONFLICT_MAX_PAUSE)
        if cause != self.conflict:
            self.conflict = cause
            told = f"Telegram: {description[:200]!r}"
            if cause == "poller":
                log.error("telegram: another process is polling getUpdates with this bot token (%s), so the two "
                          "take each other's updates: only one bot may poll a token. Stop the other one (another "
                          "machine, or a copy started by hand), or run every worker behind one webhook "
                          "(telegram.webhook.url). Trying again in %.0f s, then up to once a minute",
                          told, wait)  # fmt: skip
            else:
                log.error("telegram: a webhook is set for this bot token (%s), so getUpdates gets nothing: another "
                          "vipbot runs with telegram.webhook.url, or setWebhook was called by hand. Stop that one, or "
                          "give this one the same telegram.webhook.url. Trying again in %.0f s, then up to once a "
                          "minute", told, wait)  # fmt: skip
        else:
            log.debug("getUpdates still in conflict (%s); trying again in %.0f s", cause, wait)
        return wait

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
            problem = update_problem(update)
            if problem is not None:  # nothing to handle: done for good, said once
                ok = await self._mark_done(key)
                if ok:
                    log.warning("update %s skipped: %s", key, problem)
                self._busy -= 1
                self._room.set()
                self._finished(key, ok, update)
                continue
            sender = sender_of(update)
            # One member's updates are handled in the order they came (a re-vote after a vote), while
            # different members' run side by side. The lock is taken before anything can yield.
            lock, users = self._senders.get(sender) or (asyncio.Lock(), 0)
            self._senders[sender] = (lock, users + 1)
            try:
                async with lock:
                    ok = await self.process(key, update)
            except Exception as exc:
                if is_storage_fault(exc):
                    ok = False  # the disk: try again when space may be back
                else:  # a bug, not the disk: trying again would fail the same way, so it is done for good
                    log.exception("handling %s failed; skipped", key)
                    self.failures += 1
                    ok = await self._mark_done(key)
            finally:
                self._busy -= 1
                self._room.set()
                lock, users = self._senders[sender]
                if users > 1:
                    self._senders[sender] = (lock, users - 1)
                else:
                    del self._senders[sender]  # nobody else waits: keeps the map small
            retry = self._finished(key, ok, update, retry)
            if not self._queue.empty():
                # Handling an update need not wait for anything (its statements run on the loop), so without
                # this one worker would take a whole backlog in one go and the loop would run nothing else
                # meanwhile: no SIGTERM, no getUpdates, no webhook answer, no reply sent, no start-up step.
                await asyncio.sleep(0)

    def _finished(self, key: str, ok: bool, update: dict[str, Any], retry: float = 1.0) -> float:
        """Count a handled update, or queue it again after `retry` seconds; returns the next retry delay."""
        if ok:
            self._queued.discard(key)
            self._finished_here[key] = True
            self.handled += 1
            return 1.0
        # storage failed: it stays stored (or Telegram keeps it); try again when space may be back
        asyncio.get_running_loop().call_later(retry, self._queue.put_nowait, (key, update))
        return min(retry * 2, 30.0)

    async def _mark_done(self, key: str) -> bool:
        """Mark an update that cannot be handled as done, so no restart tries it again; False if storage failed."""
        try:
            async with self.db.transaction() as repos:
                await repos.inbox.claim(key, CHANNEL, int(time.time()))
        except Exception as exc:
            if not is_storage_fault(exc):
                log.exception("marking %s done failed", key)
            return False
        return True


def _retry_after(data: dict[str, Any], default: float) -> float:
    """The wait Telegram asks for in a refusal (``parameters.retry_after``), if it is a sane number."""
    parameters = data.get("parameters")
    value = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 3600:
        return float(value)
    return default
