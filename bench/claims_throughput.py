"""Flash-sale claim presses through the whole Telegram pipeline, against a bare python-telegram-bot handler.

The workload of the issue: N members (10,000) each press the claim button of one flash sale with U units
(100) once, as fast as the pipeline takes the presses; exactly U presses must win. Both pipelines run in
this process on one event loop; the presses are callback queries ``v1:claim:1`` with distinct ids, from N
distinct users, under a message in the VIP supergroup. The bot's calls go to the fake Bot API of
``tests/fakes/bot_api.py``, served by a separate process (spawned by ``bench/fake_server.py``, on
127.0.0.1, with its Telegram flood limits off: the bot runs without rate limiter) so that its CPU does not
compete with the bot's event loop.

* full: ``Settings`` on a temporary SQLite file (a VIP group, one staff id, no rate limiter) ->
  ``Runtime.open`` with a ``FakeClock`` -> ``TelegramChannel`` attached and started as ``vipbot run`` does
  (it polls the fake, which has nothing queued). The presses are stored straight into the inbox with
  ``channel.intake.store([...])``, as a webhook burst would; the intake's workers (``concurrent_updates``
  of them) handle them: ``to_inbound`` -> ``Dispatcher`` (one transaction: inbox claim, ``sales.commands.claim``,
  queued toast and code) -> sender -> ``answerCallbackQuery``. A winner cannot be messaged privately (no
  ``/start``): the code is held in ``outbound`` until the member starts the bot, never posted in the group,
  and the winner's toast carries the hint to start the bot. The N members are seeded in the database
  first; the sale is created by the staff's ``/sale add ... --force`` through the dispatcher, then the clock
  is moved past its start.
* bare: a plain ``ApplicationBuilder`` Application (same token, base URL and ``concurrent_updates``) whose
  only handler does ``await update.callback_query.answer("ok")``; its presses are put straight into its
  ``Application.update_queue`` (it does not poll).

Each pipeline runs in two ways (a fresh database and sale for every full run):

* open loop: all N presses are fed at once (full: one ``store`` of all N, one transaction). The rate is the
  pipeline's throughput; the latency is mostly waiting in the backlog (p50 is about half the run time).
* closed loop (``--inflight K``): a new press is fed (full: stored alone) only when an earlier one has been
  answered, so that K presses are in flight at all times; the latency is what a member sees under that load.

Latency of a press: fed (full: the ``store`` call began; bare: put into the queue) until its
``answerCallbackQuery`` returned (the bot's HTTPXRequest is wrapped and keys the answers by
``callback_query_id``). "service" is from the moment the press was taken to be handled until that answer:
full, an intake worker took the stored update (``Intake.process`` is wrapped); bare, it got one of PTB's
``concurrent_updates`` slots (the timing update processor). The full figure thus includes the sender's
queue for the toast, which PTB's update processor never had. Rate: N / (last answer - first put). The
ratio full/bare is taken per mode, and as "peak": the best full rate over the best bare rate, whatever
their modes (the bare handler is fastest with few presses in flight). Goals of the issue: ratio >= 0.5, p99 < 250 ms.

Correctness (exit status 1 otherwise): every press answered exactly once, exactly min(N, U) answers say
"You got" (each with the hint to ``/start`` the bot), the others "sold out", no code posted in the group;
in SQLite ``sales.sold``, the claims (rows, distinct members, codes) and the held replies in ``outbound``
equal min(N, U), and every press is done in the inbox.

Run from the repository root::

    .venv/bin/python bench/claims_throughput.py [--members 10000] [--units 100] [--concurrency 64]
        [--inflight 8,16,32] [--runs 1] [--closed-only] [--json FILE] [--profile FILE]

With ``--runs`` > 1 every mode is repeated (bare then full each time) and the ratios and goals are judged
on the medians. ``--profile FILE`` runs cProfile over the full pipeline's presses (event-loop thread only;
SQLite itself runs in aiosqlite's thread) and prints the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from telegram import Update  # noqa: E402
from telegram.ext import ApplicationBuilder, ContextTypes, TypeHandler  # noqa: E402

from bench.common import (  # noqa: E402
    BENCH_GROUP,
    BENCH_TOKEN,
    AnswerRecorder,
    bench_settings,
    instrument,
    percentile,
    run_in_process_bench,
    seed_members,
    staff_inbound,
    timed_run,
)
from bench.fake_server import FakeServer  # noqa: E402
from bot.app.runtime import Runtime  # noqa: E402
from bot.telegram.channel import TelegramChannel  # noqa: E402
from handlers.core.clock import FakeClock  # noqa: E402
from tests.fakes.bot_api import FakeBotApi, callback_update, user  # noqa: E402

GROUP_ID, TOKEN = BENCH_GROUP, BENCH_TOKEN
FIRST_USER_ID = 500_000_000
SALE_ID = 1
ITEM = "Cup"
CLOCK_START = datetime(2026, 3, 10, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
SALE_START = "2026-03-10 10:00"  # local time; the clock is moved past it before the presses
WIN_MARK = "You got"
SOLD_OUT_MARK = "sold out"
CODE_MARK = "Your code: S-"
START_MARK = "/start"
PIPELINES = ("bare", "full")
GOAL_RATIO = 0.5
GOAL_P99_MS = 250.0

log = logging.getLogger("bench.claims")


# --- what the fake Bot API reports (computed in its process) -------------------------------------------
def claim_stats(api: FakeBotApi) -> dict[str, Any]:
    """``GET /control/stats`` of this benchmark: the calls, the answers to the presses, the group codes."""
    methods: dict[str, int] = {}
    for call in api.calls:
        methods[call.method] = methods.get(call.method, 0) + 1
    answers = api.sent("answerCallbackQuery")
    mentions = [
        p
        for p in api.sent("sendMessage")
        if p.get("parse_mode") == "HTML" and CODE_MARK in str(p.get("text", "")) and int(p["chat_id"]) == GROUP_ID
    ]
    return {
        "methods": methods,
        "answers": len(answers),
        "answered_ids": len({str(p.get("callback_query_id")) for p in answers}),
        "won": sum(WIN_MARK in str(p.get("text", "")) for p in answers),
        "won_with_hint": sum(
            WIN_MARK in str(p.get("text", "")) and START_MARK in str(p.get("text", "")) for p in answers
        ),
        "sold_out": sum(SOLD_OUT_MARK in str(p.get("text", "")) for p in answers),
        "group_codes": len(mentions),
        "cpu_seconds": time.process_time(),
    }


# --- instrumentation (identical for both pipelines) ---------------------------------------------------
@dataclass
class Recorder(AnswerRecorder):
    """Times per callback query id: fed, taken to be handled, answer returned; and codes posted in the group."""

    started_at: dict[str, float] = field(default_factory=dict)
    group_codes: int = 0

    def started(self, query_id: str) -> None:
        self.started_at.setdefault(query_id, time.perf_counter())

    def on_success(self, url: str, params: dict[str, Any]) -> None:
        """A Bot API call got its answer: an ``answerCallbackQuery``, or maybe a code posted in the group."""
        super().on_success(url, params)
        if url.endswith("/sendMessage") and params.get("parse_mode") == "HTML":
            if CODE_MARK in str(params.get("text", "")):
                self.group_codes += 1

    def on_start(self, update: object) -> None:
        """Bare: PTB's update processor gave the update its slot."""
        if isinstance(update, Update) and update.callback_query is not None:
            self.started(update.callback_query.id)

    def on_taken(self, raw: dict[str, Any]) -> None:
        """Full: an intake worker took the stored update."""
        query = raw.get("callback_query")
        if isinstance(query, dict):
            self.started(str(query.get("id")))


