"""The outbox on a driven clock: backoff, 429 pauses, pacing and per-chat gaps without real waits; the chats it
paces are forgotten once their gap has ended."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot.app.runtime import Runtime
from bot.delivery.outbox import Outbox, Outcome, PushResult, Timer
from handlers.shared.broadcast import publish
from tests.conftest import RecordingPusher


class JumpingTimer(Timer):
    """Time that jumps ahead instead of passing: a sleep moves it at once, a wait that would time out after
    a moment of real time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def wall(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)  # what is ready runs first, at the time before the sleep
        self.offset += max(seconds, 0.0)

    async def wait(self, event: asyncio.Event, timeout: float | None) -> None:
        if timeout is None:
            await event.wait()
            return
        # A moment of real time first, for the sends in flight to settle (they set the event).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), min(timeout, 0.05))
        if not event.is_set():
            self.offset += timeout


@dataclass
class TimedPusher(RecordingPusher):
    """Records when (on the outbox's timer) each push arrived; `gap` is every chat's own interval."""

    timer: Timer = field(default_factory=Timer)
    gap: float = 0.0
    times: list[tuple[str, float]] = field(default_factory=list)

    def chat_interval(self, target_kind: str, target: str) -> float:
        return self.gap

    async def push(self, target_kind: str, target: str, text: str, buttons: Any, **extra: Any) -> Any:
        self.times.append((target, self.timer.monotonic()))
        return await super().push(target_kind, target, text, buttons, **extra)

    def at(self, target: str) -> list[float]:
        return [at for t, at in self.times if t == target]


@dataclass
class Driven:
    runtime: Runtime
    timer: JumpingTimer
    outbox: Outbox
    pusher: TimedPusher

    async def broadcast(self, names: list[str]) -> int:
        """Register `names` and announce to every member (those registered before too); the announcement id."""
        async with self.runtime.deps.db.transaction() as repos:
            for name in names:
                await repos.members.register("test", name, name, None, 0, private_chat=True)
            ann_id, count = await publish(repos, self.runtime.deps, "now", "all", "hello")
        assert count >= len(names)
        self.outbox.wake()
        return ann_id

    async def drained(self, ann_id: int, timeout: float = 5.0) -> bool:
        """Wait (real time) until no row of the announcement is pending or being sent. Unlike `Outbox.idle`
        it does not wake the outbox, so the outbox's waits time out and its timer jumps."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not {"pending", "sending"} & set(await self.counts(ann_id)):
                return True
            await asyncio.sleep(0.01)
        return False

    async def counts(self, ann_id: int) -> dict[str, int]:
        async with self.runtime.deps.db.read() as repos:
            return await repos.deliveries.counts(ann_id)


@pytest.fixture
async def driven(runtime: Runtime) -> AsyncIterator[Driven]:
    """An outbox of its own on a jumping timer (the runtime's outbox stays stopped: it only names the channels)."""
    timer = JumpingTimer()
    outbox = Outbox(runtime.deps.db, runtime.settings.delivery, timer=timer)
    pusher = TimedPusher(timer=timer)
    outbox.register(pusher)
    runtime.outbox.register(pusher)  # the channels a broadcast is queued for
    await outbox.start()
    yield Driven(runtime, timer, outbox, pusher)
    await outbox.stop()


async def test_backoff_waits_on_the_timer_not_in_real_time(driven: Driven) -> None:
    assert driven.runtime.settings.delivery.retry_base_seconds == 2.0  # 2 s, then 4 s of backoff
    driven.pusher.script["flaky"] = [PushResult(Outcome.RETRY, "network: reset")] * 2
    started = time.monotonic()
    ann = await driven.broadcast(["flaky"])
    assert await driven.drained(ann)
    assert await driven.counts(ann) == {"sent": 1}
    elapsed = time.monotonic() - started
    assert elapsed < 3  # the 6 s of backoff were not waited for
    assert driven.timer.offset + elapsed >= 6  # but kept, on the timer's clock (which real time moves too)


async def test_a_429_pauses_the_channel_on_the_timer(driven: Driven) -> None:
    driven.pusher.script["m1"] = [PushResult(Outcome.FLOOD, "429", retry_after=30)]
    started = time.monotonic()
    ann = await driven.broadcast(["m0", "m1", "m2"])
    assert await driven.drained(ann)
    assert await driven.counts(ann) == {"sent": 3}
    assert time.monotonic() - started < 3
    refused, sent = driven.pusher.at("m1")
    assert sent - refused >= 30  # the pause was kept, on the timer's clock


async def test_pacing_spaces_sends_on_the_timer(driven: Driven) -> None:
    driven.pusher.per_second = 4
    driven.outbox.register(driven.pusher)  # a new pacer at 4 a second
    started = time.monotonic()
    ann = await driven.broadcast([f"m{i}" for i in range(12)])
    assert await driven.drained(ann)
    times = sorted(at for _, at in driven.pusher.times)
    assert len(times) == 12
    assert all(b - a >= 0.25 for a, b in itertools.pairwise(times))  # under 4 a second
    assert time.monotonic() - started < 1.5  # the 2.9 s of pacing were not waited for


async def test_a_chat_keeps_its_gap_while_others_are_sent_to(driven: Driven) -> None:
    driven.pusher.gap = 3.0
    ann = await driven.broadcast(["a"])
    assert await driven.drained(ann)
    ann = await driven.broadcast(["b", "c", "d"])  # "a" is in this broadcast too
    assert await driven.drained(ann)
    first, second = driven.pusher.at("a")
    assert second - first >= 3.0
    assert len(driven.pusher.at("b")) == 1


async def test_the_outbox_forgets_chats_whose_gap_has_ended(driven: Driven) -> None:
    driven.pusher.gap = 3.0
    ann = await driven.broadcast([f"m{i}" for i in range(40)])
    assert await driven.drained(ann)
    assert len(driven.pusher.pushes) == 40
    driven.timer.offset += 10  # every gap has ended
    async with driven.runtime.deps.db.transaction() as repos:
        late, _ = await repos.members.register("test", "late", "late", None, 0, private_chat=True)
        await repos.deliveries.queue_personal(ann, late, "just you", ["test"])
    driven.outbox.wake()
    assert await driven.drained(ann)
    assert driven.pusher.to("late") == ["just you"]
    assert driven.outbox.paced_chats() == 1  # the late one's gap, not the 40 of the broadcast
