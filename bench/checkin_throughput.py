"""Check-in throughput through the whole Telegram pipeline, against a bare python-telegram-bot handler.

Each pipeline runs as its own process polling its own fake Bot API (``tests/fakes/bot_api.py``, spawned by
``bench/fake_server.py`` on 127.0.0.1 with its flood limits off), and gets the same workload: N distinct
members each send ``/checkin`` in their PRIVATE chat with the bot (one reply each; in a group the check-in
board would answer instead). The fake queues the N updates for ``getUpdates`` in one go (or paced, with
``--pace``) and the process takes them by long polling, as in production.

* full: ``python -m bot.app.cli run`` (``vipbot run``) configured through the environment, with
  ``telegram.rate_limiter: false``: getUpdates -> inbox (SQLite) -> intake workers -> ``to_inbound`` ->
  ``Dispatcher`` (one transaction: inbox claim, member, check-in, ledger, queued reply) -> sender ->
  ``sendMessage``; sent rows are deleted in batches.
* bare: a plain ``ApplicationBuilder`` Application polling with PTB's Updater, one TypeHandler that replies
  "ok" quoting the message. Its ``concurrent_updates`` is ``--concurrency``, the number of replies in flight,
  which for the full pipeline is ``delivery.concurrency`` (its updates are handled by ``--workers`` intake
  workers, ``telegram.concurrent_updates``, which never wait for a send).

Measured black-box, the same way for both:

* rate: N / (last member's reply arrived at the fake - first update pushed), both on the fake's clock;
* latency: from the update being pushed (queued in the fake for getUpdates) to the reply's sendMessage
  arriving at the fake, per member; p50 / p99. With everything pushed at once it is mostly backlog;
  ``--pace R`` pushes R updates a second instead, for the latency below saturation;
* CPU per update: utime + stime of the pipeline's process (all its threads, from /proc) between "pushed"
  and "every member answered", divided by N; the fake's own CPU is reported as a share of the wall time;
* ratios full / bare of the rate and of the CPU per update, from the same invocation (medians when
  ``--runs`` > 1). Goal: the full pipeline's CPU per update under 2x the bare handler's.

Correctness (non-zero exit otherwise): exactly one reply per member for both pipelines, no 429; for the
full pipeline the expected reply text, a clean exit on SIGTERM, and in its SQLite file exactly one
check-in, one ledger entry and the right balance per member, every update done in the inbox, no reply
left in ``outbound``.

Run from the repository root::

    .venv/bin/python bench/checkin_throughput.py [--members 10000] [--runs 1] [--workers 8] [--concurrency 32]
        [--pace 0] [--pipelines bare,full] [--py-spy PREFIX] [--json FILE]

``--py-spy PREFIX`` records each pipeline's process with py-spy (``.venv/bin/pip install py-spy``) while it
works, 200 samples/s, as collapsed stacks (``--format raw``) in PREFIX.full, PREFIX.bare (PREFIX.full.2 ...
for later runs). A profiled run is slower: py-spy pauses the process for each sample and takes CPU itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import child_env, clean_environment, percentile, python_executable, stop_child  # noqa: E402
from bench.fake_server import FakeServer  # noqa: E402
from tests.fakes.bot_api import FakeBotApi  # noqa: E402

FIRST_USER_ID = 500_000_000
TOKEN = "123456:BENCH-TOKEN"
PIPELINES = ("bare", "full")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POLL_S = 0.05
CURVE_S = 0.5

log = logging.getLogger("bench.checkin")


# --- in the fake's process ----------------------------------------------------------------------------------
def checkin_stats(api: FakeBotApi) -> dict[str, Any]:
    """``GET /control/stats``: per chat the successful sendMessage calls and the first one's arrival, when each
    chat's update was pushed, the top reply texts, calls per method and 429 answers."""
    from bench.fake_server import PUSH_LOG

    replies: dict[int, list[float]] = {}
    texts: Counter[str] = Counter()
    for call in api.calls:
        if call.method == "sendMessage" and call.status == 200:
            chat = int(call.params.get("chat_id", 0) or 0)
            seen = replies.setdefault(chat, [0, call.at])
            seen[0] += 1
            texts[str(call.params.get("text", ""))] += 1
    pushed: dict[int, float] = {}
    for chat, _, at in PUSH_LOG:
        pushed.setdefault(chat, at)
    return {
        "replies": [[chat, int(n), at] for chat, (n, at) in replies.items()],
        "pushed": [[chat, at] for chat, at in pushed.items()],
        "texts": texts.most_common(3),
        "methods": dict(Counter(c.method for c in api.calls)),
        "refused_429": sum(1 for c in api.calls if c.status == 429),
    }