def time_intake(channel: TelegramChannel, on_taken: Callable[[dict[str, Any]], None]) -> None:
    """Wrap the intake's ``process`` (what each worker calls per stored update) to note when it is taken."""
    intake = channel.intake
    assert intake is not None
    process = intake.process

    async def timed(key: str, raw: dict[str, Any]) -> bool:
        on_taken(raw)
        return await process(key, raw)

    intake.process = timed


# --- the workload ---------------------------------------------------------------------------------------
def user_id(index: int) -> int:
    return FIRST_USER_ID + index


def build_update_data(members: int) -> list[dict[str, Any]]:
    """One claim press per member (distinct users, distinct callback query ids) under a group message."""
    ids = FakeBotApi(token=TOKEN)  # only its id counters; never started
    return [
        callback_update(ids, GROUP_ID, user(user_id(i)), f"v1:claim:{SALE_ID}", update_id=i + 1) for i in range(members)
    ]


@dataclass
class RunResult:
    pipeline: str
    mode: str
    inflight: int | None
    members: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    service_p50_ms: float
    service_p99_ms: float
    bot_cpu_pct: float
    fake_cpu_pct: float
    completed: bool
    answered: int
    answers: int
    won: int
    sold_out: int
    group_codes: int
    fake: dict[str, Any] = field(default_factory=dict)
    db: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


