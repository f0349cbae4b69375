"""Check-in throughput through the whole Telegram pipeline, against a bare python-telegram-bot handler.

Both pipelines run in this process on one event loop and are fed the same N ``/checkin`` updates (N
distinct members, one VIP supergroup) straight into ``Application.update_queue``; polling is not
started. The replies go to the fake Bot API of ``tests/fakes/bot_api.py``, which runs in a separate
process (spawned by ``bench/fake_server.py``, on 127.0.0.1) so that its CPU does not compete with the
bot's event loop.

* full: ``Settings`` on a temporary SQLite file -> ``Runtime.open`` -> ``TelegramChannel`` (its real PTB
  Application: TypeHandler -> ``to_inbound`` -> ``Dispatcher`` -> check-in handler -> SQLite ->
  ``bot.send_message`` quoting the member's message).
* bare: a plain ``ApplicationBuilder`` Application, same token, base URL and ``concurrent_updates``, with
  one TypeHandler that only sends "ok" quoting the message (the same ``send_message`` call shape).

Neither uses PTB's ``AIORateLimiter`` (``telegram.rate_limiter = False``): its 30 messages/s cap would
measure Telegram's flood limit, not our code.

Timing (identical instrumentation for both pipelines): the bot's general HTTPXRequest is replaced by a
subclass that notes when a ``sendMessage`` response has arrived, keyed by ``reply_parameters.message_id``
(the source message), and the update processor by a subclass that notes when an update gets one of the
``concurrent_updates`` slots. Reported per pipeline:

* rate: N / (last reply returned - first update put);
* queue->reply latency: put into the queue until the reply returned. All N updates are queued at once,
  so this is mostly waiting in the backlog (p50 is about half the run time);
* service latency: slot taken (handler about to run) until the reply returned.

Afterwards the SQLite file and the fake's recorded calls are checked: exactly one check-in, one ledger
entry and one reply per member; the exit status is non-zero when anything was lost or doubled.

Run from the repository root::

    .venv/bin/python bench/checkin_throughput.py [--members 10000] [--concurrency 64] [--runs 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telegram import ReplyParameters, Update  # noqa: E402
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler  # noqa: E402

from bench.common import instrument, percentile, run_in_process_bench  # noqa: E402
from bench.fake_server import FakeServer  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.runtime import Runtime  # noqa: E402
from bot.telegram_channel import TelegramChannel  # noqa: E402
from tests.fakes.bot_api import FakeBotApi, message_update, user  # noqa: E402

GROUP_ID = -1001234567890
FIRST_USER_ID = 500_000_000
TOKEN = "123456:BENCH-TOKEN"
PIPELINES = ("bare", "full")

log = logging.getLogger("bench.checkin")


# --- instrumentation (identical for both pipelines) ---------------------------------------------------
@dataclass
class Recorder:
    """Times per source message id: put into the queue, slot taken, reply returned."""

    expected: int
    put_at: dict[int, float] = field(default_factory=dict)
    started_at: dict[int, float] = field(default_factory=dict)
    replied_at: dict[int, float] = field(default_factory=dict)
    replies: int = 0
    all_replied: asyncio.Event = field(default_factory=asyncio.Event)

    def started(self, message_id: int) -> None:
        self.started_at.setdefault(message_id, time.perf_counter())

    def replied(self, message_id: int) -> None:
        self.replies += 1
        self.replied_at.setdefault(message_id, time.perf_counter())
        if len(self.replied_at) >= self.expected:
            self.all_replied.set()

    def on_success(self, url: str, params: dict[str, Any]) -> None:
        """A Bot API call got its answer: a ``sendMessage`` quoting a source message is its reply."""
        if url.endswith("/sendMessage"):
            quoted = params.get("reply_parameters")
            if isinstance(quoted, dict):
                self.replied(int(quoted["message_id"]))

    def on_start(self, update: object) -> None:
        if isinstance(update, Update) and update.message is not None:
            self.started(update.message.message_id)


# --- the workload ---------------------------------------------------------------------------------------
def build_update_data(members: int) -> list[dict[str, Any]]:
    """N ``/checkin`` messages from N distinct users in one VIP supergroup (ids from a local, unstarted fake)."""
    ids = FakeBotApi(token=TOKEN)
    return [message_update(ids, GROUP_ID, user(FIRST_USER_ID + i), "/checkin") for i in range(members)]


@dataclass
class RunResult:
    pipeline: str
    members: int
    seconds: float
    rate: float
    queue_p50_ms: float
    queue_p99_ms: float
    service_p50_ms: float
    service_p99_ms: float
    bot_cpu_pct: float
    fake_cpu_pct: float
    completed: bool
    replies_recorded: int
    send_message_calls: int
    lost: int
    doubled: int
    problems: list[str] = field(default_factory=list)
    db: dict[str, int] = field(default_factory=dict)
    reply_texts: list[tuple[str, int]] = field(default_factory=list)


async def drive(
    application: Application, data: list[dict[str, Any]], recorder: Recorder, wait_s: float
) -> tuple[float, float, bool]:
    """Queue every update, wait (bounded) for all replies; returns (t_first_put, cpu_seconds, completed)."""
    updates = [Update.de_json(item, application.bot) for item in data]
    queue = application.update_queue
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for update in updates:
        assert update.message is not None
        recorder.put_at[update.message.message_id] = time.perf_counter()
        queue.put_nowait(update)
    try:
        await asyncio.wait_for(recorder.all_replied.wait(), wait_s)
        completed = True
    except TimeoutError:
        completed = False
    return t0, time.process_time() - cpu0, completed


def summarise(
    pipeline: str,
    recorder: Recorder,
    t0: float,
    cpu: float,
    completed: bool,
    fake_before: float,
    stats: dict[str, Any],
    expected_ids: set[int],
) -> RunResult:
    members = recorder.expected
    end = max(recorder.replied_at.values(), default=t0)
    seconds = max(end - t0, 1e-9)
    queue_ms = [(at - recorder.put_at[mid]) * 1000 for mid, at in recorder.replied_at.items()]
    service_ms = [(at - recorder.started_at[mid]) * 1000 for mid, at in recorder.replied_at.items()]
    per_source = Counter(stats["reply_to"])
    lost = len(expected_ids - set(per_source))
    doubled = sum(n - 1 for n in per_source.values() if n > 1)
    problems = []
    if not completed:
        problems.append(f"timed out with {len(recorder.replied_at)}/{members} replies")
    if stats["send_message"] != members:
        problems.append(f"fake got {stats['send_message']} sendMessage calls, expected {members}")
    if lost or doubled:
        problems.append(f"replies lost {lost}, doubled {doubled}")
    return RunResult(
        pipeline=pipeline,
        members=members,
        seconds=seconds,
        rate=members / seconds,
        queue_p50_ms=percentile(queue_ms, 0.50),
        queue_p99_ms=percentile(queue_ms, 0.99),
        service_p50_ms=percentile(service_ms, 0.50),
        service_p99_ms=percentile(service_ms, 0.99),
        bot_cpu_pct=100 * cpu / seconds,
        fake_cpu_pct=100 * (stats["cpu_seconds"] - fake_before) / seconds,
        completed=completed,
        replies_recorded=recorder.replies,
        send_message_calls=stats["send_message"],
        lost=lost,
        doubled=doubled,
        problems=problems,
        reply_texts=[(text, n) for text, n in stats["texts"]],
    )


async def run_bare(server: FakeServer, data: list[dict[str, Any]], concurrency: int, wait_s: float) -> RunResult:
    async def reply(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update) or update.message is None:
            return
        message = update.message
        await context.bot.send_message(
            chat_id=message.chat_id,
            text="ok",
            reply_parameters=ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True),
        )

    application = ApplicationBuilder().token(TOKEN).base_url(server.base_url).concurrent_updates(concurrency).build()
    application.add_handler(TypeHandler(Update, reply))
    recorder = Recorder(len(data))
    await instrument(application, recorder.on_success, recorder.on_start)
    server.reset()
    fake_before = server.stats()["cpu_seconds"]
    await application.initialize()
    await application.start()
    try:
        t0, cpu, completed = await drive(application, data, recorder, wait_s)
    finally:
        await application.stop()
        await application.shutdown()
    stats = server.stats()
    return summarise("bare", recorder, t0, cpu, completed, fake_before, stats, _source_ids(data))


async def run_full(server: FakeServer, data: list[dict[str, Any]], concurrency: int, wait_s: float) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="vipbot-bench-") as tmp:
        db_path = Path(tmp) / "vip.db"
        settings = Settings(
            locale="en",
            storage={"path": str(db_path)},
            telegram={
                "token": TOKEN,
                "base_url": server.base_url,
                "rate_limiter": False,  # 30 msg/s would measure Telegram's cap, not our code
                "groups": [GROUP_ID],
                "concurrent_updates": concurrency,
            },
        )
        runtime = await Runtime.open(settings)
        channel = TelegramChannel(settings, runtime.dispatcher)
        application = channel.application
        recorder = Recorder(len(data))
        await instrument(application, recorder.on_success, recorder.on_start)
        server.reset()
        fake_before = server.stats()["cpu_seconds"]
        try:
            await application.initialize()
            await application.start()
            try:
                t0, cpu, completed = await drive(application, data, recorder, wait_s)
            finally:
                await channel.stop()
        finally:
            await runtime.close()
        stats = server.stats()
        result = summarise("full", recorder, t0, cpu, completed, fake_before, stats, _source_ids(data))
        points = settings.checkin.base_points  # first check-in of a new member: streak 1, no bonus
        result.db, db_problems = check_database(db_path, len(data), points)
        result.problems.extend(db_problems)
        expected_text = f"Checked in! +{points} points"
        if not all(text.startswith(expected_text) for text, _ in result.reply_texts):
            result.problems.append(f"unexpected reply texts: {result.reply_texts}")
    return result


def _source_ids(data: list[dict[str, Any]]) -> set[int]:
    return {int(item["message"]["message_id"]) for item in data}


def check_database(path: Path, members: int, points: int) -> tuple[dict[str, int], list[str]]:
    """Count what the run left in SQLite; every member must have exactly one check-in and one ledger entry."""
    conn = sqlite3.connect(path)
    try:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0] or 0)

        db = {
            "members": one("SELECT COUNT(*) FROM members"),
            "checkins": one("SELECT COUNT(*) FROM checkins"),
            "checkin_members": one("SELECT COUNT(DISTINCT member_id) FROM checkins"),
            "ledger_rows": one("SELECT COUNT(*) FROM ledger"),
            "ledger_members": one("SELECT COUNT(DISTINCT member_id) FROM ledger"),
            "ledger_sum": one("SELECT SUM(delta) FROM ledger"),
            "balance_mismatches": one(
                "SELECT COUNT(*) FROM members m LEFT JOIN (SELECT member_id, SUM(delta) AS s FROM ledger"
                " GROUP BY member_id) l ON l.member_id = m.id WHERE m.balance <> COALESCE(l.s, 0)"
            ),
        }
    finally:
        conn.close()
    db["lost"] = members - db["checkin_members"]
    db["doubled"] = (db["checkins"] - db["checkin_members"]) + (db["ledger_rows"] - db["ledger_members"])
    problems = []
    if db["checkins"] != members or db["checkin_members"] != members:
        problems.append(f"{db['checkins']} check-ins for {db['checkin_members']} members, expected {members}")
    if db["members"] != members:
        problems.append(f"{db['members']} members, expected {members}")
    if db["ledger_sum"] != members * points:
        problems.append(f"ledger sum {db['ledger_sum']}, expected {members * points}")
    if db["ledger_rows"] != members:
        problems.append(f"{db['ledger_rows']} ledger rows, expected {members}")
    if db["balance_mismatches"]:
        problems.append(f"{db['balance_mismatches']} members whose balance differs from their ledger sum")
    return db, problems


# --- reporting ------------------------------------------------------------------------------------------
HEADER = (
    f"{'run':>3} {'pipeline':<8} {'rate/s':>8} {'wall s':>7} {'queue p50':>10} {'queue p99':>10}"
    f" {'svc p50':>8} {'svc p99':>8} {'bot cpu':>8} {'fake cpu':>8}"
)


def row(label: str, r: RunResult) -> str:
    return (
        f"{label:>3} {r.pipeline:<8} {r.rate:8.0f} {r.seconds:7.2f} {r.queue_p50_ms:8.0f}ms {r.queue_p99_ms:8.0f}ms"
        f" {r.service_p50_ms:6.1f}ms {r.service_p99_ms:6.1f}ms {r.bot_cpu_pct:7.0f}% {r.fake_cpu_pct:7.0f}%"
    )


def median_result(results: list[RunResult]) -> dict[str, float]:
    keys = (
        "rate",
        "seconds",
        "queue_p50_ms",
        "queue_p99_ms",
        "service_p50_ms",
        "service_p99_ms",
        "bot_cpu_pct",
        "fake_cpu_pct",
    )
    return {key: statistics.median(getattr(r, key) for r in results) for key in keys}


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    data = build_update_data(args.members)
    wait_s = args.timeout or max(120.0, args.members / 20)
    server = FakeServer.start(TOKEN)
    results: list[tuple[int, RunResult]] = []
    try:
        print(
            f"fake Bot API pid {server.process.pid} on 127.0.0.1:{server.port}; bot pid {os.getpid()};"
            f" {args.members} members, concurrency {args.concurrency}, {args.runs} run(s), rate limiter off"
        )
        print(HEADER)
        for index in range(1, args.runs + 1):
            for pipeline in PIPELINES:
                runner = run_bare if pipeline == "bare" else run_full
                result = await runner(server, data, args.concurrency, wait_s)
                results.append((index, result))
                print(row(str(index), result), flush=True)
    finally:
        server.stop()

    by_pipeline = {p: [r for _, r in results if r.pipeline == p] for p in PIPELINES}
    medians = {p: median_result(rs) for p, rs in by_pipeline.items()}
    if args.runs > 1:
        for pipeline in PIPELINES:
            m = medians[pipeline]
            print(
                f"med {pipeline:<8} {m['rate']:8.0f} {m['seconds']:7.2f} {m['queue_p50_ms']:8.0f}ms"
                f" {m['queue_p99_ms']:8.0f}ms {m['service_p50_ms']:6.1f}ms {m['service_p99_ms']:6.1f}ms"
                f" {m['bot_cpu_pct']:7.0f}% {m['fake_cpu_pct']:7.0f}%"
            )
    ratio = medians["full"]["rate"] / medians["bare"]["rate"]

    failed = False
    for index, r in results:
        replies = f"sendMessage {r.send_message_calls}/{r.members}, lost: {r.lost}, doubled: {r.doubled}"
        line = f"run {index} {r.pipeline}: replies {replies}"
        if r.pipeline == "full":
            d = r.db
            line += (
                f"; check-ins {d['checkins']} ({d['checkin_members']} members), ledger sum {d['ledger_sum']},"
                f" balance mismatches {d['balance_mismatches']}; check-ins lost: {d['lost']}, doubled: {d['doubled']}"
            )
        print(line)
        for problem in r.problems:
            failed = True
            print(f"  FAIL: {problem}")
    print(f"ratio full/bare: {ratio:.2f} (goal >= 0.5){'' if ratio >= 0.5 else '  -- BELOW GOAL'}")
    print("correctness: " + ("FAILED" if failed else "ok"))

    report = {
        "members": args.members,
        "concurrency": args.concurrency,
        "runs": args.runs,
        "rate_limiter": False,
        "python": sys.version.split()[0],
        "results": [{"run": i, **asdict(r)} for i, r in results],
        "medians": medians,
        "ratio_full_over_bare": ratio,
        "goal": 0.5,
        "correct": not failed,
    }
    return (1 if failed else 0), report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=10_000, help="distinct members, one /checkin each")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent_updates for both pipelines")
    parser.add_argument("--runs", type=int, default=1, help="rounds of bare then full; medians when > 1")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds to wait for one run's replies")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.members < 1 or args.runs < 1 or not 1 <= args.concurrency <= 1024:
        parser.error("--members and --runs must be >= 1, --concurrency between 1 and 1024")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_in_process_bench(bench, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
