"""The outbox: drains the delivery table through each channel's pusher under its rate limits.

A row is claimed (pending → sending) in the database right before its message is handed to the platform
and settled right after, so a restart never sends a row twice: rows found in 'sending' at start-up become
'uncertain'. A 429 pauses the channel for `retry_after` and puts the row back; connection errors retry
with backoff; a permanent refusal (blocked, chat gone) is recorded and the broadcast goes on.

Every wait of the outbox (pacing, backoff, a row due later) goes through its `Timer`, so a test can drive
time instead of sleeping for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.app.config import DeliverySettings
from bot.delivery.sender import Outcome, stop_tasks
from handlers.core.messages import Button
from storage.db.database import Database
from storage.deliveries import Delivery

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    error: str = ""
    retry_after: float | None = None
    """For RETRY: seconds the platform asked to wait (429), or None for the outbox's own backoff."""
    message_id: str | None = None
    """For SENT: the platform's id of the message, so that a live post can be edited later."""
    native_poll_id: str | None = None
    """For SENT of a native poll: the platform's id of the poll, to match its answers."""


SENT = PushResult(Outcome.SENT)


@dataclass(frozen=True, slots=True)
class NativePoll:
    """A poll to send as the platform's own poll (non-anonymous, so answers count per member)."""

    poll_id: int
    question: str
    options: tuple[str, ...]
    multi: bool


class Pusher(Protocol):
    """One channel's way of delivering a push."""

    channel: str
    per_second: float
    """Messages per second this channel allows overall."""

    @property
    def has_staff_chat(self) -> bool: ...

    def chat_interval(self, target_kind: str, target: str) -> float:
        """Seconds to keep between two messages into this chat (e.g. 3 s for a Telegram group)."""
        ...

    async def push(self, target_kind: str, target: str, text: str, buttons: Sequence[Button], *,
                   image: bytes | None = None, poll: NativePoll | None = None) -> PushResult:  # fmt: skip
        """Send one message; with `image` a picture captioned `text`; with `poll` the platform's own poll
        where it has one (else `text`, which explains how to answer)."""
        ...

    async def edit(self, chat_id: str, message_id: str, text: str, buttons: Sequence[Button]) -> bool:
        """Replace the text of a message the bot posted; False when it could not."""
        ...

    async def delete(self, chat_id: str, message_id: str) -> bool:
        """Delete a message the bot posted (a recalled announcement); False when the platform cannot (WeChat
        has no such call) or refused (e.g. Telegram after 48 hours)."""
        ...


@dataclass(frozen=True, slots=True)
class Push:
    """One message the outbox hands a channel: to whom (`target_kind` chat, user or staff, and `target`), what
    (text, buttons, a picture, a native poll) and, for a pusher that claims its rows itself, the row's claim."""

    target_kind: str
    target: str
    text: str
    buttons: tuple[Button, ...]
    image: bytes | None = None
    poll: NativePoll | None = None
    claim: Callable[[], Awaitable[bool]] | None = None


class ChannelPusher(ABC):
    """What every channel's pusher shares: the outbox's `push` arrives in `deliver` as one `Push`, and no
    pause of its own between two messages into one chat (a channel that needs one says so)."""

    def chat_interval(self, target_kind: str, target: str) -> float:
        return 0.0

    async def push(self, target_kind: str, target: str, text: str, buttons: Sequence[Button], *,
                   image: bytes | None = None, poll: NativePoll | None = None,
                   claim: Callable[[], Awaitable[bool]] | None = None) -> PushResult:  # fmt: skip
        return await self.deliver(Push(target_kind, target, text, tuple(buttons), image, poll, claim))

    @abstractmethod
    async def deliver(self, push: Push) -> PushResult:
        """Send `push` on this channel."""

    async def delete(self, chat_id: str, message_id: str) -> bool:
        """A channel that cannot delete a message it sent says so."""
        return False


class Timer:
    """The outbox's time: a monotonic clock for pacing, wall time for the rows' `next_attempt_at`, and the
    waits. This one is real; tests pass one that jumps ahead instead of sleeping."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        """Until `event` is set, or `timeout` seconds passed (None: no limit)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