Feed = Callable[[list[Any]], Awaitable[None]]
"""Hands a batch of presses to a pipeline: bare, Update objects into its update_queue; full, update dicts
stored into the inbox."""


def query_id(item: Any) -> str:
    if isinstance(item, Update):
        assert item.callback_query is not None
        return item.callback_query.id
    return str(item["callback_query"]["id"])


async def drive(
    put: Feed, items: list[Any], recorder: Recorder, inflight: int | None, wait_s: float
) -> tuple[float, float, bool]:
    """Feed the presses (all at once, or keeping `inflight` unanswered) and wait, bounded, for every answer.

    Returns (time of the first put, CPU seconds of this process, completed)."""

    async def feed() -> None:
        if inflight is None:
            now = time.perf_counter()
            for item in items:
                recorder.put_at[query_id(item)] = now
            await put(items)
        else:
            slots = asyncio.Semaphore(inflight)
            recorder.release = slots.release
            for item in items:
                await slots.acquire()
                recorder.put_at[query_id(item)] = time.perf_counter()
                await put([item])
        await recorder.all_answered.wait()

    return await timed_run(feed(), wait_s)


def summarise(
    pipeline: str,
    inflight: int | None,
    recorder: Recorder,
    t0: float,
    cpu: float,
    completed: bool,
    fake_before: float,
    fake: dict[str, Any],
) -> RunResult:
    members = recorder.expected
    end = max(recorder.answered_at.values(), default=t0)
    seconds = max(end - t0, 1e-9)
    latency = [(at - recorder.put_at[qid]) * 1000 for qid, at in recorder.answered_at.items()]
    service = [(at - recorder.started_at[qid]) * 1000 for qid, at in recorder.answered_at.items()]
    texts = list(recorder.texts.values())
    problems = []
    if not completed:
        problems.append(f"timed out with {len(recorder.answered_at)}/{members} presses answered")
    if recorder.answers != members or len(recorder.answered_at) != members:
        problems.append(f"{recorder.answers} answers for {len(recorder.answered_at)}/{members} presses")
    if fake["answers"] != members or fake["answered_ids"] != members:
        problems.append(f"fake got {fake['answers']} answerCallbackQuery for {fake['answered_ids']} presses")
    fake = {**fake, "cpu_seconds": fake["cpu_seconds"] - fake_before}
    return RunResult(
        pipeline=pipeline,
        mode="open" if inflight is None else f"closed-{inflight}",
        inflight=inflight,
        members=members,
        seconds=seconds,
        rate=len(recorder.answered_at) / seconds,
        p50_ms=percentile(latency, 0.50),
        p99_ms=percentile(latency, 0.99),
        max_ms=max(latency, default=float("nan")),
        service_p50_ms=percentile(service, 0.50),
        service_p99_ms=percentile(service, 0.99),
        bot_cpu_pct=100 * cpu / seconds,
        fake_cpu_pct=100 * fake["cpu_seconds"] / seconds,
        completed=completed,
        answered=len(recorder.answered_at),
        answers=recorder.answers,
        won=sum(WIN_MARK in t for t in texts),
        sold_out=sum(SOLD_OUT_MARK in t for t in texts),
        group_codes=recorder.group_codes,
        fake=fake,
        problems=problems,
    )


