"""A rating poll answered by N members (5,000) through the whole Telegram pipeline, and its results.

The workload of the issue: 5,000 members answer a 1-5 rating poll within a minute; every answer must be
counted once; report answers/s and the time to compute and render the results for 5,000 answers.

Setup per run (a fresh temporary SQLite database each time): ``Settings`` (one VIP supergroup, one staff
id, ``telegram.rate_limiter`` on as in the shipped config.yaml unless ``--no-rate-limiter``; the sender's
limits do not apply to ``answerCallbackQuery``) -> ``Runtime.open`` -> ``TelegramChannel`` attached and
started as ``vipbot run`` does (it polls the fake, which has nothing queued): stored update -> intake
worker -> ``to_inbound`` -> ``Dispatcher`` (one transaction: inbox claim, ``handlers.polls.commands.vote``, queued
toast) -> sender -> ``answerCallbackQuery``. The staff's ``/poll rating <question> --hours 2`` goes through
the dispatcher, then the N members are seeded with ``repos.members.register`` (after the poll, so that
publishing it queues nothing per member; the runtime's outbox is not started, nothing is pushed).

The presses: every member presses one rating button (callback data ``v1:vote:<poll> <1-5>``, a rating
drawn with a fixed seed) under the poll message in the group; ``--revotes`` of them (500) press a second,
different rating later in the stream (at least ``--gap`` presses after their first one, so that with
``concurrent_updates`` 64 the two presses of one member are not in flight together). The presses are stored
straight into the inbox with ``channel.intake.store([...])``, as webhook deliveries would be, in two runs:

* paced: one press stored every 1/``--rate`` s (100/s: 5,500 presses in 55 s), the arrival pattern of the
  issue;
* fast: all presses stored at once (one ``store``, one transaction), the pipeline's throughput.

The bot's calls go to the fake Bot API of ``tests/fakes/bot_api.py`` in a separate process
(``bench/fake_server.py``; Telegram's flood limits enforced, or off with ``--no-rate-limiter``). The bot's
HTTPXRequest is wrapped to note when each ``answerCallbackQuery`` returned (keyed by ``callback_query_id``).
Per run: answers/s = presses / (last answer - first put); latency p50/p99/max = the ``store`` call began
until the answer returned; "within 60 s" = last answer - first put <= 60 s.

Checks (exit status 1 when any fails): every press answered exactly once, with the rating it sent
("Your answer: <n>"), and the fake saw as many ``answerCallbackQuery``; exactly N rows in
``poll_answers`` (N distinct members); each member's stored rating equals the LAST rating they sent; the
count, average, satisfaction and distribution in the results text equal those computed here from the
sent ratings; ``/poll close`` says the same; a vote after closing is refused and changes nothing; every
press is done in the inbox; no 429 from the fake.

Timings after the presses: ``repos.polls.answers`` (loading the N answers), ``handlers.polls.commands.results``
(compute + render the PNG) ``--reps`` times (median, max; the process's first call is also shown, it pays
matplotlib's warm-up), split into the arithmetic (``poll_results.rating``) and the chart (``bar_chart``),
and the staff's ``/poll close 1`` end to end through ``Dispatcher.handle`` (close, results, chart, staff
announcement with the image, results posted to the groups).

Run from the repository root::

    .venv/bin/python bench/poll_answers.py [--members 5000] [--revotes 500] [--rate 100] [--reps 7]
        [--concurrency 64] [--seed 20260310] [--skip-paced] [--no-rate-limiter] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import re
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
from bot.telegram.intake import Intake  # noqa: E402
from handlers.core.messages import Identity, Inbound, Reply  # noqa: E402
from handlers.polls import results as poll_results  # noqa: E402
from handlers.polls.commands import results  # noqa: E402
from handlers.shared.charts import bar_chart  # noqa: E402
from tests.fakes.bot_api import FakeBotApi, callback_update, user  # noqa: E402

GROUP_ID, TOKEN = BENCH_GROUP, BENCH_TOKEN
FIRST_USER_ID = 600_000_000
POLL_ID = 1
QUESTION = "How was your visit?"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WITHIN_S = 60.0

log = logging.getLogger("bench.poll_answers")


# --- the workload ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Press:
    member: int
    """Index of the member (user id FIRST_USER_ID + member)."""
    rating: int
    revote: bool


def plan_presses(members: int, revotes: int, gap: int, seed: int) -> list[Press]:
    """One press per member in random order, plus `revotes` second presses with a different rating, each
    at least `gap` positions after that member's first press. The re-voters are drawn among the members
    whose first press comes at least `gap` before the end of the first presses (only when too few do, the
    others too: their second press may then come closer; ``min_gap`` tells)."""
    rng = random.Random(seed)
    order = list(range(members))
    rng.shuffle(order)
    first = {m: rng.randint(1, 5) for m in order}
    keyed: list[tuple[float, Press]] = [(float(pos), Press(m, first[m], False)) for pos, m in enumerate(order)]
    position = {m: pos for pos, m in enumerate(order)}
    count = min(revotes, members)
    eligible = [m for m in range(members) if position[m] + gap <= members]
    chosen = rng.sample(eligible, min(count, len(eligible)))
    if len(chosen) < count:
        rest = [m for m in range(members) if position[m] + gap > members]
        chosen += rng.sample(rest, count - len(chosen))
    for m in chosen:
        earliest = min(position[m] + gap, members)
        key = rng.uniform(earliest, max(earliest, members) + revotes * 0.1) + 0.5
        keyed.append((key, Press(m, rng.choice([r for r in range(1, 6) if r != first[m]]), True)))
    keyed.sort(key=lambda item: item[0])
    return [press for _, press in keyed]


def min_gap(presses: list[Press]) -> int | None:
    """The fewest presses between a member's first and second press (None without re-votes)."""
    first: dict[int, int] = {}
    gaps = []
    for index, press in enumerate(presses):
        if press.member in first:
            gaps.append(index - first[press.member])
        else:
            first[press.member] = index
    return min(gaps, default=None)


