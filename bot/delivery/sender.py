"""The sender: everything that leaves the bot on one channel goes through it, replies and pushes alike.

Handlers never wait for a platform's limits: their replies are handed over as `Job`s and the update is
done. The sender keeps one queue per chat ("scope") and sends under the platform's limits (a gap and a
sliding window per chat, a window overall), highest priority first: answers in private chats and button
toasts, then staff, then group replies, then bulk pushes. Group replies that wait together go out as one
message; a live job (a board, a stock line) is drawn at send time and a newer one replaces the queued one.
A flood wait (429) pauses only the chat it concerns and costs no attempt; a transport error is retried
with backoff. The platform calls themselves are the `Transport`'s (see `bot.telegram.sender`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


async def stop_tasks(loop: asyncio.Task[None] | None, inflight: set[asyncio.Task[None]], timeout: float) -> None:
    """Cancel a loop task and wait for it; give the tasks in flight `timeout` seconds, then cancel the rest."""
    if loop is not None:
        loop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop
    if inflight:
        _, late = await asyncio.wait(set(inflight), timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late)


class Priority(enum.IntEnum):
    ANSWER = 0
    """Answers in private chats and button toasts."""
    STAFF = 1
    GROUP = 2
    BULK = 3
    """Broadcasts, greetings, scheduled pushes."""


class Outcome(enum.Enum):
    SENT = "sent"
    FLOOD = "flood"
    """The platform asked to wait (429): not a failure."""
    RETRY = "retry"
    """A transport error that sending again can cure."""
    UNCERTAIN = "uncertain"
    """The request may have reached the platform."""
    FAILED = "failed"
    """Refused for good (blocked, chat gone, bad request)."""
    SKIPPED = "skipped"
    """Its claim was refused: someone else took it; nothing was sent."""


@dataclass(frozen=True, slots=True)
class Delivered:
    outcome: Outcome
    error: str = ""
    retry_after: float = 0.0
    message_id: str | None = None
    extra: Any = None


@dataclass(frozen=True, slots=True)
class Pace:
    """The sender's sense of time: real time by default. Tests run it `speed` times faster, with the fake
    Bot API on the same pace, so that Telegram's limits hold exactly while no test waits for real minutes."""

    speed: float = 1.0

    def now(self) -> float:
        return time.monotonic() * self.speed

    def real(self, seconds: float) -> float:
        """Real seconds that `seconds` of this pace take."""
        return seconds / self.speed


@dataclass(frozen=True, slots=True)
class ScopeLimit:
    """At most `count` messages in any `window` seconds, at least `gap` seconds apart."""

    count: int
    window: float
    gap: float


@dataclass(eq=False)
class Job:
    scope: str
    """The chat it goes to: its limits and its queue."""
    priority: Priority
    payload: dict[str, Any] = field(default_factory=dict)
    blob: bytes | None = None
    coalesce: bool = False
    """A short group reply that may share one message with others bound for the same chat."""
    live_key: str | None = None
    """A live job: drawn by `render` at send time; a newer job with the same key replaces a queued one."""
    render: Callable[[], Awaitable[dict[str, Any] | None]] | None = None
    min_interval: float = 0.0
    """For a live job: seconds between two sends of its key."""
    leads: bool = False
    """Takes the chat's turn before anything else whenever it is ready (the check-in board). Its
    `min_interval` bounds it, so the other messages keep the turns it leaves."""
    claim: Callable[[], Awaitable[bool]] | None = None
    """Called right before sending; False drops the job (someone else took it)."""
    on_result: Callable[[Job, Delivered], Awaitable[None]] | None = None
    skip_on_stop: bool = False
    """Still queued when the sender stops: answered SKIPPED (a push whose row stays pending for the next
    start) instead of left unanswered (a reply, whose row is sent at the next start anyway)."""
    row_ids: tuple[int, ...] = ()
    attempts: int = 0
    not_before: float = 0.0
    created: float = -1.0
    """When it was handed over, on the sender's pace (set by `submit`)."""
    seq: int = 0


class Transport(Protocol):
    def limit(self, scope: str) -> ScopeLimit | None:
        """The chat's limit, or None for a job that needs none (a button toast)."""
        ...

    async def deliver(self, jobs: list[Job]) -> Delivered:
        """One platform call for these jobs (several only when they coalesce)."""
        ...


