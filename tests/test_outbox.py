"""The outbox: retries, permanent failures, backoff, crash recovery; every recipient once."""

from __future__ import annotations

import time

from bot.app.runtime import Runtime
from bot.delivery.outbox import Outcome, PushResult
from handlers.shared.broadcast import publish
from tests.conftest import RecordingPusher, settle


async def broadcast_to(runtime: Runtime, names: list[str], text: str = "hello") -> int:
    async with runtime.deps.db.transaction() as repos:
        for name in names:
            await repos.members.register("test", name, name, None, 0, private_chat=True)
        ann_id, count = await publish(repos, runtime.deps, "now", "all", text)
    assert count == len(names)
    runtime.outbox.wake()
    return ann_id


async def counts(runtime: Runtime, ann_id: int) -> dict[str, int]:
    async with runtime.deps.db.read() as repos:
        return await repos.deliveries.counts(ann_id)


async def test_retry_after_pauses_and_delivers_once(runtime: Runtime, pusher: RecordingPusher) -> None:
    pusher.script["m1"] = [PushResult(Outcome.RETRY, "429", retry_after=0.2)]
    started = time.monotonic()
    ann = await broadcast_to(runtime, ["m0", "m1", "m2"])
    await settle(runtime)
    assert time.monotonic() - started >= 0.2  # the retry waited as told
    assert sorted(t for _, t, _ in pusher.pushes) == ["m0", "m1", "m2"]
    assert await counts(runtime, ann) == {"sent": 3}


async def test_permanent_failures_do_not_stop_the_broadcast(runtime: Runtime, pusher: RecordingPusher) -> None:
    pusher.script["m3"] = [PushResult(Outcome.FAILED, "forbidden: bot was blocked by the user")]
    ann = await broadcast_to(runtime, [f"m{i}" for i in range(6)])
    await settle(runtime)
    assert len(pusher.pushes) == 5
    assert await counts(runtime, ann) == {"sent": 5, "failed": 1}
    async with runtime.deps.db.read() as repos:
        assert await repos.deliveries.failures(ann) == [("m3", "forbidden: bot was blocked by the user")]


async def test_network_errors_back_off_then_give_up(runtime: Runtime, pusher: RecordingPusher) -> None:
    runtime.outbox.settings.retry_base_seconds = 0.01
    pusher.script["flaky"] = [PushResult(Outcome.RETRY, "network: reset")] * 2
    pusher.script["dead"] = [PushResult(Outcome.RETRY, "network: down")] * 10
    ann = await broadcast_to(runtime, ["flaky", "dead"])
    for _ in range(50):
        await settle(runtime)
        if (await counts(runtime, ann)).get("pending", 0) == 0:
            break
    assert await counts(runtime, ann) == {"sent": 1, "failed": 1}
    async with runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT target, attempts FROM deliveries ORDER BY target")
    assert [tuple(r) for r in rows] == [("dead", 5), ("flaky", 3)]


async def test_uncertain_sends_are_never_repeated(runtime: Runtime, pusher: RecordingPusher) -> None:
    pusher.script["m1"] = [PushResult(Outcome.UNCERTAIN, "timed out")]
    ann = await broadcast_to(runtime, ["m0", "m1"])
    await settle(runtime)
    assert await counts(runtime, ann) == {"sent": 1, "uncertain": 1}


async def test_rows_interrupted_mid_send_become_uncertain_at_start(runtime: Runtime) -> None:
    recorder = RecordingPusher()
    runtime.outbox.register(recorder)
    ann = await broadcast_to(runtime, ["m0", "m1", "m2"])
    async with runtime.deps.db.transaction() as repos:
        assert await repos.deliveries.claim(1)  # a crash left this one in 'sending'
    await runtime.outbox.start()
    await settle(runtime)
    assert sorted(t for _, t, _ in recorder.pushes) == ["m1", "m2"]
    assert await counts(runtime, ann) == {"sent": 2, "uncertain": 1}


async def test_a_crashing_pusher_does_not_stop_the_outbox(runtime: Runtime, pusher: RecordingPusher) -> None:
    original = pusher.push

    async def push(kind: str, target: str, text: str, buttons: object, **extra: object) -> PushResult:
        if target == "m0":
            raise RuntimeError("pusher bug")
        return await original(kind, target, text, buttons, **extra)

    pusher.push = push  # type: ignore[method-assign]
    ann = await broadcast_to(runtime, ["m0", "m1"])
    await settle(runtime)
    assert await counts(runtime, ann) == {"sent": 1, "uncertain": 1}
    # The outbox is still running: the next broadcast goes out, and the crashed row is never tried again.
    pusher.push = original  # type: ignore[method-assign]
    async with runtime.deps.db.transaction() as repos:
        later, count = await publish(repos, runtime.deps, "now", "all", "later")
    assert count == 2
    runtime.outbox.wake()
    await settle(runtime)
    assert await counts(runtime, later) == {"sent": 2}
    assert sorted((t, text) for _, t, text in pusher.pushes) == [("m0", "later"), ("m1", "hello"), ("m1", "later")]
