"""Holiday gifts to every member: the old booking, member by member, against the bulk statement.

The database is created by the project's own migrations (``Database.open``) and filled with ``executemany``
(plain ``sqlite3``): N members with one identity each. The bot is then opened in this process
(``Runtime.open``) with a gift for two holidays, and the greetings are planned (``plan_greetings``). Two
bookings follow, each in one write transaction on the bot's database, each with a ticker task on the loop
that wakes every millisecond and notes how late it woke (the longest lateness is how long the loop was
blocked):

* per member (the old way, kept here only): for every member id one ``LedgerRepo.append`` (an INSERT with its
  idempotency key and a SELECT of the totals), on the event loop's thread, for Mid-Autumn;
* bulk (today's ``prepare_greeting``): one ``INSERT … SELECT … ON CONFLICT DO NOTHING`` into the ledger on the
  database thread, for National Day.

Reported per way: the booking's time, the longest the loop was blocked, the entries booked; and that every
balance equals its ledger sum afterwards. Run from the repository root::

    .venv/bin/python bench/holiday_gifts.py [--members 200000] [--skip-old] [--keep PATH] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import load_average, run_in_process_bench  # noqa: E402
from bot.app.config import Settings  # noqa: E402
from bot.app.runtime import Runtime  # noqa: E402
from handlers.core.clock import FakeClock  # noqa: E402
from handlers.core.deps import Deps  # noqa: E402
from handlers.greetings.commands import holiday_name, plan_greetings, prepare_greeting  # noqa: E402
from storage.announcements import Announcement  # noqa: E402
from storage.db.database import Database  # noqa: E402
from storage.repos import Repos  # noqa: E402

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2027, 9, 10, 9, 0, tzinfo=ZONE)  # before Mid-Autumn (09-15) and National Day (10-01) 2027
OLD_HOLIDAY, NEW_HOLIDAY = "mid_autumn", "national_day"
GIFT = 50
TICK_SECONDS = 0.001


def fill(path: Path, members: int) -> None:
    """N members with a private-chat identity each, in one transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("BEGIN")
        at = int(NOW.timestamp()) - 86_400
        conn.executemany(
            "INSERT INTO members(id, display_name, joined_at, last_seen_at) VALUES (?, ?, ?, ?)",
            ((i, f"Member {i}", at, at) for i in range(1, members + 1)),
        )
        conn.executemany(
            "INSERT INTO identities(channel, external_id, member_id, display_name, can_message, created_at)"
            " VALUES ('bench', ?, ?, ?, 1, ?)",
            ((f"u{i}", i, f"Member {i}", at) for i in range(1, members + 1)),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def book_per_member(repos: Repos, deps: Deps, ann: Announcement) -> None:
    """The gift booking as it was: two statements per member, each on the loop."""
    plan = await repos.greetings.plan_of(ann.id)
    assert plan is not None
    holiday_id, year, now = plan.holiday_id, plan.day[:4], deps.now_ts()
    for member_id in await repos.greetings.member_ids():
        await repos.ledger.append(
            member_id, GIFT, "greeting", f"greeting:{holiday_id}:{year}:{member_id}", now,
            note=holiday_name(deps, holiday_id), ref=f"{holiday_id}:{plan.day}",
        )  # fmt: skip


async def watched(action: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """Run `action` with a ticker on the loop; (seconds it took, the ticker's longest lateness in seconds)."""
    worst = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not stop.is_set():
            planned = time.perf_counter() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            worst = max(worst, time.perf_counter() - planned)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)  # the ticker is running
    began = time.perf_counter()
    try:
        await action()
    finally:
        took = time.perf_counter() - began
        stop.set()
        await task
    return took, worst


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    folder = None if args.keep else Path(tempfile.mkdtemp(prefix="vipbot-gifts-"))
    path = Path(args.keep) if folder is None else folder / "bench.db"
    if path.exists():
        path.unlink()
    db = await Database.open(path)
    await db.close()
    began = time.perf_counter()
    fill(path, args.members)
    print(f"database {path}: {args.members:,} members loaded in {time.perf_counter() - began:.1f} s")
    settings = Settings(
        locale="en", storage={"path": str(path)}, greetings={"gift_points": {OLD_HOLIDAY: GIFT, NEW_HOLIDAY: GIFT}}
    )
    runtime = await Runtime.open(settings, FakeClock(NOW))
    deps = runtime.deps
    report: dict[str, Any] = {"members": args.members, "cpus": os.cpu_count()}
    try:
        await plan_greetings(deps)
        async with deps.db.read() as repos:
            pending = await repos.announcements.pending(kind="greeting")
            plans = {p.announcement_id: p.holiday_id for p in await repos.greetings.plans_from("2000-01-01")}
        by_holiday = {plans[a.id]: a for a in pending}
        ways: list[tuple[str, str, Callable[[Repos, Deps, Announcement], Awaitable[Any]]]] = [
            ("bulk", NEW_HOLIDAY, prepare_greeting)
        ]
        if not args.skip_old:
            ways.insert(0, ("per member", OLD_HOLIDAY, book_per_member))
        for label, holiday_id, book in ways:
            ann = by_holiday[holiday_id]

            async def run(book: Callable[..., Awaitable[Any]] = book, ann: Announcement = ann) -> None:
                async with deps.db.transaction() as repos:
                    await book(repos, deps, ann)

            took, blocked = await watched(run)
            async with deps.db.read() as repos:
                rows = await repos.conn.execute_fetchall(
                    "SELECT COUNT(*) FROM ledger WHERE reason = 'greeting' AND ref LIKE ?", (f"{holiday_id}:%",)
                )
            booked = int(rows[0][0])
            report[label] = {"seconds": round(took, 3), "loop_blocked_ms": round(blocked * 1000, 1), "booked": booked}
            print(f"  {label:<11} {holiday_id:<13} booked {booked:>9,} in {took:7.2f} s;"
                  f" loop blocked at most {blocked * 1000:8.1f} ms")  # fmt: skip
        async with deps.db.read() as repos:
            mismatched = await repos.ledger.mismatched_balances()
        report["mismatched_balances"] = len(mismatched)
        print(f"  balances differing from their ledger sums: {len(mismatched)}")
    finally:
        await runtime.close()
        if folder is not None:
            shutil.rmtree(folder)
    print(load_average())
    ok = not report["mismatched_balances"] and all(
        report[label]["booked"] == args.members for label in ("per member", "bulk") if label in report
    )
    return (0 if ok else 1), report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--skip-old", action="store_true", help="time only the bulk booking")
    parser.add_argument("--keep", help="write the database here and keep it")
    parser.add_argument("--json", help="write the figures here as JSON")
    return run_in_process_bench(bench, parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