# --- the bare pipeline's process ----------------------------------------------------------------------------
def bare_child(base_url: str, concurrency: int) -> int:
    """A plain PTB Application polling ``base_url``: one TypeHandler replying "ok" quoting the message."""
    from telegram import ReplyParameters, Update
    from telegram.ext import ApplicationBuilder, ContextTypes, TypeHandler

    async def reply(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update) or update.message is None:
            return
        message = update.message
        await context.bot.send_message(
            chat_id=message.chat_id,
            text="ok",
            reply_parameters=ReplyParameters(message_id=message.message_id, allow_sending_without_reply=True),
        )

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    application = ApplicationBuilder().token(TOKEN).base_url(base_url).concurrent_updates(concurrency).build()
    application.add_handler(TypeHandler(Update, reply))
    application.run_polling(allowed_updates=Update.ALL_TYPES, poll_interval=0.0, timeout=25)  # SIGTERM stops it
    return 0


# --- processes and their CPU --------------------------------------------------------------------------------
def _stat_cpu(path: Path) -> float:
    fields = path.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) the process has used so far."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread, keyed "tid name" (the event loop's thread is the one whose tid is the pid)."""
    found: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            found[f"{task.name} {name}"] = _stat_cpu(task / "stat")
        except OSError:
            continue  # the thread ended meanwhile
    return found