@dataclass
class _Scope:
    key: str
    limit: ScopeLimit | None
    jobs: list[Job] = field(default_factory=list)
    sent_at: deque[float] = field(default_factory=deque)
    live_sent: dict[str, float] = field(default_factory=dict)
    paused_until: float = 0.0
    busy: bool = False
    token: int = 0
    live_turn: bool = False
    """The last message taken was a live job's (a board, a stock line)."""

    def head(self, ready: list[Job]) -> Job:
        """The job that gets the chat's next turn. A leading job (the board) whenever it is ready: paced by
        its own interval, it is redrawn at a steady beat however busy the group, and the rest share the turns
        in between. Otherwise the highest priority, oldest first; while other live jobs (stock lines) and the
        rest both wait, they take turns, so neither starves the other."""
        leading = [j for j in ready if j.leads]
        if leading:
            return min(leading, key=lambda j: j.seq)
        live = [j for j in ready if j.live_key is not None]
        if live and len(live) < len(ready):
            ready = [j for j in ready if j.live_key is None] if self.live_turn else live
        return min(ready, key=lambda j: (j.priority, j.seq))

    def ready(self, now: float) -> list[Job]:
        """The jobs that may take the chat's turn at `now`: past their `not_before` and the chat's limits,
        and none that would push a leading job (the board) back by taking the turn just before it is due."""
        turn = self._turns(now)
        return [j for j in self.jobs if turn(j) <= now]

    def next_turn(self, now: float) -> float:
        """When the next job may take the chat's turn (see `ready`); `now` at the earliest."""
        return min(map(self._turns(now), self.jobs))

    def _turns(self, now: float) -> Callable[[Job], float]:
        earliest = max(self.earliest(), now)
        lead_at = min((j.not_before for j in self.jobs if j.leads), default=None)
        if lead_at is not None:
            lead_at = max(lead_at, earliest)
        gap = self.limit.gap if self.limit is not None else 0.0

        def turn(job: Job) -> float:
            at = max(earliest, job.not_before)
            if not job.leads and lead_at is not None and lead_at - gap < at < lead_at:
                return lead_at  # it would take the leading job's turn: it goes after it
            return at

        return turn

    def forgettable(self, now: float) -> bool:
        """Nothing queued would be held back by what this chat was sent (its window has passed)."""
        last = self.sent_at[-1] if self.sent_at else None
        window = self.limit.window if self.limit is not None else 0.0
        return (last is None or now - last >= window) and now >= self.paused_until

    def earliest(self) -> float:
        """When this chat's limits next allow a message."""
        at = self.paused_until
        limit = self.limit
        if limit is not None and self.sent_at:
            at = max(at, self.sent_at[-1] + limit.gap)
            if len(self.sent_at) >= limit.count:
                at = max(at, self.sent_at[-limit.count] + limit.window)
        return at


@dataclass
class SenderStats:
    sent: int = 0
    floods: int = 0
    retries: int = 0
    failed: int = 0
    coalesced: int = 0
    """Replies that shared a message with an earlier one."""


PART_OVERHEAD = 80
"""Characters a coalesced part costs beyond its text: the member's name, as a mention, and the line break."""


def _part_size(job: Job) -> int:
    return len(str(job.payload.get("text", ""))) + PART_OVERHEAD


def _part_key(job: Job) -> tuple[Any, str]:
    """Whom a coalesced part names and what it says: the same answer twice to one member is said once in a
    message (as the transport writes it), so a member repeating a command does not fill the group's messages."""
    who = job.payload.get("mention") or job.payload.get("who")
    return (who.get("id") if isinstance(who, dict) else None, str(job.payload.get("text", "")))