def last_ratings(presses: list[Press]) -> dict[int, int]:
    """What each member sent last: the rating that must be stored."""
    final: dict[int, int] = {}
    for press in presses:
        final[press.member] = press.rating
    return final


def build_update_data(presses: list[Press]) -> list[dict[str, Any]]:
    """The presses as Bot API updates (distinct update ids and callback query ids) under a group message."""
    ids = FakeBotApi(token=TOKEN)  # only its id counters; never started
    return [
        callback_update(ids, GROUP_ID, user(FIRST_USER_ID + p.member), f"v1:vote:{POLL_ID} {p.rating}", update_id=i + 1)
        for i, p in enumerate(presses)
    ]


# --- what the fake Bot API reports (computed in its process) -------------------------------------------
def poll_stats(api: FakeBotApi) -> dict[str, Any]:
    """``GET /control/stats`` of this benchmark: calls per method, 429 answers, the server's CPU seconds."""
    return {
        "methods": dict(Counter(call.method for call in api.calls)),
        "refused_429": sum(1 for call in api.calls if call.status == 429),
        "cpu_seconds": time.process_time(),
    }


# --- instrumentation ------------------------------------------------------------------------------------
class Recorder(AnswerRecorder):
    """Times per callback query id: stored, answer returned (and the answer's text)."""


# --- one run --------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    mode: str
    members: int
    presses: int
    target_rate: float | None
    feed_seconds: float
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    within_60s: bool
    bot_cpu_pct: float
    fake_cpu_pct: float
    completed: bool
    answered: int
    answers: int
    fake_answers: int
    wrong_answer_texts: int
    refused_429: int = 0
    load_average: tuple[float, float] = (0.0, 0.0)
    """The machine's 1-minute load average before and after the presses (other processes compete)."""
    db: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, Any] = field(default_factory=dict)
    shown: dict[str, Any] = field(default_factory=dict)
    load_answers_ms: list[float] = field(default_factory=list)
    results_ms: list[float] = field(default_factory=list)
    rating_ms: list[float] = field(default_factory=list)
    chart_ms: list[float] = field(default_factory=list)
    png_bytes: int = 0
    close_ms: float = 0.0
    problems: list[str] = field(default_factory=list)


