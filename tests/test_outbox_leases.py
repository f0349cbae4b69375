"""The outbox with several processes: a row is claimed with a lease by one process, settled only by it, and
recovered (uncertain) only once its lease ran out; two outboxes draining one PostgreSQL database at once (a
leader change) send every row once."""

from __future__ import annotations

import asyncio

from bot.app.config import DeliverySettings, Settings
from bot.app.runtime import Runtime
from bot.delivery.outbox import LEASE_SECONDS, Outbox
from handlers.shared.broadcast import publish
from storage.db.postgres import PostgresDatabase
from tests.conftest import RecordingPusher
from tests.pg import pg_template, pg_url  # noqa: F401 - fixtures
from tests.test_outbox import broadcast_to, counts


async def states(runtime: Runtime) -> list[tuple[str, str, str | None]]:
    async with runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT target, state, claimed_by FROM deliveries ORDER BY target")
    return [(r[0], r[1], r[2]) for r in rows]


async def test_only_the_claimant_settles_a_row(runtime: Runtime) -> None:
    runtime.outbox.register(RecordingPusher())
    await broadcast_to(runtime, ["m0"])
    async with runtime.deps.db.transaction() as repos:
        assert await repos.deliveries.claim(1, "vipbot 1@a", 2e9)
        assert not await repos.deliveries.claim(1, "vipbot 2@b", 2e9)  # taken
        await repos.deliveries.mark_sent(1, 100, "m-1", claimant="vipbot 2@b")  # not its row: nothing changes
        await repos.deliveries.mark_failed(1, "refused", claimant="vipbot 2@b")
    assert await states(runtime) == [("m0", "sending", "vipbot 1@a")]
    async with runtime.deps.db.transaction() as repos:
        await repos.deliveries.mark_sent(1, 100, "m-1", claimant="vipbot 1@a")
    assert await states(runtime) == [("m0", "sent", "vipbot 1@a")]


async def test_a_row_is_recovered_only_once_its_lease_ran_out(runtime: Runtime) -> None:
    runtime.outbox.register(RecordingPusher())
    await broadcast_to(runtime, ["m0", "m1"])
    async with runtime.deps.db.transaction() as repos:
        assert await repos.deliveries.claim(1, "vipbot 1@a", 1000.0)  # its lease ends at 1000
        assert await repos.deliveries.claim(2, "vipbot 1@a", 2000.0)
        assert await repos.deliveries.recover_inflight(999.0) == 0  # both still held
        assert await repos.deliveries.recover_inflight(1500.0) == 1  # the first one's ran out
    assert [s for _, s, _ in await states(runtime)] == ["uncertain", "sending"]
    async with runtime.deps.db.transaction() as repos:  # the late claimant cannot settle it any more
        await repos.deliveries.mark_sent(1, 100, "m-1", claimant="vipbot 1@a")
        assert await repos.deliveries.recover_inflight() == 1  # a sole process at its start: all of them
    assert [s for _, s, _ in await states(runtime)] == ["uncertain", "uncertain"]


async def test_a_shared_outbox_leaves_a_live_claim_alone_at_start(runtime: Runtime) -> None:
    """A new leader starting while the old one still sends: the old one's row is not made uncertain."""
    recorder = RecordingPusher()
    outbox = Outbox(runtime.deps.db, runtime.settings.delivery, claimant="vipbot 2@b", shared=True)
    outbox.register(recorder)
    runtime.outbox.register(recorder)
    ann = await broadcast_to(runtime, ["m0", "m1"])
    wall = outbox.timer.wall()
    async with runtime.deps.db.transaction() as repos:
        assert await repos.deliveries.claim(1, "vipbot 1@a", wall + LEASE_SECONDS)
    await outbox.start()
    try:
        assert await outbox.idle(timeout=10)
        assert [t for _, t, _ in recorder.pushes] == ["m1"]  # the claimed row is not sent again
        assert await counts(runtime, ann) == {"sending": 1, "sent": 1}
        async with runtime.deps.db.transaction() as repos:  # the old leader finishes it
            await repos.deliveries.mark_sent(1, 100, "m-1", claimant="vipbot 1@a")
        assert await counts(runtime, ann) == {"sent": 2}
    finally:
        await outbox.stop()


async def test_two_outboxes_on_one_postgresql_database_send_each_row_once(pg_url: str) -> None:  # noqa: F811
    """Two processes draining at once (a leader change): every recipient gets the message once."""
    runtime = await Runtime.open(Settings(locale="en", storage={"url": pg_url}))  # the first process
    other = await PostgresDatabase.open(pg_url, readers=2, writers=4)  # the second one's own connections
    recorders = [RecordingPusher(), RecordingPusher()]
    outboxes = [Outbox(db, DeliverySettings(), claimant=f"vipbot {n}@shop", shared=True)
                for n, db in enumerate((runtime.deps.db, other))]  # fmt: skip
    for outbox, recorder in zip(outboxes, recorders, strict=True):
        outbox.register(recorder)
    runtime.outbox.register(recorders[0])  # the channels a broadcast is queued for
    names = [f"m{i:03d}" for i in range(150)]
    try:
        async with runtime.deps.db.transaction() as repos:
            for name in names:
                await repos.members.register("test", name, name, None, 0, private_chat=True)
            ann, count = await publish(repos, runtime.deps, "now", "all", "sale at nine")
        assert count == len(names)
        await asyncio.gather(*(outbox.start() for outbox in outboxes))
        assert all(await asyncio.gather(*(outbox.idle(timeout=20) for outbox in outboxes)))
        sent = [t for recorder in recorders for _, t, _ in recorder.pushes]
        assert sorted(sent) == names  # each once, over both
        assert all(recorder.pushes for recorder in recorders), "both drained (the race was run)"
        async with runtime.deps.db.read() as repos:
            assert await repos.deliveries.counts(ann) == {"sent": len(names)}
            rows = await repos.conn.execute_fetchall("SELECT DISTINCT claimed_by FROM deliveries")
        assert {r[0] for r in rows} == {"vipbot 0@shop", "vipbot 1@shop"}
    finally:
        for outbox in outboxes:
            await outbox.stop()
        await other.close()
        await runtime.close()