class Sender:
    def __init__(
        self,
        transport: Transport,
        *,
        per_second: float,
        coalesce_seconds: float = 0.4,
        max_text: int = 3800,
        max_attempts: int = 8,
        concurrency: int = 32,
        pace: Pace | None = None,
    ) -> None:
        self.transport = transport
        self.per_second = per_second
        self.coalesce_seconds = coalesce_seconds
        self.max_text = max_text
        self.max_attempts = max_attempts
        self.stats = SenderStats()
        self.pace = pace or Pace()
        self._now = self.pace.now
        self._scopes: dict[str, _Scope] = {}
        self._timers: list[tuple[float, int, str, int]] = []
        self._ready: list[tuple[int, float, int, str, int]] = []
        self._overall: deque[float] = deque()
        """When the latest calls returned: Telegram counts a message when it arrives, at the latest then."""
        self._flying = 0
        """Calls made and not returned yet (they count against the overall limit until they return)."""
        self._seq = itertools.count(1)
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._toast_slots = asyncio.Semaphore(max(4, concurrency // 2))
        """Toasts have slots of their own: a thousand presses at once must not hold up the chats' messages."""
        self._inflight: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self._stopped = False
        self._dirty: set[str] = set()
        """Chats that got jobs since the loop last looked: scheduled in its next step."""
        self._swept = 0.0

    # --- handing work over -------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue a job; never waits."""
        if self._stopped and job.skip_on_stop and job.on_result is not None:
            self._spawn(job.on_result(job, Delivered(Outcome.SKIPPED, "the sender stopped")))
            return
        job.seq = next(self._seq)
        if job.created < 0:
            job.created = self._now()
        limit = self.transport.limit(job.scope)
        if limit is None:  # no chat limit (a toast): straight out, bounded only by the concurrency
            self._spawn(self._send_unlimited(job))
            return
        scope = self._scopes.get(job.scope)
        if scope is None:
            scope = self._scopes[job.scope] = _Scope(job.scope, limit)
        if job.coalesce:
            job.not_before = max(job.not_before, job.created + self.coalesce_seconds)
        if job.live_key is not None:
            for queued in scope.jobs:
                if queued.live_key == job.live_key:  # the newer content replaces the queued one
                    queued.render, queued.payload, queued.on_result = job.render, job.payload, job.on_result
                    return
            last = scope.live_sent.get(job.live_key)
            if last is not None:
                job.not_before = max(job.not_before, last + job.min_interval)
        scope.jobs.append(job)
        # Scheduled by the loop, once for however many jobs came in meanwhile: deciding a chat's next turn
        # looks at every job queued for it, and a restart resumes thousands into one group at once.
        self._dirty.add(scope.key)
        self._wake.set()

    def pending(self) -> int:
        return sum(len(s.jobs) for s in self._scopes.values()) + len(self._inflight)

    def scope_depths(self) -> dict[str, int]:
        return {key: len(s.jobs) for key, s in self._scopes.items() if s.jobs}

    async def idle(self, timeout: float = 5.0) -> bool:
        """Wait until nothing is queued or in flight; False on timeout."""
        deadline = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._running = True
        self._task = asyncio.create_task(self._run(), name="sender")

    async def stop(self, timeout: float = 3.0) -> None:
        """Stop taking jobs from the queues; let the calls in flight finish (bounded), then cancel them.
        What is still queued stays in the database for the next start (replies and pushes are rows)."""
        self._running = False
        self._stopped = True
        self._wake.set()
        await stop_tasks(self._task, self._inflight, timeout)
        self._task = None
        for scope in self._scopes.values():
            left = [j for j in scope.jobs if j.skip_on_stop and j.on_result is not None]
            scope.jobs = [j for j in scope.jobs if not j.skip_on_stop]
            for job in left:  # whoever waits for it (the outbox) is told, and stops in time
                with contextlib.suppress(Exception):
                    await job.on_result(job, Delivered(Outcome.SKIPPED, "the sender stopped"))  # type: ignore[misc]

    # --- scheduling --------------------------------------------------------------------------------
    def _schedule(self, scope: _Scope) -> None:
        scope.token += 1
        if scope.busy or not scope.jobs:
            if not scope.jobs and not scope.busy and scope.forgettable(self._now()):
                self._scopes.pop(scope.key, None)  # nothing left to remember: keeps the map small
            return
        now = self._now()
        at = scope.next_turn(now)
        if at <= now:
            best = scope.head(scope.ready(now))
            heapq.heappush(self._ready, (best.priority, best.created, best.seq, scope.key, scope.token))
        else:
            heapq.heappush(self._timers, (at, next(self._seq), scope.key, scope.token))
        self._wake.set()

    def _overall_wait(self, now: float) -> float:
        window = self._overall
        while window and now - window[0] >= 1.0:
            window.popleft()
        busy = len(window) + self._flying
        if busy < self.per_second:
            return 0.0
        leave = int(busy - self.per_second) + 1  # returned calls that must leave the window first
        if leave > len(window):
            return 0.05  # the room is all in flight: look again shortly
        return window[leave - 1] + 1.0 - now

    async def _run(self) -> None:
        while self._running:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sender loop failed; going on")
                await asyncio.sleep(0.1)

    async def _step(self) -> None:
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            for key in dirty:
                scope = self._scopes.get(key)
                if scope is not None:
                    self._schedule(scope)
        now = self._now()
        if now - self._swept > 60.0:  # forget idle chats whose windows have passed (bounded memory)
            self._swept = now
            for key in [k for k, sc in self._scopes.items() if not sc.jobs and not sc.busy and sc.forgettable(now)]:
                del self._scopes[key]
        while self._timers and self._timers[0][0] <= now:
            _, _, key, token = heapq.heappop(self._timers)
            scope = self._scopes.get(key)
            if scope is not None and scope.token == token:
                self._schedule(scope)
        while self._ready:
            _, _, _, key, token = self._ready[0]
            scope = self._scopes.get(key)
            if scope is not None and scope.token == token and not scope.busy:
                break
            heapq.heappop(self._ready)
        if not self._ready:
            timeout = self._timers[0][0] - now if self._timers else None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), None if timeout is None else self.pace.real(timeout))
            return
        wait = self._overall_wait(now)
        if wait > 0:
            await asyncio.sleep(self.pace.real(wait))
            return
        await self._slots.acquire()
        _, _, _, key, token = heapq.heappop(self._ready)
        scope = self._scopes.get(key)
        if scope is None or scope.token != token or scope.busy:
            self._slots.release()
            return
        batch = self._take(scope, self._now())
        if not batch:
            self._slots.release()
            self._schedule(scope)
            return
        scope.busy = True
        sent_at = self._now()
        self._flying += 1
        scope.sent_at.append(sent_at)
        for job in batch:
            if job.live_key is not None:  # a newer version handed over while this one is on its way waits too
                scope.live_sent[job.live_key] = sent_at
        if scope.limit is not None:
            while len(scope.sent_at) > scope.limit.count:
                scope.sent_at.popleft()
        task = asyncio.create_task(self._send(scope, batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    def _take(self, scope: _Scope, now: float) -> list[Job]:
        ready = scope.ready(now)
        if not ready:
            return []
        head = scope.head(ready)
        scope.live_turn = head.live_key is not None
        batch = [head]
        if head.coalesce:
            size = _part_size(head)
            said = {_part_key(head)}
            thread = head.payload.get("thread")
            for job in sorted(ready, key=lambda j: j.seq):
                if job is head or not job.coalesce or job.payload.get("thread") != thread:
                    continue
                if _part_key(job) in said:
                    batch.append(job)  # said once already in this message: takes no room
                    continue
                size += _part_size(job)
                if size > self.max_text:
                    break
                said.add(_part_key(job))
                batch.append(job)
        taken = {id(j) for j in batch}
        scope.jobs = [j for j in scope.jobs if id(j) not in taken]
        return batch

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # --- sending -----------------------------------------------------------------------------------
    async def _send_unlimited(self, job: Job) -> None:
        async with self._toast_slots:
            result = await self._call([job])
        if result.outcome in (Outcome.FLOOD, Outcome.RETRY) and job.attempts < 2:
            job.attempts += 1
            await asyncio.sleep(self.pace.real(min(result.retry_after or 0.5, 2.0)))
            self._spawn(self._send_unlimited(job))
            return
        await self._finish([job], result)

    async def _send(self, scope: _Scope, batch: list[Job]) -> None:
        try:
            live: list[Job] = []
            for job in batch:
                if job.claim is None or await job.claim():
                    job.claim = None  # claimed once: a retry must not claim again
                    live.append(job)
                elif job.on_result is not None:
                    await job.on_result(job, Delivered(Outcome.SKIPPED))
            result = await self._call(live) if live else Delivered(Outcome.SENT)
            now = self._now()
            if result.outcome is Outcome.FLOOD:
                # Only this chat waits; the jobs go back without using an attempt.
                self.stats.floods += 1
                scope.paused_until = max(scope.paused_until, now + max(result.retry_after, 0.5))
                self._requeue(scope, live)
                log.info("flood wait %.1f s for chat %s", result.retry_after, scope.key)
                return
            if result.outcome is Outcome.RETRY and live and live[0].attempts + 1 < self.max_attempts:
                self.stats.retries += 1
                for job in live:
                    job.attempts += 1
                    job.not_before = now + min(2.0 ** job.attempts, 60.0)
                self._requeue(scope, live)
                log.info("retrying chat %s after: %s", scope.key, result.error)
                return
            for job in live:
                if job.live_key is not None:
                    scope.live_sent[job.live_key] = now
            if len(live) > 1:
                self.stats.coalesced += len(live) - 1
            await self._finish(live, result)
        finally:
            # Count the message from when its call returned (it arrived by then, however long the way was):
            # measured from when it was made, latency jitter could bunch arrivals past Telegram's limits.
            returned = self._now()
            self._flying -= 1
            self._overall.append(returned)
            if scope.sent_at:
                scope.sent_at[-1] = max(scope.sent_at[-1], returned)
            scope.busy = False
            self._slots.release()
            self._schedule(scope)

    def _requeue(self, scope: _Scope, jobs: list[Job]) -> None:
        for job in jobs:
            if job.live_key is not None and any(q.live_key == job.live_key for q in scope.jobs):
                continue  # a newer version is already queued
            scope.jobs.append(job)

    async def _call(self, jobs: list[Job]) -> Delivered:
        try:
            return await self.transport.deliver(jobs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a transport bug must not stop the sender
            log.exception("delivering to %s failed", jobs[0].scope)
            return Delivered(Outcome.UNCERTAIN, f"{type(exc).__name__}: {exc}")

    async def _finish(self, jobs: list[Job], result: Delivered) -> None:
        if result.outcome is Outcome.SENT:
            self.stats.sent += 1
        elif result.outcome is not Outcome.SENT:
            self.stats.failed += 1
            log.warning("message to %s %s: %s", jobs[0].scope if jobs else "?", result.outcome.value, result.error)
        for job in jobs:
            if job.on_result is not None:
                try:
                    await job.on_result(job, result)
                except Exception:
                    log.exception("settling a job for %s failed", job.scope)