async def drive(
    intake: Intake, updates: list[dict[str, Any]], recorder: Recorder, rate: float | None, wait_s: float
) -> tuple[float, float, float, bool]:
    """Store the presses in the inbox (paced at `rate` per second, one ``store`` each, or all in one) and wait,
    bounded, for every answer. Returns (time of the first store, feed seconds, CPU seconds of this process,
    completed)."""
    feed_end = 0.0

    async def feed() -> None:
        nonlocal feed_end
        start = time.perf_counter()
        if rate is None:
            for update in updates:
                recorder.put_at[str(update["callback_query"]["id"])] = start
            await intake.store(updates)
        else:
            for index, update in enumerate(updates):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                recorder.put_at[str(update["callback_query"]["id"])] = time.perf_counter()
                await intake.store([update])
        feed_end = time.perf_counter()
        await recorder.all_answered.wait()

    t0, cpu, completed = await timed_run(feed(), wait_s)
    return t0, (feed_end or time.perf_counter()) - t0, cpu, completed


async def create_poll(runtime: Runtime, channel: TelegramChannel) -> None:
    """The staff's ``/poll rating ... --hours 2`` in the VIP group, through the dispatcher."""
    msg = staff_inbound(f"/poll rating {QUESTION} --hours 2", "telegram:update:bench-poll")
    said = "\n".join(r.text for r in await runtime.dispatcher.handle(msg, channel))
    if f"Poll #{POLL_ID} posted" not in said:
        raise RuntimeError(f"creating the poll failed: {said!r}")


def expected_summary(final: dict[int, int]) -> dict[str, Any]:
    """The results computed here, independently of handlers.polls.results."""
    values = list(final.values())
    total = len(values)
    return {
        "count": total,
        "sum": sum(values),
        "average": f"{sum(values) / total:.2f}" if total else "0.00",
        "satisfaction": f"{round(100 * sum(1 for v in values if v >= 4) / total) if total else 0}%",
        "distribution": {star: sum(1 for v in values if v == star) for star in range(1, 6)},
    }


_COUNT = re.compile(r"(\d+) answered")
_AVERAGE = re.compile(r"Average (\d+\.\d\d), satisfaction \(4-5 stars\) (\d+%)")
_DISTRIBUTION = re.compile(r"(\d)⭐×(\d+)")


def parse_summary(text: str) -> dict[str, Any]:
    """Count, average, satisfaction and distribution as the results text shows them."""
    count = _COUNT.search(text)
    average = _AVERAGE.search(text)
    return {
        "count": int(count.group(1)) if count else None,
        "average": average.group(1) if average else None,
        "satisfaction": average.group(2) if average else None,
        "distribution": {int(k): int(v) for k, v in _DISTRIBUTION.findall(text)},
    }