async def run_bare(
    server: FakeServer, data: list[dict[str, Any]], concurrency: int, inflight: int | None, wait_s: float
) -> RunResult:
    async def answer(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(update, Update) and update.callback_query is not None:
            await update.callback_query.answer("ok")

    application = ApplicationBuilder().token(TOKEN).base_url(server.base_url).concurrent_updates(concurrency).build()
    application.add_handler(TypeHandler(Update, answer))
    recorder = Recorder(len(data))
    await instrument(application, recorder.on_success, recorder.on_start)
    updates = [Update.de_json(item, application.bot) for item in data]
    server.reset()
    fake_before = server.stats()["cpu_seconds"]
    queue = application.update_queue

    async def put(batch: list[Any]) -> None:
        for update in batch:
            queue.put_nowait(update)

    await application.initialize()
    await application.start()
    try:
        t0, cpu, completed = await drive(put, updates, recorder, inflight, wait_s)
    finally:
        await application.stop()
        await application.shutdown()
    result = summarise("bare", inflight, recorder, t0, cpu, completed, fake_before, server.stats())
    if completed and result.answered == len(data) and not all(t == "ok" for t in recorder.texts.values()):
        result.problems.append("bare answers other than 'ok'")
    return result


async def create_sale(runtime: Runtime, channel: TelegramChannel, units: int) -> None:
    """The staff's ``/sale add`` in the VIP group, through the dispatcher (the staff id is configured)."""
    text = f"/sale add {ITEM} | price=9 stock={units} start={SALE_START} --force"
    msg = staff_inbound(text, "telegram:update:bench-sale")
    replies = await runtime.dispatcher.handle(msg, channel)
    said = "\n".join(r.text for r in replies)
    if f"Flash sale #{SALE_ID} created" not in said:
        raise RuntimeError(f"creating the sale failed: {said!r}")


async def run_full(
    server: FakeServer,
    data: list[dict[str, Any]],
    args: argparse.Namespace,
    inflight: int | None,
    wait_s: float,
    profiler: cProfile.Profile | None = None,
) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="vipbot-bench-") as tmp:
        db_path = Path(tmp) / "vip.db"
        settings = bench_settings(
            db_path, server.base_url,
            rate_limiter=False,  # 30 msg/s would measure Telegram's cap, not our code
            concurrency=args.concurrency,
            delivery={"concurrency": min(args.concurrency, 512)},  # toasts in flight, as the bare handler's
        )  # fmt: skip
        clock = FakeClock(CLOCK_START)
        runtime = await Runtime.open(settings, clock)
        try:
            channel = TelegramChannel(settings, runtime.dispatcher)
            await channel.attach(runtime)
            await create_sale(runtime, channel, args.units)
            await seed_members(runtime, FIRST_USER_ID, len(data))
            clock.advance(timedelta(hours=1, minutes=1))
            recorder = Recorder(len(data))
            await instrument(channel.application, recorder.on_success)
            time_intake(channel, recorder.on_taken)
            intake = channel.intake
            assert intake is not None

            async def put(batch: list[Any]) -> None:
                await intake.store(batch)

            server.reset()
            fake_before = server.stats()["cpu_seconds"]
            await channel.start()
            try:
                if profiler is not None:
                    profiler.enable()
                try:
                    t0, cpu, completed = await drive(put, data, recorder, inflight, wait_s)
                finally:
                    if profiler is not None:
                        profiler.disable()
                # Anything still queued (a stray group line would show here) goes out before counting.
                await channel.idle(timeout=10.0)
            finally:
                await channel.stop()
        finally:
            await runtime.close()
        result = summarise("full", inflight, recorder, t0, cpu, completed, fake_before, server.stats())
        result.db = read_database(db_path)
    result.problems.extend(check_full(result, len(data), args.units))
    return result


