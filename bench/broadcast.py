"""Broadcast throughput and crash safety: one ``/announce`` to N private recipients under a 30 msg/s limit.

Setup, for each run: the fake Bot API of ``tests/fakes/bot_api.py`` runs in its own process
(``bench/fake_server.py``) on 127.0.0.1 with ``rate_limit_per_second`` set, so ``sendMessage`` answers
HTTP 429 (``retry_after`` 1) above that many accepted messages in any sliding second. A fresh SQLite file
is migrated and seeded with the project's own code (``Database.open`` + ``members.register(...,
private_chat=True)``) with N members who opened a private chat (positive user ids; the first of them is
also the one staff user). The bot is the real thing, a subprocess ``python -m bot.app.cli run`` configured only
through the environment (token, base URL, database path, staff id, no VIP groups, locale en; its working
directory is a temporary folder, so no ``config.yaml`` is read). The broadcast is triggered the real way:
``/announce <unique text>`` from the staff user in their private chat, queued on the fake's ``getUpdates``;
the bot must answer "queued for N recipients".

* clean: wait (bounded) until every recipient's chat has the text, then stop the bot with SIGTERM.
  Achieved rate = (accepted - 1) / (last - first accepted arrival), both timestamps taken by the fake.
* kill: the same on a fresh database and fake, but once about half the copies were accepted the bot is
  SIGKILLed and started again on the same database; then wait until every chat has it or nothing more
  arrives for ``--stall`` seconds. The rate is reported over the whole span and without the downtime
  (the gap between the last copy accepted before the kill and the first one after the restart, both
  on the fake's clock).

Ground truth is the fake's record of accepted (HTTP 200) ``sendMessage`` calls carrying the text, per chat:
lost = recipients with no copy, duplicates = recipients with more than one. The database is read after the
bot stopped for the deliveries by state; rows left 'sending' by the kill become 'uncertain' and are never
sent again, so they are reported separately, split into "the fake did get it" and "it did not" (= lost).

Exit status 1 when a copy is lost or doubled, the broadcast did not complete, or the clean run's rate is
below 90 % of the limit.

Run from the repository root::

    .venv/bin/python bench/broadcast.py [--recipients 5000] [--rate-limit 30] [--skip-kill] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import child_env, spawn_bot, stop_child  # noqa: E402
from bench.fake_server import FakeServer  # noqa: E402
from storage.db.database import Database  # noqa: E402

TOKEN = "123456:BENCH-TOKEN"
FIRST_USER_ID = 600_000_000
STAFF_ID = FIRST_USER_ID  # the staff user is recipient 0 (a member with a private chat, like the others)
RATE_GOAL = 0.90
POLL_S = 0.25
QUEUED = re.compile(r"queued for (\d+)")


# --- the bot process ---------------------------------------------------------------------------------------
def bot_env(server: FakeServer, db_path: Path, bot_rate: float | None) -> dict[str, str]:
    env = child_env()
    env.update(
        TELEGRAM_BOT_TOKEN=server.token,
        VIPBOT_TELEGRAM__BASE_URL=server.base_url,
        VIPBOT_STORAGE__PATH=str(db_path),
        VIPBOT_TELEGRAM__GROUPS="[]",
        VIPBOT_STAFF__TELEGRAM=f"[{STAFF_ID}]",
        VIPBOT_LOCALE="en",
        VIPBOT_LOG_LEVEL="INFO",
    )
    if bot_rate:
        env["VIPBOT_DELIVERY__TELEGRAM_PER_SECOND"] = str(bot_rate)
    return env


@dataclass
class Bot:
    """`python -m bot.app.cli run` as a child process, its stderr in a log file."""

    env: dict[str, str]
    workdir: Path
    log_path: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def current(self) -> subprocess.Popen[bytes] | None:
        return self.processes[-1] if self.processes else None

    def alive(self) -> bool:
        proc = self.current
        return proc is not None and proc.poll() is None

    def start(self) -> None:
        banner = f"--- start #{len(self.processes) + 1} ---\n"
        self.processes.append(spawn_bot(self.workdir, self.env, self.log_path, banner=banner))

    def kill(self) -> None:
        proc = self.current
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int | None:
        proc = self.current
        return None if proc is None else stop_child(proc, timeout)

    def kill_all(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# --- setup ---------------------------------------------------------------------------------------------------
def seed(db_path: Path, recipients: int) -> None:
    """Migrate a fresh database and register N members who can be messaged privately (one transaction)."""

    async def go() -> None:
        db = await Database.open(db_path)
        try:
            now = int(time.time())
            async with db.transaction() as repos:
                for i in range(recipients):
                    uid = FIRST_USER_ID + i
                    await repos.members.register("telegram", str(uid), f"member{i}", None, now, private_chat=True)
        finally:
            await db.close()

    asyncio.run(go())


def wait_until(check: Callable[[], Any], timeout: float, what: str, bot: Bot | None = None) -> Any:
    """Poll `check` until it returns something truthy; RuntimeError on timeout or when the bot died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if bot is not None and not bot.alive():
            raise RuntimeError(f"the bot exited while waiting for {what}:\n{bot.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def polls(server: FakeServer) -> int:
    return int(server.stats()["methods"].get("getUpdates", 0))


def start_and_wait_polling(bot: Bot, server: FakeServer) -> None:
    before = polls(server)
    bot.start()
    wait_until(lambda: polls(server) > before, 90, "the bot to poll getUpdates", bot)


def trigger(server: FakeServer, bot: Bot, text: str) -> int:
    """Send ``/announce`` as the staff user; returns N from the bot's "queued for N" answer."""
    server.push_message(STAFF_ID, STAFF_ID, f"/announce {text}")

    def answer() -> str | None:
        for message in server.messages(STAFF_ID):
            if message["status"] == 200 and QUEUED.search(message["text"]):
                return str(message["text"])
        return None

    try:
        reply = wait_until(answer, 60, "the answer to /announce", bot)
    except RuntimeError as exc:
        seen = [m["text"][:120] for m in server.messages(STAFF_ID)]
        raise RuntimeError(f"{exc}; the staff chat got {seen}") from exc
    match = QUEUED.search(reply)
    assert match is not None
    return int(match.group(1))


@dataclass
class Progress:
    accepted: int
    chats: int
    refused_429: int
    outcome: str


def follow(
    server: FakeServer,
    bot: Bot,
    text: str,
    expected: int,
    *,
    label: str,
    timeout: float,
    stall: float,
    stop_at: int | None = None,
) -> Progress:
    """Watch the fake until `stop_at` copies, every chat served, no progress for `stall` s, or `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    last_change = started
    last_accepted = -1
    last_print = started
    while True:
        snap = server.broadcast(text)
        now = time.monotonic()
        if snap["accepted"] != last_accepted:
            last_accepted = snap["accepted"]
            last_change = now
        outcome = ""
        if stop_at is not None and snap["accepted"] >= stop_at:
            outcome = "reached"
        elif snap["chats"] >= expected:
            outcome = "complete"
        elif now > deadline:
            outcome = "timeout"
        elif now - last_change > stall:
            outcome = "stalled"
        elif not bot.alive():
            outcome = "bot exited"
        if outcome:
            return Progress(snap["accepted"], snap["chats"], snap["refused_429"], outcome)
        if now - last_print >= 15:
            last_print = now
            span = (snap["last_at"] or 0) - (snap["first_at"] or 0)
            rate = (snap["accepted"] - 1) / span if span > 0 else 0.0
            print(
                f"  [{label}] {snap['accepted']}/{expected} accepted, {snap['refused_429']} x 429, {rate:.1f}/s",
                flush=True,
            )
        time.sleep(POLL_S)


# --- results -------------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    run: str
    recipients: int
    queued: int = 0
    outcome: str = ""
    accepted: int = 0
    chats: int = 0
    lost: int = 0
    duplicates: int = 0
    unexpected_chats: int = 0
    refused_429: int = 0
    span_s: float = 0.0
    rate: float = 0.0
    pct_of_limit: float = 0.0
    downtime_s: float = 0.0
    rate_ex_downtime: float = 0.0
    pct_ex_downtime: float = 0.0
    wall_s: float = 0.0
    accepted_at_kill: int | None = None
    killed_at: float | None = None
    """The fake's clock (its ``time.monotonic()``) right after the killed bot was reaped."""
    db_states: dict[str, int] = field(default_factory=dict)
    retried_rows: int = 0
    uncertain: int = 0
    uncertain_delivered: int = 0
    uncertain_not_delivered: int = 0
    queued_replies: int = 0
    bot_exit_codes: list[int | None] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def read_db(db_path: Path) -> tuple[dict[str, int], int, list[str]]:
    """Deliveries by state, rows retried (attempts > 1), and the targets of 'uncertain' rows."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        states = {str(s): int(n) for s, n in conn.execute("SELECT state, COUNT(*) FROM deliveries GROUP BY state")}
        retried = int(conn.execute("SELECT COUNT(*) FROM deliveries WHERE attempts > 1").fetchone()[0])
        uncertain = [str(r[0]) for r in conn.execute("SELECT target FROM deliveries WHERE state = 'uncertain'")]
    finally:
        conn.close()
    return states, retried, uncertain


def rate_of(times: list[float]) -> tuple[float, float]:
    """(span seconds, messages per second) over sorted arrival times."""
    if len(times) < 2:
        return 0.0, 0.0
    span = times[-1] - times[0]
    return span, (len(times) - 1) / span if span > 0 else 0.0


def settle(result: RunResult, server: FakeServer, bot: Bot, text: str, db_path: Path, limit: float) -> None:
    """Stop the bot, then fill `result` from the fake's per-chat counts and the database."""
    result.bot_exit_codes = [p.returncode for p in bot.processes[:-1]] + [bot.terminate()]
    snap = server.broadcast(text, full=True)
    per_chat = {int(chat): int(n) for chat, n in snap["per_chat"].items()}
    expected = {FIRST_USER_ID + i for i in range(result.recipients)}
    result.accepted = snap["accepted"]
    result.chats = snap["chats"]
    result.refused_429 = snap["refused_429"]
    result.lost = sum(1 for chat in expected if per_chat.get(chat, 0) == 0)
    result.duplicates = sum(1 for chat in expected if per_chat.get(chat, 0) > 1)
    result.unexpected_chats = sum(1 for chat in per_chat if chat not in expected)
    times = sorted(float(t) for t in snap["times"])
    result.span_s, result.rate = rate_of(times)
    result.pct_of_limit = 100 * result.rate / limit
    cut = bisect.bisect_right(times, result.killed_at) if result.killed_at is not None else 0
    if 2 <= cut <= len(times) - 2:
        # Before the kill / after the restart; the gap between them is the downtime.
        result.downtime_s = times[cut] - times[cut - 1]
        active = (times[cut - 1] - times[0]) + (times[-1] - times[cut])
        result.rate_ex_downtime = (len(times) - 2) / active if active > 0 else 0.0
        result.pct_ex_downtime = 100 * result.rate_ex_downtime / limit
    result.queued_replies = sum(1 for m in server.messages(STAFF_ID) if m["status"] == 200 and QUEUED.search(m["text"]))
    states, retried, uncertain = read_db(db_path)
    result.db_states = states
    result.retried_rows = retried
    result.uncertain = len(uncertain)
    result.uncertain_delivered = sum(1 for t in uncertain if per_chat.get(int(t), 0) > 0)
    result.uncertain_not_delivered = result.uncertain - result.uncertain_delivered
    if result.queued != result.recipients:
        result.problems.append(f"/announce queued {result.queued}, expected {result.recipients}")
    if result.outcome != "complete":
        result.problems.append(f"broadcast {result.outcome} with {result.chats}/{result.recipients} chats")
    if result.lost or result.duplicates or result.unexpected_chats:
        result.problems.append(
            f"lost {result.lost}, duplicated {result.duplicates}, unexpected chats {result.unexpected_chats}"
        )
    if result.queued_replies != 1:
        result.problems.append(f"{result.queued_replies} 'queued' answers to one /announce")


def run_once(args: argparse.Namespace, kill: bool) -> RunResult:
    label = "kill" if kill else "clean"
    result = RunResult(run=label, recipients=args.recipients)
    text = f"Broadcast benchmark {label} {uuid.uuid4().hex[:12]}"
    timeout = args.timeout or max(120.0, 2.5 * args.recipients / args.rate_limit + 60)
    with tempfile.TemporaryDirectory(prefix=f"vipbot-broadcast-{label}-") as tmp_name:
        tmp = Path(tmp_name)
        db_path = tmp / "vip.db"
        seed(db_path, args.recipients)
        server = FakeServer.start(TOKEN, rate_limit=args.rate_limit)
        bot = Bot(bot_env(server, db_path, args.bot_rate), tmp, tmp / "bot.log")
        try:
            start_and_wait_polling(bot, server)
            t0 = time.monotonic()
            result.queued = trigger(server, bot, text)
            if kill:
                half = max(1, int(args.recipients * args.kill_at))
                progress = follow(
                    server, bot, text, args.recipients, label=label, timeout=timeout, stall=args.stall, stop_at=half
                )
                if progress.outcome != "reached":
                    result.outcome = f"before the kill: {progress.outcome}"
                else:
                    bot.kill()
                    snap = server.broadcast(text)
                    result.accepted_at_kill = snap["accepted"]
                    result.killed_at = snap["now"]
                    print(
                        f"  [{label}] SIGKILL at {result.accepted_at_kill} accepted; restarting on the same database",
                        flush=True,
                    )
                    start_and_wait_polling(bot, server)
                    remaining = max(timeout - (time.monotonic() - t0), 60.0)
                    progress = follow(
                        server, bot, text, args.recipients, label=label, timeout=remaining, stall=args.stall
                    )
                    result.outcome = progress.outcome
            else:
                progress = follow(server, bot, text, args.recipients, label=label, timeout=timeout, stall=args.stall)
                result.outcome = progress.outcome
            result.wall_s = time.monotonic() - t0
            time.sleep(args.grace)  # a late duplicate would arrive now
            settle(result, server, bot, text, db_path, args.rate_limit)
            if result.problems:
                print(f"  [{label}] bot log tail:\n{bot.log_tail(15)}", flush=True)
        except Exception:
            print(f"  [{label}] failed; bot log tail:\n{bot.log_tail(30)}", flush=True)
            raise
        finally:
            bot.kill_all()
            server.stop()
    return result


# --- reporting -------------------------------------------------------------------------------------------------
HEADER = (
    f"{'run':<6} {'queued':>6} {'accepted':>8} {'lost':>5} {'dup':>4} {'uncertain':>9} {'429s':>5}"
    f" {'span s':>7} {'rate/s':>7} {'% limit':>8} {'down s':>7} {'rate ex-down':>12} {'wall s':>7}"
)


def row(r: RunResult) -> str:
    uncertain = f"{r.uncertain}({r.uncertain_not_delivered})" if r.uncertain else "0"
    down = f"{r.downtime_s:7.1f}" if r.downtime_s else f"{'-':>7}"
    ex = f"{r.rate_ex_downtime:5.1f} {r.pct_ex_downtime:5.1f}%" if r.rate_ex_downtime else f"{'-':>12}"
    return (
        f"{r.run:<6} {r.queued:>6} {r.accepted:>8} {r.lost:>5} {r.duplicates:>4} {uncertain:>9} {r.refused_429:>5}"
        f" {r.span_s:7.1f} {r.rate:7.2f} {r.pct_of_limit:7.1f}% {down} {ex:>12} {r.wall_s:7.1f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--recipients", type=int, default=5000, help="members who get a private copy")
    parser.add_argument("--rate-limit", type=float, default=30.0, help="sendMessage/s the fake accepts")
    parser.add_argument("--skip-kill", action="store_true", help="only the clean run")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction accepted when the bot is killed")
    parser.add_argument("--bot-rate", type=float, default=None, help="override delivery.telegram_per_second")
    parser.add_argument("--timeout", type=float, default=0.0, help="seconds one run may take (default from N)")
    parser.add_argument("--stall", type=float, default=45.0, help="give up after this long without progress")
    parser.add_argument("--grace", type=float, default=3.0, help="seconds to wait for late copies at the end")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.recipients < 2 or args.rate_limit <= 0 or not 0 < args.kill_at < 1:
        parser.error("--recipients >= 2, --rate-limit > 0 and 0 < --kill-at < 1")

    started = time.monotonic()
    bot_rate = f"{args.bot_rate:g}/s" if args.bot_rate else "default"
    print(f"{args.recipients} recipients, fake limit {args.rate_limit:g}/s, bot pacing {bot_rate}", flush=True)
    results = []
    for kill in (False,) if args.skip_kill else (False, True):
        results.append(run_once(args, kill))
    total = time.monotonic() - started

    print(HEADER)
    for r in results:
        print(row(r))
    print("uncertain: rows found 'sending' after the kill, in brackets those the fake never got (= lost)")
    failed = False
    for r in results:
        states = ", ".join(f"{k} {v}" for k, v in sorted(r.db_states.items()))
        extra = f"; killed at {r.accepted_at_kill} accepted" if r.accepted_at_kill is not None else ""
        print(
            f"{r.run}: {r.outcome}; db deliveries: {states}; rows retried {r.retried_rows};"
            f" uncertain {r.uncertain} (fake got {r.uncertain_delivered}, not {r.uncertain_not_delivered})"
            f"; bot exit codes {r.bot_exit_codes}{extra}"
        )
        for problem in r.problems:
            failed = True
            print(f"  FAIL: {problem}")
    clean = results[0]
    rate_ok = clean.pct_of_limit >= 100 * RATE_GOAL
    if not rate_ok:
        failed = True
    print(
        f"clean rate {clean.rate:.2f}/s = {clean.pct_of_limit:.1f}% of {args.rate_limit:g}/s"
        f" (goal >= {100 * RATE_GOAL:.0f}%){'' if rate_ok else '  -- BELOW GOAL'}"
    )
    print(f"total wall {total:.1f} s; result: {'FAILED' if failed else 'ok'}")
    if args.json:
        report = {
            "recipients": args.recipients,
            "rate_limit": args.rate_limit,
            "bot_rate": args.bot_rate,
            "rate_goal": RATE_GOAL,
            "results": [asdict(r) for r in results],
            "total_wall_s": total,
            "ok": not failed,
        }
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