class Pacer:
    """Hands out send slots evenly spaced (no bursts), a little under `rate` per second, and adapts.

    Sending at exactly the limit trips a sliding-window limiter on a millisecond of jitter, and every 429
    then costs a whole `retry_after`. So the pacer starts at `SAFETY` of the rate, slows by 5% after a 429
    and creeps back (0.05% per message sent) towards that start."""

    SAFETY = 0.95

    def __init__(self, rate: float, timer: Timer | None = None) -> None:
        self.timer = timer or Timer()
        self.base_interval = 1.0 / (rate * self.SAFETY)
        self.interval = self.base_interval
        self._next = 0.0
        self._handed = -1e18
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = self.timer.monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
            if slot > now:
                await self.timer.sleep(slot - now)

    async def space(self) -> None:
        """Right before a message is handed over (after `wait` and the row's claim): keep at least the interval
        since the last hand-over, whatever the claim in between took (a slow claim followed by a fast one would
        otherwise bring two messages closer than the interval)."""
        now = self.timer.monotonic()
        gap = self._handed + self.interval - now
        if gap > 0:
            await self.timer.sleep(gap)
            now = self.timer.monotonic()
        self._handed = now

    def pause(self, seconds: float) -> None:
        """The platform said 429: wait as told, and go a little slower from now on."""
        self._next = max(self._next, self.timer.monotonic() + seconds)
        self.interval = min(self.interval * 1.05, self.base_interval * 2)

    def sent(self) -> None:
        self.interval = max(self.base_interval, self.interval * 0.9995)


LEASE_SECONDS = 120.0
"""How long a claim on a row being sent holds: longer than any one hand-over to a platform takes (their HTTP
timeouts are far shorter). A row its claimant left 'sending' is recovered (uncertain) only after that."""
SHARED_SWEEP_SECONDS = 2.0
"""On a database several processes share: how often the drain looks for rows at the latest (other processes'
rows arrive with a NOTIFY; this catches one that was lost) and recovers rows whose lease ran out."""