def summary_problems(what: str, shown: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("count", "average", "satisfaction", "distribution"):
        if shown.get(key) != expected[key]:
            problems.append(f"{what}: {key} {shown.get(key)!r}, expected {expected[key]!r}")
    return problems


def read_database(path: Path) -> dict[str, Any]:
    """What SQLite holds for the poll: answer rows, distinct members, each member's stored rating."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT i.external_id, a.answer FROM poll_answers a"
            " JOIN identities i ON i.member_id = a.member_id AND i.channel = 'telegram' WHERE a.poll_id = ?",
            (POLL_ID,),
        ).fetchall()
        return {
            "rows": int(conn.execute("SELECT COUNT(*) FROM poll_answers").fetchone()[0]),
            "poll_rows": int(
                conn.execute("SELECT COUNT(*) FROM poll_answers WHERE poll_id = ?", (POLL_ID,)).fetchone()[0]
            ),
            "members_answered": int(
                conn.execute(
                    "SELECT COUNT(DISTINCT member_id) FROM poll_answers WHERE poll_id = ?", (POLL_ID,)
                ).fetchone()[0]
            ),
            "stored": {int(ext) - FIRST_USER_ID: json.loads(answer) for ext, answer in rows},
            "state": conn.execute("SELECT state FROM polls WHERE id = ?", (POLL_ID,)).fetchone()[0],
        }
    finally:
        conn.close()


def inbox_pending(path: Path) -> int:
    """Stored Telegram updates not done (every press must be)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = "SELECT COUNT(*) FROM inbox WHERE key LIKE 'telegram:update:%' AND done_at IS NULL"
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def check_database(db: dict[str, Any], presses: list[Press]) -> tuple[dict[str, Any], list[str]]:
    """Exactly one row per member, holding the rating the member sent last."""
    final = last_ratings(presses)
    stored: dict[int, Any] = db.pop("stored")
    mismatched = sorted(m for m in final if stored.get(m) != final[m])
    db["rating_mismatches"] = len(mismatched)
    revoters = {p.member for p in presses if p.revote}
    db["revoters"] = len(revoters)
    db["revoters_stored_last"] = sum(stored.get(m) == final[m] for m in revoters)
    problems = []
    members = len(final)
    if db["rows"] != members or db["poll_rows"] != members or db["members_answered"] != members:
        problems.append(
            f"poll_answers: {db['rows']} rows ({db['poll_rows']} for the poll, {db['members_answered']} members),"
            f" expected {members}"
        )
    if mismatched:
        sample = ", ".join(f"member {m}: stored {stored.get(m)!r}, sent last {final[m]}" for m in mismatched[:5])
        problems.append(f"{len(mismatched)} members whose stored rating is not their last one ({sample})")
    return db, problems


async def time_results(runtime: Runtime, reps: int, r: RunResult) -> tuple[str, bytes]:
    """Load the answers and time ``results()`` (and its two halves) `reps` times; returns the last output."""
    deps = runtime.deps
    answers = []
    for _ in range(reps):
        t = time.perf_counter()
        async with deps.db.read() as repos:
            found = await repos.polls.get(POLL_ID)
            answers = await repos.polls.answers(POLL_ID)
        r.load_answers_ms.append((time.perf_counter() - t) * 1000)
    assert found is not None
    text, png = "", b""
    for _ in range(reps):
        t = time.perf_counter()
        text, png = results(deps, found, answers)
        r.results_ms.append((time.perf_counter() - t) * 1000)
    values = [int(a.value) for a in answers if a.complete]
    for _ in range(reps):
        t = time.perf_counter()
        rated = poll_results.rating(values)
        r.rating_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        bar_chart("x", [str(k) for k in rated.distribution], list(rated.distribution.values()))
        r.chart_ms.append((time.perf_counter() - t) * 1000)
    return text, png


async def close_poll(runtime: Runtime, channel: TelegramChannel, r: RunResult) -> list[Reply]:
    msg = staff_inbound(f"/poll close {POLL_ID}", "telegram:update:bench-close")
    t = time.perf_counter()
    replies = await runtime.dispatcher.handle(msg, channel)
    r.close_ms = (time.perf_counter() - t) * 1000
    return replies


async def late_vote(runtime: Runtime, channel: TelegramChannel) -> str:
    """A member's press after closing, through the dispatcher."""
    sender = Identity("telegram", str(FIRST_USER_ID), f"user{FIRST_USER_ID}", None)
    msg = Inbound("telegram", str(GROUP_ID), sender, "", True, "telegram:update:bench-late", "2",
                  button=f"v1:vote:{POLL_ID} 3")  # fmt: skip
    return "\n".join(reply.text for reply in await runtime.dispatcher.handle(msg, channel))


async def run(
    server: FakeServer, presses: list[Press], data: list[dict[str, Any]], args: argparse.Namespace, mode: str
) -> RunResult:
    rate = args.rate if mode == "paced" else None
    wait_s = args.timeout or (len(data) / rate + 60 if rate else max(120.0, len(data) / 20))
    final = last_ratings(presses)
    with tempfile.TemporaryDirectory(prefix="vipbot-bench-") as tmp:
        db_path = Path(tmp) / "vip.db"
        settings = bench_settings(
            db_path, server.base_url, rate_limiter=not args.no_rate_limiter, concurrency=args.concurrency
        )
        runtime = await Runtime.open(settings)
        try:
            channel = TelegramChannel(settings, runtime.dispatcher)
            await channel.attach(runtime)
            await create_poll(runtime, channel)
            await seed_members(runtime, FIRST_USER_ID, args.members)
            recorder = Recorder(len(data))
            await instrument(channel.application, recorder.on_success)
            assert channel.intake is not None
            server.reset()
            fake_before = server.stats()["cpu_seconds"]
            load_before = os.getloadavg()[0]
            await channel.start()
            try:
                t0, feed_s, cpu, completed = await drive(channel.intake, data, recorder, rate, wait_s)
                await channel.idle(timeout=10.0)
                await asyncio.sleep(0.2)  # let a stray double answer, if any, arrive before counting
            finally:
                await channel.stop()
            stats = server.stats()
            end = max(recorder.answered_at.values(), default=t0)
            seconds = max(end - t0, 1e-9)
            latencies = [(at - recorder.put_at[qid]) * 1000 for qid, at in recorder.answered_at.items()]
            wrong = sum(
                f"Your answer: {press.rating}." not in recorder.texts.get(str(item["callback_query"]["id"]), "")
                for press, item in zip(presses, data, strict=True)
            )
            r = RunResult(
                mode=mode,
                members=args.members,
                presses=len(data),
                target_rate=rate,
                feed_seconds=feed_s,
                seconds=seconds,
                rate=len(recorder.answered_at) / seconds,
                p50_ms=percentile(latencies, 0.50),
                p99_ms=percentile(latencies, 0.99),
                max_ms=max(latencies, default=float("nan")),
                within_60s=completed and seconds <= WITHIN_S,
                bot_cpu_pct=100 * cpu / seconds,
                fake_cpu_pct=100 * (stats["cpu_seconds"] - fake_before) / seconds,
                completed=completed,
                answered=len(recorder.answered_at),
                answers=recorder.answers,
                fake_answers=int(stats["methods"].get("answerCallbackQuery", 0)),
                wrong_answer_texts=wrong,
                refused_429=int(stats.get("refused_429", 0)),
                load_average=(load_before, os.getloadavg()[0]),
            )
            if not completed:
                r.problems.append(f"timed out after {wait_s:.0f} s with {r.answered}/{r.presses} presses answered")
            if r.answered != r.presses or r.answers != r.presses or r.fake_answers != r.presses:
                r.problems.append(
                    f"{r.presses} presses: {r.answered} answered, {r.answers} answers, fake saw {r.fake_answers}"
                )
            if wrong:
                r.problems.append(f"{wrong} answers do not repeat the rating that was pressed")
            if r.refused_429:
                r.problems.append(f"the fake answered 429 {r.refused_429} times")
            pending = inbox_pending(db_path)
            if pending:
                r.problems.append(f"{pending} presses not done in the inbox")

            r.db, db_problems = check_database(read_database(db_path), presses)
            r.problems.extend(db_problems)
            r.expected = expected_summary(final)
            text, png = await time_results(runtime, args.reps, r)
            r.png_bytes = len(png)
            r.shown = parse_summary(text)
            r.problems.extend(summary_problems("results()", r.shown, r.expected))
            if not png.startswith(PNG_MAGIC):
                r.problems.append("results() chart is not a PNG")

            replies = await close_poll(runtime, channel, r)
            closed = replies[0] if replies else Reply("")
            r.problems.extend(summary_problems("/poll close", parse_summary(closed.text), r.expected))
            if closed.image is None or not closed.image.startswith(PNG_MAGIC):
                r.problems.append("/poll close did not return the chart")
            refused = await late_vote(runtime, channel)
            after = read_database(db_path)
            if "is closed" not in refused or after["state"] != "closed" or after["poll_rows"] != args.members:
                r.problems.append(f"after closing: late vote said {refused!r}, state {after['state']}")
            elif after["stored"] != final:
                r.problems.append("a vote after closing changed a stored rating")
        finally:
            await runtime.close()
    return r


# --- reporting ------------------------------------------------------------------------------------------
HEADER = (
    f"{'mode':<12} {'presses':>7} {'answers/s':>9} {'wall s':>7} {'feed s':>7} {'p50':>8} {'p99':>8} {'max':>8}"
    f" {'<=60s':>5} {'bot cpu':>7} {'fake cpu':>8} {'load':>9}"
)


def row(r: RunResult) -> str:
    label = f"paced {r.target_rate:g}/s" if r.target_rate else "fast"
    return (
        f"{label:<12} {r.presses:7d} {r.rate:9.0f} {r.seconds:7.2f} {r.feed_seconds:7.2f} {r.p50_ms:6.1f}ms"
        f" {r.p99_ms:6.1f}ms {r.max_ms:6.0f}ms {'yes' if r.within_60s else 'NO':>5} {r.bot_cpu_pct:6.0f}%"
        f" {r.fake_cpu_pct:7.0f}% {r.load_average[0]:4.1f}-{r.load_average[1]:<4.1f}"
    )


def ms_stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"median {statistics.median(values):7.1f} ms, max {max(values):7.1f} ms"


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    presses = plan_presses(args.members, args.revotes, args.gap, args.seed)
    data = build_update_data(presses)
    final = last_ratings(presses)
    revoters = sum(p.revote for p in presses)
    modes = ["fast"] if args.skip_paced else ["paced", "fast"]
    server = FakeServer.start(TOKEN, stats=poll_stats, limits=not args.no_rate_limiter)
    out: list[RunResult] = []
    try:
        print(
            f"fake Bot API pid {server.process.pid} on 127.0.0.1:{server.port}; bot pid {os.getpid()}; {os.cpu_count()}"
            f" CPUs; {args.members} members, {len(presses)} presses ({revoters} re-votes, gap >= {args.gap},"
            f" smallest {min_gap(presses)}),"
            f" seed {args.seed}, concurrent_updates {args.concurrency},"
            f" rate limiter and fake limits {'off' if args.no_rate_limiter else 'on'}"
        )
        print(HEADER)
        for mode in modes:
            result = await run(server, presses, data, args, mode)
            out.append(result)
            print(row(result), flush=True)
    finally:
        server.stop()

    expected = expected_summary(final)
    print(
        f"expected: {expected['count']} answers, average {expected['average']} (sum {expected['sum']}),"
        f" satisfaction {expected['satisfaction']}, distribution {expected['distribution']}"
    )
    failed = False
    first_results_ms = out[0].results_ms[0] if out and out[0].results_ms else float("nan")
    for r in out:
        d = r.db
        print(
            f"{r.mode}: answered {r.answered}/{r.presses} ({r.answers} answers, fake {r.fake_answers}), wrong texts"
            f" {r.wrong_answer_texts}; poll_answers {d.get('rows')} rows / {d.get('members_answered')} members,"
            f" stored != last sent: {d.get('rating_mismatches')} (re-voters holding their 2nd rating:"
            f" {d.get('revoters_stored_last')}/{d.get('revoters')}); results text: {r.shown.get('count')} answered,"
            f" average {r.shown.get('average')}, satisfaction {r.shown.get('satisfaction')}"
        )
        print(f"  load {r.members} answers   {ms_stats(r.load_answers_ms)}")
        print(f"  results() x{len(r.results_ms)}      {ms_stats(r.results_ms)}  (PNG {r.png_bytes} bytes)")
        print(f"    rating() only    {ms_stats(r.rating_ms)}")
        print(f"    bar_chart() only {ms_stats(r.chart_ms)}")
        print(f"  /poll close via dispatcher {r.close_ms:.1f} ms")
        for problem in r.problems:
            failed = True
            print(f"  FAIL: {problem}")
    print(f"first results() call in the process (matplotlib warm-up): {first_results_ms:.1f} ms")
    print("correctness: " + ("FAILED" if failed else "ok"))

    report = {
        "members": args.members,
        "presses": len(presses),
        "revotes": revoters,
        "gap": args.gap,
        "min_gap": min_gap(presses),
        "seed": args.seed,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "rate_limiter": not args.no_rate_limiter,
        "reps": args.reps,
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "expected": expected,
        "first_results_ms": first_results_ms,
        "runs": [asdict(r) for r in out],
        "correct": not failed,
    }
    return (1 if failed else 0), report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=5_000, help="members, one rating press each")
    parser.add_argument("--revotes", type=int, default=500, help="members who press a second, different rating")
    parser.add_argument("--gap", type=int, default=500, help="a re-vote comes at least this many presses later")
    parser.add_argument("--rate", type=float, default=100.0, help="presses per second in the paced run")
    parser.add_argument("--concurrency", type=int, default=64, help="telegram.concurrent_updates")
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the results() timing")
    parser.add_argument("--seed", type=int, default=20260310, help="seed of the ratings and the order")
    parser.add_argument("--skip-paced", action="store_true", help="only the as-fast-as-possible run")
    parser.add_argument("--no-rate-limiter", action="store_true",
                        help="telegram.rate_limiter false, and the fake's flood limits off")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds to wait for one run's answers")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.members < 1 or args.revotes < 0 or args.gap < 0 or args.reps < 1 or not args.rate > 0:
        parser.error("--members and --reps must be >= 1, --revotes and --gap >= 0, --rate > 0")
    if not 1 <= args.concurrency <= 1024:
        parser.error("--concurrency must be between 1 and 1024")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_in_process_bench(bench, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