def open_sockets(pid: int) -> int:
    """How many sockets the process has open (its Bot API connections, mostly)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            continue
    return count


def bare_command(server: FakeServer, args: argparse.Namespace) -> list[str]:
    return [python_executable(), str(Path(__file__).resolve()), "--bare-child", server.base_url,
            "--concurrency", str(args.concurrency)]  # fmt: skip


def full_env(server: FakeServer, db_path: Path, args: argparse.Namespace) -> dict[str, str]:
    env = child_env()
    env.update(
        TELEGRAM_BOT_TOKEN=server.token,
        VIPBOT_TELEGRAM__BASE_URL=server.base_url,
        VIPBOT_TELEGRAM__RATE_LIMITER="false",  # Telegram's limits would measure Telegram, not our code
        VIPBOT_TELEGRAM__GROUPS="[]",
        VIPBOT_TELEGRAM__CONCURRENT_UPDATES=str(args.workers),
        VIPBOT_DELIVERY__CONCURRENCY=str(args.concurrency),
        VIPBOT_STORAGE__PATH=str(db_path),
        VIPBOT_LOCALE="en",
        VIPBOT_LOG_LEVEL="INFO",
    )
    return env


def start_py_spy(pid: int, out: str) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(ROOT / ".venv" / "bin" / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found (.venv/bin/pip install py-spy): not profiling")
        return None
    command = [exe, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", out]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        _, err = spy.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if spy.returncode not in (0, -signal.SIGINT):
        print(f"py-spy exited {spy.returncode}: {err.decode(errors='replace')[-500:]}")


# --- one run of one pipeline ----------------------------------------------------------------------------------
@dataclass
class RunResult:
    pipeline: str
    members: int
    seconds: float = 0.0
    rate: float = 0.0
    latency_p50_ms: float = float("nan")
    latency_p99_ms: float = float("nan")
    cpu_seconds: float = 0.0
    cpu_ms_per_update: float = 0.0
    loop_thread_ms_per_update: float = 0.0
    cpu_pct: float = 0.0
    fake_cpu_pct: float = 0.0
    completed: bool = False
    replied_members: int = 0
    send_message_calls: int = 0
    lost: int = 0
    doubled: int = 0
    refused_429: int = 0
    exit_code: int | None = None
    max_sockets: int = 0
    """The most sockets the process had open at once during the run (sampled every POLL_S)."""
    cpu_curve: list[tuple[int, float]] = field(default_factory=list)
    """(members answered, the process's CPU seconds since the push), every CURVE_S."""
    cpu_ms_by_quarter: list[float] = field(default_factory=list)
    """CPU per answered update within each quarter of the run (growth with the database's size shows here)."""
    threads: dict[str, float] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)
    reply_texts: list[tuple[str, int]] = field(default_factory=list)
    db: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def wait_ready(server: FakeServer, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> str | None:
    """Until the process has long-polled a few times (started, connected, idle); what went wrong, if anything."""
    deadline = time.monotonic() + timeout
    while server.progress()["methods"].get("getUpdates", 0) < 3:
        if proc.poll() is not None:
            return f"the process exited with {proc.returncode} before polling"
        if time.monotonic() > deadline:
            return f"the process did not poll within {timeout:.0f} s"
        time.sleep(POLL_S)
    time.sleep(0.5)
    return None


def wait_answered(server: FakeServer, proc: subprocess.Popen[bytes], result: RunResult, timeout: float) -> bool:
    """Until every member's chat got a reply (True), the process died or the time ran out (False)."""
    deadline = time.monotonic() + timeout
    cpu0 = process_cpu(proc.pid)
    noted = 0.0
    while (answered := server.progress()["chats"]) < result.members:
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        result.max_sockets = max(result.max_sockets, open_sockets(proc.pid))
        if time.monotonic() - noted >= CURVE_S:
            noted = time.monotonic()
            result.cpu_curve.append((answered, round(process_cpu(proc.pid) - cpu0, 3)))
        time.sleep(POLL_S)
    result.cpu_curve.append((answered, round(process_cpu(proc.pid) - cpu0, 3)))
    return True


def by_quarter(curve: list[tuple[int, float]], members: int) -> list[float]:
    """CPU ms per update answered in each quarter of the members (from the samples nearest the quarter marks)."""
    marks = [(0, 0.0)]
    for quarter in (1, 2, 3, 4):
        target = members * quarter / 4
        marks.append(min(curve, key=lambda point: abs(point[0] - target), default=(0, 0.0)))
    return [round(1000 * (b[1] - a[1]) / (b[0] - a[0]), 2) if b[0] > a[0] else float("nan") for a, b in pairwise(marks)]


def run_pipeline(pipeline: str, args: argparse.Namespace, spy_out: str | None) -> RunResult:
    members = args.members
    user_ids = [FIRST_USER_ID + i for i in range(members)]
    wait_s = args.timeout or max(120.0, members / 20)
    result = RunResult(pipeline, members)
    server = FakeServer.start(TOKEN, stats=checkin_stats, limits=False)
    try:
        with tempfile.TemporaryDirectory(prefix=f"vipbot-bench-{pipeline}-") as tmp:
            db_path = Path(tmp) / "vip.db"
            log_path = Path(tmp) / "process.log"
            with log_path.open("wb") as log_file:
                if pipeline == "full":
                    command, env = [python_executable(), "-m", "bot.app.cli", "run"], full_env(server, db_path, args)
                else:
                    command, env = bare_command(server, args), child_env()
                proc = subprocess.Popen(command, cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                        stderr=subprocess.STDOUT)  # fmt: skip
            spy = None
            try:
                not_ready = wait_ready(server, proc)
                if not_ready:
                    result.problems.append(not_ready)
                else:
                    if spy_out:
                        spy = start_py_spy(proc.pid, spy_out)
                        time.sleep(1.5)  # py-spy attaches
                    measure(server, proc, result, user_ids, args.pace, wait_s)
            finally:
                if spy is not None:
                    stop_py_spy(spy)
                result.exit_code = stop_child(proc, timeout=60)
            summarise(result, server.stats(), set(user_ids))
            result.cpu_ms_by_quarter = by_quarter(result.cpu_curve, members)
            if result.exit_code != 0:
                result.problems.append(f"the process exited with {result.exit_code}")
            if pipeline == "full":
                check_full(result, db_path)
            if result.problems:
                tail = log_path.read_text(errors="replace").splitlines()[-15:]
                result.problems.append("process log, last lines:\n    " + "\n    ".join(tail))
    finally:
        server.stop()
    return result


def measure(server: FakeServer, proc: subprocess.Popen[bytes], result: RunResult, user_ids: list[int], pace: float,
            wait_s: float) -> None:  # fmt: skip
    """Push every member's /checkin, wait for the replies, note the CPU the process and the fake used meanwhile."""
    members = result.members
    threads0 = thread_cpu(proc.pid)
    cpu0, fake0 = process_cpu(proc.pid), process_cpu(server.process.pid)
    t0 = time.monotonic()
    server.push_messages([(uid, uid, "/checkin") for uid in user_ids], per_second=pace)
    result.completed = wait_answered(server, proc, result, wait_s)
    if proc.poll() is None:
        cpu1, fake1, threads1 = process_cpu(proc.pid), process_cpu(server.process.pid), thread_cpu(proc.pid)
        t1 = time.monotonic()
        result.cpu_seconds = cpu1 - cpu0
        result.threads = {k: round(v - threads0.get(k, 0.0), 3) for k, v in threads1.items()}
        result.fake_cpu_pct = 100 * (fake1 - fake0) / max(t1 - t0, 1e-9)
        loop = [v for k, v in result.threads.items() if k.split()[0] == str(proc.pid)]
        result.loop_thread_ms_per_update = 1000 * sum(loop) / members


def summarise(result: RunResult, stats: dict[str, Any], expected: set[int]) -> None:
    members = result.members
    pushed = {int(chat): at for chat, at in stats["pushed"]}
    replies = {int(chat): (int(n), at) for chat, n, at in stats["replies"]}
    answered = [chat for chat in replies if chat in expected]
    result.replied_members = len(answered)
    result.send_message_calls = sum(n for n, _ in replies.values())
    result.lost = len(expected - set(replies))
    result.doubled = sum(n - 1 for n, _ in replies.values() if n > 1) + len(set(replies) - expected)
    result.refused_429 = int(stats["refused_429"])
    result.methods = dict(stats["methods"])
    result.reply_texts = [(str(text), int(n)) for text, n in stats["texts"]]
    if pushed and answered:
        start = min(pushed.values())
        end = max(replies[chat][1] for chat in answered)
        result.seconds = max(end - start, 1e-9)
        result.rate = len(answered) / result.seconds
        latency = [(replies[chat][1] - pushed[chat]) * 1000 for chat in answered if chat in pushed]
        result.latency_p50_ms = percentile(latency, 0.50)
        result.latency_p99_ms = percentile(latency, 0.99)
    if result.seconds:
        result.cpu_pct = 100 * result.cpu_seconds / result.seconds
    result.cpu_ms_per_update = 1000 * result.cpu_seconds / members
    if not result.completed:
        result.problems.append(f"not finished: {result.replied_members}/{members} members answered")
    if result.lost or result.doubled or result.send_message_calls != members:
        result.problems.append(
            f"sendMessage {result.send_message_calls} for {members} members: lost {result.lost}, "
            f"doubled {result.doubled}"
        )
    if result.refused_429:
        result.problems.append(f"{result.refused_429} calls answered 429 (the fake's limits should be off)")


def check_full(result: RunResult, db_path: Path) -> None:
    points = base_points()
    expected_text = f"Checked in! +{points} points"
    if not result.reply_texts or not all(text.startswith(expected_text) for text, _ in result.reply_texts):
        result.problems.append(f"unexpected reply texts: {result.reply_texts}")
    if not db_path.exists():
        result.problems.append(f"no database at {db_path}")
        return
    result.db, problems = check_database(db_path, result.members, points)
    result.problems.extend(problems)


def base_points() -> int:
    from bot.app.config import Settings

    return Settings(locale="en").checkin.base_points  # first check-in of a new member: streak 1, no bonus


def check_database(path: Path, members: int, points: int) -> tuple[dict[str, int], list[str]]:
    """Count what the run left in SQLite: one check-in and one ledger entry per member, every update done,
    no reply left unsent."""
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
            "inbox_done": one("SELECT COUNT(*) FROM inbox WHERE done_at IS NOT NULL"),
            "inbox_pending": one("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL"),
            "outbound_left": one("SELECT COUNT(*) FROM outbound"),
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
    if db["inbox_done"] != members or db["inbox_pending"]:
        problems.append(f"inbox: {db['inbox_done']} updates done, {db['inbox_pending']} not, expected {members} done")
    if db["outbound_left"]:
        problems.append(f"{db['outbound_left']} replies left in outbound")
    return db, problems


# --- reporting ------------------------------------------------------------------------------------------------
HEADER = (
    f"{'run':>3} {'pipeline':<8} {'rate/s':>8} {'wall s':>7} {'lat p50':>9} {'lat p99':>9}"
    f" {'cpu/upd':>9} {'loop/upd':>9} {'cpu':>6} {'fake cpu':>8} {'sockets':>7}"
)
KEYS = ("rate", "seconds", "latency_p50_ms", "latency_p99_ms", "cpu_ms_per_update", "loop_thread_ms_per_update",
        "cpu_pct", "fake_cpu_pct", "max_sockets")  # fmt: skip


def row(label: str, pipeline: str, r: dict[str, float]) -> str:
    return (
        f"{label:>3} {pipeline:<8} {r['rate']:8.0f} {r['seconds']:7.2f} {r['latency_p50_ms']:7.0f}ms"
        f" {r['latency_p99_ms']:7.0f}ms {r['cpu_ms_per_update']:7.2f}ms {r['loop_thread_ms_per_update']:7.2f}ms"
        f" {r['cpu_pct']:5.0f}% {r['fake_cpu_pct']:7.0f}% {r['max_sockets']:7.0f}"
    )


def figures(r: RunResult) -> dict[str, float]:
    return {key: float(getattr(r, key)) for key in KEYS}


def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    pipelines = [p for p in PIPELINES if p in args.pipelines]
    print(
        f"bench pid {os.getpid()}; {args.members} members, /checkin in private chats; {args.runs} run(s) of"
        f" {' then '.join(pipelines)}; full: workers {args.workers}, delivery.concurrency {args.concurrency};"
        f" bare: concurrent_updates {args.concurrency}; rate limiter off, fake limits off;"
        f" {'pushed at ' + str(args.pace) + '/s' if args.pace else 'all pushed at once'}"
    )
    one, five, fifteen = os.getloadavg()
    print(f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs")
    print(HEADER)
    results: list[tuple[int, RunResult]] = []
    for index in range(1, args.runs + 1):
        for pipeline in pipelines:
            spy_out = f"{args.py_spy}.{pipeline}{'' if index == 1 else f'.{index}'}" if args.py_spy else None
            result = run_pipeline(pipeline, args, spy_out)
            results.append((index, result))
            print(row(str(index), pipeline, figures(result)), flush=True)
            if result.threads:
                busiest = sorted(result.threads.items(), key=lambda kv: -kv[1])[:4]
                print("      threads (CPU s): " + ", ".join(f"{k} {v:.2f}" for k, v in busiest), end="; ")
                print("CPU ms/update by quarter: " + " ".join(f"{q:.2f}" for q in result.cpu_ms_by_quarter))

    medians = {
        p: {k: statistics.median(figures(r)[k] for _, r in results if r.pipeline == p) for k in KEYS} for p in pipelines
    }
    if args.runs > 1:
        for pipeline in pipelines:
            print(row("med", pipeline, medians[pipeline]))
    report: dict[str, Any] = {
        "members": args.members,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "pace": args.pace,
        "runs": args.runs,
        "python": sys.version.split()[0],
        "results": [{"run": i, **asdict(r)} for i, r in results],
        "medians": medians,
        "cpu_goal": 2.0,
    }
    failed = False
    for index, r in results:
        line = f"run {index} {r.pipeline}: {r.replied_members}/{r.members} members answered, sendMessage" \
               f" {r.send_message_calls}, lost {r.lost}, doubled {r.doubled}, 429s {r.refused_429}"  # fmt: skip
        if r.db:
            d = r.db
            line += (
                f"; check-ins {d['checkins']} ({d['checkin_members']} members), ledger sum {d['ledger_sum']},"
                f" balance mismatches {d['balance_mismatches']}, inbox done {d['inbox_done']}"
                f" (pending {d['inbox_pending']}), outbound left {d['outbound_left']}"
            )
        print(line)
        for problem in r.problems:
            failed = True
            print(f"  FAIL: {problem}")
    if "bare" in medians and "full" in medians:
        rate_ratio = medians["full"]["rate"] / medians["bare"]["rate"]
        cpu_ratio = medians["full"]["cpu_ms_per_update"] / medians["bare"]["cpu_ms_per_update"]
        print(f"ratio full/bare updates/s: {rate_ratio:.2f} (the old build's README: 0.70)")
        print(f"ratio full/bare CPU per update: {cpu_ratio:.2f} (goal < 2){'' if cpu_ratio < 2 else '  -- ABOVE GOAL'}")
        report.update(ratio_rate=rate_ratio, ratio_cpu_per_update=cpu_ratio)
    print("correctness: " + ("FAILED" if failed else "ok"))
    report["correct"] = not failed
    return (1 if failed else 0), report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=10_000, help="distinct members, one /checkin each")
    parser.add_argument("--runs", type=int, default=1, help="rounds of bare then full; medians when > 1")
    parser.add_argument("--workers", type=int, default=8, help="the full pipeline's telegram.concurrent_updates")
    parser.add_argument("--concurrency", type=int, default=32,
                        help="replies in flight: the full pipeline's delivery.concurrency, the bare one's"
                        " concurrent_updates")  # fmt: skip
    parser.add_argument("--pace", type=float, default=0.0, help="push this many updates a second (0: all at once)")
    parser.add_argument("--pipelines", default="bare,full", help="which pipelines to run (comma-separated)")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds to wait for one run's replies")
    parser.add_argument("--py-spy", metavar="PREFIX", help="profile each process into PREFIX.<pipeline> (raw)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--bare-child", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    if args.members < 1 or args.runs < 1 or not 1 <= args.concurrency <= 512 or not 1 <= args.workers <= 256:
        parser.error("--members and --runs must be >= 1, --concurrency 1..512, --workers 1..256")
    if not args.pipelines or set(args.pipelines) - set(PIPELINES):
        parser.error(f"--pipelines takes {', '.join(PIPELINES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare_child:
        return bare_child(args.bare_child, args.concurrency)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clean_environment()  # a developer's VIPBOT_* settings must not reach the processes measured
    status, report = bench(args)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
