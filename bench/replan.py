"""Start-up re-planning: how long the bot takes to give every pending announcement its scheduler job.

Seeds a fresh SQLite file with N pending scheduled announcements spread over the next 30 days, then times
`Runtime.start()` (outbox recovery, one APScheduler job per pending row, scheduler start, the catch-up run)
and, separately, `Planner.replan()` alone. Run from the repository root::

    .venv/bin/python bench/replan.py [--announcements 2000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot.app.config import Settings  # noqa: E402
from bot.app.runtime import Runtime  # noqa: E402
from storage.db.database import Database  # noqa: E402


async def seed(path: Path, count: int) -> None:
    db = await Database.open(path)
    now = int(time.time())
    try:
        async with db.transaction() as repos:
            for n in range(count):
                due = now + 3600 + n * (30 * 24 * 3600 // count)
                await repos.announcements.create("scheduled", "all", f"announcement {n}", due, now)
    finally:
        await db.close()


async def one_run(count: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory(prefix="vipbot-replan-") as tmp:
        path = Path(tmp) / "vip.db"
        await seed(path, count)
        settings = Settings(storage={"path": str(path)}, greetings={"enabled": False})  # only the seeded rows
        runtime = await Runtime.open(settings)
        try:
            started = time.perf_counter()
            await runtime.start()
            total = time.perf_counter() - started
            jobs = sum(1 for job in runtime.scheduler.get_jobs() if job.id.startswith("announcement:"))
            _, replan_only = await runtime.planner.replan()  # again, on the running scheduler
        finally:
            await runtime.close()
    return total, replan_only, jobs


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--announcements", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name in list(os.environ):
        if name.startswith("VIPBOT_") or name.startswith("TELEGRAM_"):
            del os.environ[name]
    totals, replans = [], []
    for run in range(1, args.runs + 1):
        total, replan_only, jobs = await one_run(args.announcements)
        if jobs != args.announcements:
            print(f"run {run}: expected {args.announcements} jobs, found {jobs}", file=sys.stderr)
            return 1
        totals.append(total)
        replans.append(replan_only)
        print(f"run {run}: {jobs} jobs; Runtime.start() {total * 1000:.0f} ms; replan on a running scheduler "
              f"{replan_only * 1000:.0f} ms")  # fmt: skip
    print(
        f"median of {args.runs}: Runtime.start() {statistics.median(totals) * 1000:.0f} ms, "
        f"replan alone {statistics.median(replans) * 1000:.0f} ms for {args.announcements} pending announcements "
        f"(goal < 1000 ms)"
    )
    return 0 if statistics.median(totals) < 1.0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
