"""Leadership among processes on one PostgreSQL database (bot.app.leader): exactly one leads, another takes over
when it goes, a leader that loses its connection stops, NOTIFY wake-ups reach the leader, and the outbox's leases.

Skipped when PostgreSQL cannot be reached (see tests/pg.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from bot.app.config import Settings
from bot.app.leader import PostgresLeadership, SoleLeadership
from tests.conftest import RecordingPusher
from tests.pg import pg_template, pg_url  # noqa: F401 - fixtures

FAST = 0.05
"""The interval the leaderships under test try for the lead at (the default is 1 s)."""


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


class Recorder:
    def __init__(self) -> None:
        self.led = 0
        self.lost = 0

    async def lead(self) -> None:
        self.led += 1

    def lose(self) -> None:
        self.lost += 1


async def test_the_only_process_of_a_sqlite_file_leads_from_the_start() -> None:
    sole = SoleLeadership("vipbot 1@shop")
    assert sole.leading and not sole.shared
    seen = Recorder()
    await sole.start(seen.lead, seen.lose)
    assert seen.led == 1 and await sole.holder() == "vipbot 1@shop"


async def test_exactly_one_of_three_leads_and_the_others_name_it(pg_url: str) -> None:  # noqa: F811
    processes = [PostgresLeadership(pg_url, name=f"vipbot {n}@shop", check_seconds=FAST) for n in range(3)]
    seen = [Recorder() for _ in processes]
    try:
        for leadership, recorder in zip(processes, seen, strict=True):
            await leadership.start(recorder.lead, recorder.lose)
        assert [p.leading for p in processes] == [True, False, False]
        assert [r.led for r in seen] == [1, 0, 0]
        await asyncio.sleep(FAST * 4)  # the followers keep trying, and keep failing
        assert [p.leading for p in processes] == [True, False, False]
        assert [await p.holder() for p in processes] == ["vipbot 0@shop"] * 3
    finally:
        for leadership in processes:
            await leadership.stop()


async def test_when_the_leader_stops_one_follower_takes_over(pg_url: str) -> None:  # noqa: F811
    first, second, third = (PostgresLeadership(pg_url, name=f"vipbot {n}@shop", check_seconds=FAST) for n in range(3))
    seen = [Recorder(), Recorder(), Recorder()]
    try:
        for leadership, recorder in zip((first, second, third), seen, strict=True):
            await leadership.start(recorder.lead, recorder.lose)
        await first.stop()
        assert await until(lambda: second.leading or third.leading)
        await asyncio.sleep(FAST * 4)
        assert second.leading != third.leading  # one, not both
        assert seen[1].led + seen[2].led == 1 and seen[0].lost == 0  # asked to stop: not "lost"
    finally:
        for leadership in (first, second, third):
            await leadership.stop()


async def test_a_leader_whose_connection_is_killed_stops_and_another_leads(pg_url: str) -> None:  # noqa: F811
    import asyncpg

    first = PostgresLeadership(pg_url, name="vipbot 1@shop", check_seconds=FAST)
    second = PostgresLeadership(pg_url, name="vipbot 2@shop", check_seconds=FAST)
    seen = [Recorder(), Recorder()]
    try:
        await first.start(seen[0].lead, seen[0].lose)
        await second.start(seen[1].lead, seen[1].lose)
        admin = await asyncpg.connect(pg_url)
        try:  # what PostgreSQL does to the session of a process that died, or of a restart
            assert await admin.fetchval(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'vipbot 1@shop'"
            )
        finally:
            await admin.close()
        assert await until(lambda: second.leading)
        assert seen[0].lost == 1 and not first.leading  # it knows it no longer leads, and said so once
        assert seen[1].led == 1
    finally:
        await first.stop()
        await second.stop()


async def test_a_notify_from_a_follower_wakes_the_leader(pg_url: str) -> None:  # noqa: F811
    leader = PostgresLeadership(pg_url, name="vipbot 1@shop", check_seconds=FAST)
    follower = PostgresLeadership(pg_url, name="vipbot 2@shop", check_seconds=FAST)
    woken: list[str] = []
    leader.listen("vipbot_outbox", lambda: woken.append("outbox"))
    leader.listen("vipbot_inbox", lambda: woken.append("inbox"))
    seen = Recorder()
    try:
        await leader.start(seen.lead, seen.lose)
        await follower.start(seen.lead, seen.lose)
        follower.notify("vipbot_inbox")
        assert await until(lambda: woken == ["inbox"])
        follower.notify("vipbot_outbox")
        assert await until(lambda: woken == ["inbox", "outbox"])
        with pytest.raises(ValueError):
            leader.listen("anything", lambda: None)
    finally:
        await follower.stop()
        await leader.stop()


# --- two runtimes on one database: what a follower does reaches the leader ---------------------------------
async def two_runtimes(pg_url: str) -> tuple[Any, Any, RecordingPusher]:  # noqa: F811
    """A leading and a following runtime on one database, each with the test channel's pusher."""
    from bot.app.runtime import Runtime

    recorder = RecordingPusher()
    runtimes = []
    for n in range(2):
        runtime = await Runtime.open(Settings(locale="en", storage={"url": pg_url}))
        runtime.leader.name = runtime.outbox.claimant = f"vipbot {n}@shop"  # two processes, in this one
        runtime.outbox.register(recorder)
        await runtime.start()
        runtimes.append(runtime)
    leader, follower = runtimes
    assert leader.leader.leading and not follower.leader.leading
    return leader, follower, recorder


async def test_an_announcement_a_follower_plans_gets_its_job_on_the_leader(pg_url: str) -> None:  # noqa: F811
    from datetime import UTC, datetime, timedelta

    from bot.app.planner import job_id
    from handlers.shared.broadcast import plan_at

    leader, follower, _ = await two_runtimes(pg_url)
    try:
        due = datetime.now(UTC) + timedelta(hours=3)
        async with follower.deps.db.transaction() as repos:
            ann = await plan_at(repos, follower.deps, "scheduled", "all", "Doors open at ten", due)
        assert follower.scheduler.get_job(job_id(ann)) is None  # a follower runs no schedule
        assert await until(lambda: leader.scheduler.get_job(job_id(ann)) is not None)  # told by NOTIFY
        planned = leader.scheduler.get_job(job_id(ann)).next_run_time
        assert abs((planned - due).total_seconds()) < 1
    finally:
        await follower.close()
        await leader.close()


async def test_rows_a_follower_queues_are_sent_by_the_leader_when_told(
    pg_url: str, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    from bot.delivery import outbox
    from handlers.shared.broadcast import publish

    monkeypatch.setattr(outbox, "SHARED_SWEEP_SECONDS", 600.0)  # only the NOTIFY can wake the leader in time
    leader, follower, recorder = await two_runtimes(pg_url)
    try:
        async with follower.deps.db.transaction() as repos:
            for name in ("m0", "m1", "m2"):
                await repos.members.register("test", name, name, None, 0, private_chat=True)
            _, count = await publish(repos, follower.deps, "now", "all", "Flash sale at nine")
            follower.outbox.wake()
        assert count == 3
        assert await until(lambda: len(recorder.pushes) == 3, timeout=10)
        assert sorted(t for _, t, _ in recorder.pushes) == ["m0", "m1", "m2"]
        async with leader.deps.db.read() as repos:
            rows = await repos.conn.execute_fetchall("SELECT DISTINCT claimed_by FROM deliveries")
        assert [r[0] for r in rows] == ["vipbot 0@shop"]  # sent by the leader, not by the follower
    finally:
        await follower.close()
        await leader.close()