def read_database(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:

        def one(sql: str) -> int:
            return int(conn.execute(sql, (SALE_ID,)).fetchone()[0] or 0)

        return {
            "stock": one("SELECT stock FROM sales WHERE id = ?"),
            "sold": one("SELECT sold FROM sales WHERE id = ?"),
            "claims": one("SELECT COUNT(*) FROM sale_claims WHERE sale_id = ?"),
            "claimants": one("SELECT COUNT(DISTINCT member_id) FROM sale_claims WHERE sale_id = ?"),
            "codes": one("SELECT COUNT(DISTINCT code) FROM sale_claims WHERE sale_id = ?"),
            "held": int(conn.execute("SELECT COUNT(*) FROM outbound WHERE held = 1").fetchone()[0]),
            "inbox_pending": int(
                conn.execute(
                    "SELECT COUNT(*) FROM inbox WHERE key LIKE 'telegram:update:%' AND done_at IS NULL"
                ).fetchone()[0]
            ),
            "over_limit": one(
                "SELECT COUNT(*) FROM (SELECT member_id FROM sale_claims WHERE sale_id = ? GROUP BY member_id"
                " HAVING COUNT(*) > 1)"
            ),
        }
    finally:
        conn.close()


def check_full(r: RunResult, members: int, units: int) -> list[str]:
    winners = min(members, units)
    problems = []
    if r.won != winners or r.sold_out != members - winners:
        problems.append(f"answers: {r.won} won, {r.sold_out} sold out; expected {winners} and {members - winners}")
    if r.fake.get("won") != winners:
        problems.append(f"fake saw {r.fake.get('won')} winning answers, expected {winners}")
    if r.fake.get("won_with_hint") != winners:
        problems.append(
            f"fake saw {r.fake.get('won_with_hint')} winning toasts with the /start hint, expected {winners}"
        )
    if r.group_codes or r.fake.get("group_codes"):
        problems.append(f"{r.group_codes} codes posted in the group (fake: {r.fake.get('group_codes')}), expected none")
    d = r.db
    if not d["sold"] == d["claims"] == d["claimants"] == d["codes"] == winners or d["over_limit"]:
        problems.append(f"database: {d}, expected sold = claims = claimants = codes = {winners}")
    if d["held"] != winners:
        problems.append(f"database: {d['held']} codes held in outbound, expected {winners}")
    if d["inbox_pending"]:
        problems.append(f"database: {d['inbox_pending']} presses not done in the inbox")
    if d["stock"] != units:
        problems.append(f"database: stock {d['stock']}, expected {units}")
    return problems


# --- reporting ------------------------------------------------------------------------------------------
HEADER = (
    f"{'mode':<10} {'pipeline':<8} {'claims/s':>8} {'wall s':>7} {'p50':>8} {'p99':>8} {'max':>8}"
    f" {'svc p50':>8} {'svc p99':>8} {'bot cpu':>8} {'fake cpu':>8}"
)


def row(r: RunResult) -> str:
    return (
        f"{r.mode:<10} {r.pipeline:<8} {r.rate:8.0f} {r.seconds:7.2f} {r.p50_ms:6.1f}ms {r.p99_ms:6.1f}ms"
        f" {r.max_ms:6.0f}ms {r.service_p50_ms:6.1f}ms {r.service_p99_ms:6.1f}ms {r.bot_cpu_pct:7.0f}%"
        f" {r.fake_cpu_pct:7.0f}%"
    )


def print_profile(profiler: cProfile.Profile, path: str, limit: int = 30) -> None:
    profiler.dump_stats(path)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime")
    print(f"profile of the full pipeline's presses written to {path}; top {limit} by own time:")
    stats.print_stats(limit)


MEDIAN_KEYS = (
    "rate",
    "seconds",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "service_p50_ms",
    "service_p99_ms",
    "bot_cpu_pct",
    "fake_cpu_pct",
)


def medians(results: list[RunResult]) -> dict[str, float]:
    return {key: statistics.median(getattr(r, key) for r in results) for key in MEDIAN_KEYS}


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    data = build_update_data(args.members)
    wait_s = args.timeout or max(120.0, args.members / 20)
    modes: list[int | None] = list(args.inflight) if args.closed_only else [None, *args.inflight]
    profiler = cProfile.Profile() if args.profile else None
    server = FakeServer.start(TOKEN, stats=claim_stats, limits=False)
    results: list[tuple[int, RunResult]] = []
    try:
        print(
            f"fake Bot API pid {server.process.pid} on 127.0.0.1:{server.port}; bot pid {os.getpid()};"
            f" {args.members} presses for {args.units} units, concurrent_updates {args.concurrency},"
            f" closed loop in flight {args.inflight}, {args.runs} run(s), rate limiter off, fake limits off,"
            f" {os.cpu_count()} CPUs"
        )
        print(f"{'run':>3} {HEADER}")
        for index in range(1, args.runs + 1):
            for inflight in modes:
                bare = await run_bare(server, data, args.concurrency, inflight, wait_s)
                print(f"{index:>3} {row(bare)}", flush=True)
                full = await run_full(server, data, args, inflight, wait_s, profiler)
                print(f"{index:>3} {row(full)}", flush=True)
                results.extend(((index, bare), (index, full)))
    finally:
        server.stop()

    mode_names = ["open" if m is None else f"closed-{m}" for m in modes]
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for mode in mode_names:
        summary[mode] = {p: medians([r for _, r in results if r.mode == mode and r.pipeline == p]) for p in PIPELINES}
    if args.runs > 1:
        for mode in mode_names:
            for pipeline in PIPELINES:
                m = summary[mode][pipeline]
                print(
                    f"med {mode:<10} {pipeline:<8} {m['rate']:8.0f} {m['seconds']:7.2f} {m['p50_ms']:6.1f}ms"
                    f" {m['p99_ms']:6.1f}ms {m['max_ms']:6.0f}ms {m['service_p50_ms']:6.1f}ms"
                    f" {m['service_p99_ms']:6.1f}ms {m['bot_cpu_pct']:7.0f}% {m['fake_cpu_pct']:7.0f}%"
                )
    ratios: dict[str, float] = {}
    meeting: list[int] = []
    for mode, inflight in zip(mode_names, modes, strict=True):
        full = summary[mode]["full"]
        ratio = full["rate"] / summary[mode]["bare"]["rate"]
        ratios[mode] = ratio
        verdict = []
        if ratio < GOAL_RATIO:
            verdict.append("ratio BELOW GOAL")
        if inflight is not None and not full["p99_ms"] < GOAL_P99_MS:
            verdict.append("p99 OVER GOAL")
        if inflight is not None and not verdict:
            meeting.append(inflight)
        goal = "" if inflight is None else f", full p99 {full['p99_ms']:.0f} ms (goal < {GOAL_P99_MS:.0f})"
        print(
            f"{mode:<10} ratio full/bare {ratio:.2f} (goal >= {GOAL_RATIO}){goal}"
            f"{'  -- ' + ', '.join(verdict) if verdict else ''}"
        )

    peak = {p: max(summary[mode][p]["rate"] for mode in mode_names) for p in PIPELINES}
    ratios["peak"] = peak["full"] / peak["bare"]
    print(
        f"peak       ratio full/bare {ratios['peak']:.2f}: best full {peak['full']:.0f}/s over best bare"
        f" {peak['bare']:.0f}/s, whatever the mode"
    )

    failed = False
    for index, r in results:
        line = f"run {index} {r.mode} {r.pipeline}: answered {r.answered}/{r.members} ({r.answers} answers)"
        if r.pipeline == "full":
            d = r.db
            line += (
                f", won {r.won}, sold out {r.sold_out}, codes in group {r.group_codes};"
                f" db sold {d['sold']}/{d['stock']}, claims {d['claims']} by {d['claimants']} members,"
                f" codes held {d['held']}, inbox pending {d['inbox_pending']}"
            )
        print(line)
        for problem in r.problems:
            failed = True
            print(f"  FAIL: {problem}")
    print(f"closed-loop settings meeting both goals: {meeting or 'none'}")
    print("correctness: " + ("FAILED" if failed else "ok"))
    if profiler is not None:
        print_profile(profiler, args.profile)

    report = {
        "members": args.members,
        "units": args.units,
        "concurrency": args.concurrency,
        "inflight": args.inflight,
        "runs": args.runs,
        "rate_limiter": False,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "results": [{"run": i, **asdict(r)} for i, r in results],
        "medians": summary,
        "ratio_full_over_bare": ratios,
        "goals": {"ratio": GOAL_RATIO, "p99_ms": GOAL_P99_MS},
        "closed_loop_meeting_goals": meeting,
        "correct": not failed,
    }
    return (1 if failed else 0), report


def parse_inflight(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not values or any(not 1 <= v <= 10_000 for v in values):
        raise argparse.ArgumentTypeError("in-flight counts must be between 1 and 10000")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=10_000, help="distinct members, one claim press each")
    parser.add_argument("--units", type=int, default=100, help="stock of the flash sale")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent_updates for both pipelines")
    parser.add_argument(
        "--inflight", type=parse_inflight, default=[16], help="closed loop: presses kept in flight (e.g. 8,16,32)"
    )
    parser.add_argument("--runs", type=int, default=1, help="rounds of every mode; medians when > 1")
    parser.add_argument("--closed-only", action="store_true", help="skip the open-loop runs")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds to wait for one run's answers")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the full pipeline's presses (slower)")
    args = parser.parse_args(argv)
    if args.members < 1 or args.units < 1 or args.runs < 1 or not 1 <= args.concurrency <= 1024:
        parser.error("--members, --units and --runs must be >= 1, --concurrency between 1 and 1024")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_in_process_bench(bench, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