class Outbox:
    def __init__(self, db: Database, settings: DeliverySettings, timer: Timer | None = None, *,
                 claimant: str = "", shared: bool = False,
                 notify: Callable[[], None] | None = None) -> None:  # fmt: skip
        """`claimant` names this process on the rows it claims; `shared`: other processes use the database too
        (PostgreSQL), so rows left 'sending' are recovered only once their lease ran out, and `notify` (called once
        rows were queued and committed) tells the process that drains."""
        self.db = db
        self.settings = settings
        self.timer = timer or Timer()
        self.claimant = claimant
        self.shared = shared
        self._notify = notify
        self._dispatching = 0
        """Rows between their fetch and their task: `idle()` is not true while one is being claimed."""
        self._pushers: dict[str, Pusher] = {}
        self._pacers: dict[str, Pacer] = {}
        self._chat_next: dict[tuple[str, str, str], float] = {}
        """Chats whose own gap is still running → when it ends, oldest first; forgotten once it ended."""
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._ended = 0  # tasks of `_inflight` that have finished, ever (`idle`)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._post_texts: dict[int, str] = {}
        """Last text each live group post (by delivery id) was edited to."""
        self._stopping = False
        self._claiming: set[int] = set()
        """Rows handed to a pusher that claims them itself and not settled yet (not to be fetched again)."""
        self.settled: Counter[tuple[str, str]] = Counter()
        """(channel, outcome: sent, failed, uncertain, retried) -> pushes settled so (for /metrics)."""

    # --- the Outbox port of handlers ---------------------------------------------------------------
    def channels(self) -> frozenset[str]:
        return frozenset(self._pushers)

    def staff_channels(self) -> frozenset[str]:
        return frozenset(name for name, pusher in self._pushers.items() if pusher.has_staff_chat)

    def wake(self) -> None:
        """New rows were queued: look for them once they are committed (and tell the process that drains, when it
        may be another one)."""
        self.db.on_commit(self._woken)

    def _woken(self) -> None:
        self._wakeup.set()
        if self._notify is not None and self._task is None:
            self._notify()

    def poke(self) -> None:
        """Another process queued rows (a NOTIFY): look for them now."""
        self._wakeup.set()

    async def edit_posts(self, posts: Sequence[tuple[list[int], str, tuple[tuple[str, str], ...]]]) -> int:
        """Bring live group posts up to date: for each (announcement ids, text, buttons), edit every sent
        group message whose text changed since the last edit. Returns the number of edits made."""
        edits = 0
        for announcement_ids, text, buttons in posts:
            async with self.db.read() as repos:
                sent = await repos.deliveries.sent_posts(announcement_ids)
            for delivery_id, channel, chat_id, message_id in sent:
                pusher = self._pushers.get(channel)
                if pusher is None or self._post_texts.get(delivery_id) == text:
                    continue
                ok = await pusher.edit(chat_id, message_id, text, [Button(label, data) for label, data in buttons])
                if ok:
                    self._post_texts[delivery_id] = text
                    edits += 1
        return edits

    def delete_posts(self, posts: Sequence[tuple[int, str, str, str]], now: int) -> int:
        """Delete sent group posts, each (delivery id, channel, chat id, message id), once the running
        transaction has committed (a call to the platform never holds the database); returns how many are to
        be deleted. `idle()` waits for them."""
        chosen = list(posts)
        if chosen:
            self.db.on_commit(lambda: self._track(asyncio.get_running_loop().create_task(self._delete(chosen, now))))
        return len(chosen)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._inflight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._ended += 1

    async def _delete(self, posts: Sequence[tuple[int, str, str, str]], now: int) -> None:
        """Delete each post through its channel's pusher, recording those deleted. A channel without deletion
        (WeChat), a refusal or an error leaves the post; the others go on."""
        deleted = 0
        for delivery_id, channel, chat_id, message_id in posts:
            pusher = self._pushers.get(channel)
            delete = getattr(pusher, "delete", None)  # a test pusher may have none
            try:
                if delete is None or not await delete(chat_id, message_id):
                    continue
            except Exception:
                log.exception("recall: deleting message %s in %s failed", message_id, chat_id)
                continue
            deleted += 1
            self._post_texts.pop(delivery_id, None)
            async with self.db.transaction() as repos:
                await repos.deliveries.mark_deleted(delivery_id, now)
        if deleted < len(posts):
            log.info("recall: %d of %d group posts could not be deleted", len(posts) - deleted, len(posts))

    # --- lifecycle ---------------------------------------------------------------------------------
    def register(self, pusher: Pusher) -> None:
        self._pushers[pusher.channel] = pusher
        self._pacers[pusher.channel] = Pacer(pusher.per_second, self.timer)

    async def start(self) -> None:
        """Recover what the last drain left mid-send, then drain."""
        await self.recover()
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def recover(self) -> int:
        """Rows left 'sending' by a process that stopped become uncertain: all of them when this is the only
        process on the database, else only those whose lease ran out. Returns how many."""
        lease_ended_by = self.timer.wall() if self.shared else None
        async with self.db.transaction() as repos:
            interrupted = await repos.deliveries.recover_inflight(lease_ended_by)
        if interrupted:
            log.warning("%d deliveries were interrupted mid-send by the last stop; marked uncertain", interrupted)
        return interrupted

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop taking new rows and let the messages already handed over finish (bounded)."""
        self._stopping = True
        self._wakeup.set()
        # A row cancelled mid-send is found 'sending' at the next start: uncertain.
        await stop_tasks(self._task, self._inflight, timeout)
        self._task = None

    def paced_chats(self) -> int:
        """How many chats the outbox remembers a gap for (only those whose gap may still be running)."""
        return len(self._chat_next)

    async def idle(self, timeout: float = 5.0) -> bool:
        """Wait until no row is pending (retries included) and nothing is in flight; False on timeout.
        `timeout` is real time, whatever the outbox's timer."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # Nothing in flight before the read too, and no task ended during it: on PostgreSQL the read's
            # snapshot can predate a send that has since put its row back for a retry (a 429) and finished.
            busy, ended = bool(self._inflight) or bool(self._dispatching), self._ended
            async with self.db.read() as repos:
                pending = await repos.deliveries.next_attempt_at(sorted(self._pushers))
            if pending is None and not busy and not self._inflight and not self._dispatching and self._ended == ended:
                return True
            self.wake()
            await asyncio.sleep(0.01)
        return False

    # --- the loop ----------------------------------------------------------------------------------
    async def _run(self) -> None:
        swept = self.timer.monotonic()
        while not self._stopping:
            try:
                if self.shared and self.timer.monotonic() - swept >= LEASE_SECONDS / 4:
                    swept = self.timer.monotonic()
                    await self.recover()
                await self._drain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox loop failed; retrying in a second")
                await self.timer.sleep(1)

    async def _drain_once(self) -> None:
        channels = sorted(self._pushers)
        self._wakeup.clear()
        async with self.db.read() as repos:
            batch = await repos.deliveries.due(channels, self.timer.wall(), self.settings.concurrency * 4)
            next_at = None if batch else await repos.deliveries.next_attempt_at(channels)
        if not batch:
            timeout = None if next_at is None else max(next_at - self.timer.wall(), 0.0) + 0.01
            if self.shared:
                timeout = min(timeout or SHARED_SWEEP_SECONDS, SHARED_SWEEP_SECONDS)
            await self.timer.wait(self._wakeup, timeout)
            return
        fresh = [d for d in batch if d.id not in self._claiming]
        if not fresh:  # everything due is already with a pusher: wait until one settles
            await self.timer.wait(self._wakeup, 1.0)
            return
        for delivery in fresh:
            if self._stopping:
                return
            self._dispatching += 1
            try:
                await self._dispatch(delivery)
            finally:
                self._dispatching -= 1

    async def _dispatch(self, delivery: Delivery) -> None:
        pusher = self._pushers[delivery.channel]
        chat_key = (delivery.channel, delivery.target_kind, delivery.target)
        interval = pusher.chat_interval(delivery.target_kind, delivery.target)
        now = self.timer.monotonic()
        if interval and self._chat_next.get(chat_key, 0.0) > now:
            # This chat's own limit (e.g. 20/minute into a group): come back to it later.
            wait = self._chat_next[chat_key] - now
            async with self.db.transaction() as repos:
                await repos.deliveries.postpone(delivery.id, self.timer.wall() + wait)
            return
        await self._pacers[delivery.channel].wait()
        await self._slots.acquire()
        if not getattr(pusher, "claims_itself", False):
            try:
                claimed = await self._claim(delivery.id)
            except BaseException:
                self._slots.release()
                raise
            if not claimed:
                self._slots.release()
                return
            await self._pacers[delivery.channel].space()
        else:
            self._claiming.add(delivery.id)
        if interval:
            self._pace_chat(chat_key, interval)
        self._track(asyncio.create_task(self._send(pusher, delivery)))

    def _pace_chat(self, chat_key: tuple[str, str, str], interval: float) -> None:
        """Remember when this chat's gap ends, and forget the chats whose gap has ended: the map holds the
        chats sent to within the last gap, not every recipient of every broadcast."""
        now = self.timer.monotonic()
        self._chat_next.pop(chat_key, None)  # re-inserted at the end: the map stays in the order gaps began
        self._chat_next[chat_key] = now + interval
        while self._chat_next:
            oldest = next(iter(self._chat_next))
            if self._chat_next[oldest] > now:
                break
            del self._chat_next[oldest]

    async def _claim(self, delivery_id: int) -> bool:
        lease_until = self.timer.wall() + LEASE_SECONDS
        async with self.db.transaction() as repos:
            return await repos.deliveries.claim(delivery_id, self.claimant, lease_until)

    async def _send(self, pusher: Pusher, delivery: Delivery) -> None:
        extra: dict[str, object] = {}
        if getattr(pusher, "claims_itself", False):
            extra["claim"] = lambda: self._claim(delivery.id)
        try:
            buttons = [Button(label, data) for label, data in _buttons(delivery.buttons_json)]
            try:
                text = delivery.body if delivery.body is not None else delivery.text
                native = await self._native_poll(delivery)
                result = await pusher.push(
                    delivery.target_kind, delivery.target, text, buttons, image=delivery.image, poll=native, **extra
                )
            except Exception as exc:  # a pusher bug must not stop the broadcast
                log.exception("pusher %s failed on delivery %s", pusher.channel, delivery.id)
                result = PushResult(Outcome.UNCERTAIN, f"{type(exc).__name__}: {exc}")
            await self._settle(pusher, delivery, result)
        finally:
            self._claiming.discard(delivery.id)
            self._slots.release()
            self._wakeup.set()

    async def _native_poll(self, delivery: Delivery) -> NativePoll | None:
        if delivery.kind != "poll_native" or delivery.poll_id is None:
            return None
        async with self.db.read() as repos:
            poll = await repos.polls.get(delivery.poll_id)
        if poll is None:
            return None
        return NativePoll(poll.id, poll.question, poll.options, poll.multi)

    async def _settle(self, pusher: Pusher, delivery: Delivery, result: PushResult) -> None:
        if result.outcome is Outcome.SKIPPED:
            return
        attempts = delivery.attempts + 1
        async with self.db.transaction() as repos:
            if result.outcome is Outcome.SENT:
                self._pacers[pusher.channel].sent()
                await repos.deliveries.mark_sent(delivery.id, int(self.timer.wall()), result.message_id, self.claimant)
                if result.native_poll_id is not None and delivery.poll_id is not None:
                    await repos.polls.map_native(pusher.channel, result.native_poll_id, delivery.poll_id)
                settled = "sent"
            elif result.outcome in (Outcome.RETRY, Outcome.FLOOD) and attempts < self.settings.max_attempts:
                if result.retry_after is not None:
                    self._pacers[pusher.channel].pause(result.retry_after)
                    delay = result.retry_after
                else:
                    delay = min(self.settings.retry_base_seconds * 2.0 ** (attempts - 1), 300.0)
                await repos.deliveries.retry_at(delivery.id, self.timer.wall() + delay, result.error, self.claimant)
                settled = "retried"
            elif result.outcome is Outcome.UNCERTAIN:
                await repos.deliveries.mark_uncertain(delivery.id, result.error, self.claimant)
                settled = "uncertain"
            else:
                await repos.deliveries.mark_failed(delivery.id, result.error or "gave up after retries", self.claimant)
                settled = "failed"
        self.settled[(pusher.channel, settled)] += 1
        if result.outcome in (Outcome.RETRY, Outcome.FLOOD):
            self.wake()
        elif result.outcome is not Outcome.SENT:
            log.warning("delivery %s to %s %s: %s (%s)", delivery.id, delivery.channel, delivery.target,
                        result.outcome.value, result.error)  # fmt: skip


def _buttons(raw: str) -> list[tuple[str, str]]:
    return [(str(label), str(data)) for label, data in json.loads(raw or "[]")]
