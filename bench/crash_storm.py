"""Crash storm: the real ``vipbot run`` killed 20 times (mostly SIGKILL, some SIGTERM) while it works through
9,000 updates from 3,000 members; nothing may be lost and nothing doubled.

Setup: the fake Bot API of ``tests/fakes/bot_api.py`` (flood limits off) runs in its own process, spawned
with ``bench/fake_server.py``'s plumbing (``spawn_fake``, ``serve_until_stopped``) and this script's own
control API (``/control/load``, ``/control/trap``, ``/control/state``, ``/control/ids``, ``/control/stop``).
The bot is a subprocess ``python -m bot.app.cli run`` configured through the environment only (its working
directory is a temporary folder, so no ``config.yaml`` is read): polling the fake, one VIP group, the rate
limiter off, every other setting at its default (8 workers, prefetch 500).

The burst (seeded ``random.Random``): every member types 签到 in the group, asks ``/points`` (a third of
them in their private chat, the rest in the group) and checks in again, by the board's ``v1:checkin:``
button (60 %) or ``/checkin`` (40 %); 3 updates a member, shuffled, all queued at once for ``getUpdates``.

The stops: one in each of 20 equal slices of the first 90 % of the burst, at a random point (inbox rows
done), each triggered one of three ways: that many updates done (read from the SQLite file through a
read-only connection), or, inside the fake's process, the very instant a ``getUpdates`` hands out a batch
(the bot never gets it) or confirms stored ones (they may not be handled yet), armed from the process's
first poll or from the slice's point. Four stops are SIGTERM (exit code 0 expected, the time to exit
measured), the rest SIGKILL. After each stop the bot starts again on the same database; after the last
one it runs until every update is confirmed and done and every queued reply is sent, then stops.

Then the stop time under a backlog: 1,000 more check-ins (new members) are stored straight into the inbox,
as a stop leaves them; the bot starts, and once it has handled the first one it gets SIGTERM. Reported:
the backlog at the signal, the time to exit, the exit code, what stayed stored; then it starts again and
must handle all of them.

Reported from the fake's records and the database: updates served by the fake, confirmed, handled (done in
the inbox), lost (served and confirmed but not done), doubled (effects counted twice: a member with two
check-ins that day, two check-in bookings, an idempotency key twice), members whose cached balance differs
from their ledger's sum, queued replies never sent. Exit status 1 when anything was lost or doubled, a
balance is off, the run did not complete, or a SIGTERM did not exit with 0 within 10 s.

Run from the repository root::

    .venv/bin/python bench/crash_storm.py [--members 3000] [--kills 20] [--sigterms 4] [--backlog 1000]
        [--seed N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import ChildBot, child_env, spawn_bot  # noqa: E402
from bench.fake_server import ControlHandler, SpawnedFake, serve_until_stopped, spawn_fake  # noqa: E402
from storage.db.database import Database  # noqa: E402
from tests.fakes.bot_api import FakeBotApi, callback_update, message_update, user  # noqa: E402

TOKEN = "123456:STORM-TOKEN"
GROUP = -100770077
FIRST_MEMBER = 700_000_000
BACKLOG_FIRST_ID = 50_000_000  # update ids of the stored backlog: far from the fake's own
STOP_LIMIT_S = 10.0
POLL_S = 0.005


# --- the fake, in its own process ---------------------------------------------------------------------------
@dataclass
class StormApi(FakeBotApi):
    """The fake Bot API with a trap: when armed for ``event``, it sends ``signum`` to ``pid`` the instant a
    getUpdates confirms stored updates ("confirm", before anything is answered) or hands out a non-empty
    batch ("served", before it is sent)."""

    trap: dict[str, Any] | None = None
    fired: list[dict[str, Any]] = field(default_factory=list)
    pushed: list[int] = field(default_factory=list)

    def _spring(self, event: str) -> None:
        trap = self.trap
        if trap is not None and trap["event"] == event:
            self.trap = None
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(trap["pid"]), int(trap["signal"]))
            self.fired.append({"event": event, "pid": trap["pid"], "at": time.monotonic()})

    async def take_updates(self, offset: int, timeout: float, limit: int = 100) -> list[dict[str, Any]]:
        if self.trap is not None and any(u["update_id"] < offset for u in self._updates):
            self._spring("confirm")
        served = await super().take_updates(offset, timeout, limit)
        if served:
            self._spring("served")
        return served


class StormControl(ControlHandler):
    api: StormApi

    def get(self, action: str) -> None:
        api = self.api
        if action == "state":
            self.finish(
                {
                    "pushed": len(api.pushed),
                    "served": len(api.served_ids),
                    "confirmed": len(api.confirmed_ids),
                    "fired": api.fired,
                    "armed": api.trap is not None,
                }
            )
        elif action == "ids":
            self.finish(
                {"pushed": api.pushed, "served": sorted(api.served_ids), "confirmed": sorted(api.confirmed_ids)}
            )
        elif action == "calls":
            self.finish({"methods": dict(Counter(c.method for c in api.calls if c.status == 200))})
        else:
            self.send_error(404)

    def post(self, action: str) -> None:
        api = self.api
        body = json.loads(self.request.body or b"{}")
        if action == "load":
            for uid, kind, text in body["items"]:
                chat = int(uid) if kind == "private" else GROUP
                sender = user(int(uid), f"m{uid}")
                update = callback_update(api, chat, sender, text) if kind == "button" else message_update(
                    api, chat, sender, text
                )  # fmt: skip
                api.pushed.append(int(update["update_id"]))
                api.push_update(update)
            self.finish({"pushed": len(api.pushed)})
            return
        if action == "trap":
            api.trap = body if body.get("pid") else None
        elif action == "stop":
            self.stop.set()
        else:
            self.send_error(404)
            return
        self.finish({"ok": True})


async def _serve(conn: Connection, token: str) -> None:
    api = await StormApi(token=token, limits=False).start()
    await serve_until_stopped(api, StormControl, conn)


def storm_server_main(conn: Connection, token: str) -> None:
    """Entry point of the spawned fake's process."""
    asyncio.run(_serve(conn, token))


# --- the bot process ------------------------------------------------------------------------------------------
@dataclass
class Bot(ChildBot):
    """The bot child, started again and again; `offset` is where this start's output begins in the log."""

    offset: int = 0
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = spawn_bot(self.workdir, self.env, self.log_path, banner=f"===== start {self.starts} =====\n")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def this_run(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def wait_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.this_run():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the bot exited ({self.proc.returncode}) before logging {text!r}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not log {text!r} within {timeout:.0f} s")
            time.sleep(0.01)

    def stop(self, signum: signal.Signals, sent: bool = False) -> tuple[int, float]:
        """Signal (unless the fake already did) and wait for the exit: (return code, seconds)."""
        assert self.proc is not None
        began = time.monotonic()
        if not sent and self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            code = -999
        return code, time.monotonic() - began

    def kill_now(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def bot_env(server: SpawnedFake, db: Path) -> dict[str, str]:
    env = child_env()
    env.update(
        TELEGRAM_BOT_TOKEN=TOKEN,
        VIPBOT_TELEGRAM__BASE_URL=f"http://127.0.0.1:{server.port}/bot",
        VIPBOT_TELEGRAM__GROUPS=json.dumps([GROUP]),
        VIPBOT_TELEGRAM__RATE_LIMITER="false",
        VIPBOT_STORAGE__PATH=str(db),
        VIPBOT_LOCALE="en",
        VIPBOT_LOG_LEVEL="INFO",
        VIPBOT_CHECKIN__ROLLOVER_HOUR=str((datetime.now(ZoneInfo("Asia/Shanghai")).hour + 12) % 24),
    )  # the business day changes 12 hours from now: one check-in per member, however long the run
    return env


# --- the database, read-only ----------------------------------------------------------------------------------
def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return conn.execute(sql, params).fetchall()


def scalar(db: Path, sql: str) -> int:
    return int(query(db, sql)[0][0])


def done_count(db: Path) -> int:
    return scalar(db, "SELECT COUNT(*) FROM inbox WHERE done_at IS NOT NULL")


def settled(db: Path) -> tuple[int, int, int]:
    """(inbox rows done, inbox rows, queued replies not yet sent)."""
    row = query(
        db,
        "SELECT (SELECT COUNT(*) FROM inbox WHERE done_at IS NOT NULL), (SELECT COUNT(*) FROM inbox),"
        " (SELECT COUNT(*) FROM outbound WHERE held = 0)",
    )[0]
    return int(row[0]), int(row[1]), int(row[2])


def init_db(db: Path, backlog: list[dict[str, Any]] | None = None) -> None:
    """Migrate the database (first call) or store `backlog` updates in its inbox, not handled."""

    async def go() -> None:
        database = await Database.open(db)
        try:
            if backlog:
                items = [(f"telegram:update:{u['update_id']}", json.dumps(u, ensure_ascii=False)) for u in backlog]
                async with database.transaction() as repos:
                    await repos.inbox.store("telegram", items, int(time.time()))
        finally:
            await database.close()

    asyncio.run(go())


# --- the plan -------------------------------------------------------------------------------------------------
def burst_items(rng: random.Random, members: int) -> list[list[Any]]:
    """[user id, kind ("text", "private", "button"), text or data], 3 per member, shuffled."""
    items: list[list[Any]] = []
    for n in range(members):
        uid = FIRST_MEMBER + n
        items.append([uid, "text", "签到"])
        items.append([uid, "private" if rng.random() < 1 / 3 else "text", "/points"])
        items.append([uid, "button", "v1:checkin:"] if rng.random() < 0.6 else [uid, "text", "/checkin"])
    rng.shuffle(items)
    return items


@dataclass
class Stop:
    signal: str
    trigger: str
    armed: str
    target: int
    fired: str = ""
    done_at_stop: int = 0
    code: int = 0
    seconds: float = 0.0


def plan_stops(rng: random.Random, kills: int, sigterms: int, total: int) -> list[Stop]:
    terms = set(rng.sample(range(kills), sigterms))
    width = total * 0.9 / kills
    plan = []
    for n in range(kills):
        trigger = rng.choice(["done", "done", "served", "confirm"])
        armed = "" if trigger == "done" else rng.choice(["first poll", "at target"])
        target = rng.randint(int(n * width) + 1, int((n + 1) * width))
        plan.append(Stop("SIGTERM" if n in terms else "SIGKILL", trigger, armed, target))
    return plan


# --- a run ----------------------------------------------------------------------------------------------------
@dataclass
class Report:
    seed: int
    members: int
    updates: int
    stops: list[Stop] = field(default_factory=list)
    served: int = 0
    confirmed: int = 0
    handled: int = 0
    lost: int = 0
    lost_ids: list[int] = field(default_factory=list)
    never_served: int = 0
    never_confirmed: int = 0
    inbox_extra: int = 0
    checkins: int = 0
    members_without_checkin: int = 0
    doubled_checkins: int = 0
    doubled_bookings: int = 0
    duplicate_idem_keys: int = 0
    doubled: int = 0
    balance_mismatches: int = 0
    replies_unsent: int = 0
    get_updates_calls: int = 0
    messages_sent: int = 0
    button_presses: int = 0
    callback_answers: int = 0
    backlog: dict[str, Any] = field(default_factory=dict)
    log_errors: list[str] = field(default_factory=list)
    """ERROR lines and tracebacks in the bot's log (reported, not a failure by themselves)."""
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def storm(args: argparse.Namespace, tmp: Path, server: SpawnedFake, report: Report) -> None:
    rng = random.Random(args.seed)
    db = tmp / "storm.db"
    init_db(db)
    bot = Bot(bot_env(server, db), tmp, tmp / "bot.log")
    items = burst_items(rng, args.members)
    total = len(items)
    server.control("load", "POST", body={"items": items})
    began = time.monotonic()
    try:
        for n, stop in enumerate(plan_stops(rng, args.kills, args.sigterms, total), 1):
            signum = signal.SIGTERM if stop.signal == "SIGTERM" else signal.SIGKILL
            fired_before = len(server.control("state")["fired"])
            bot.start()
            if signum is signal.SIGTERM:  # a SIGTERM before the handler is installed just ends the process
                bot.wait_log("Application started")
            trap = {"pid": bot.pid, "event": stop.trigger, "signal": int(signum)}
            if stop.trigger != "done":  # a long poll of the killed process may still be answered before
                bot.wait_log("telegram: polling as")
                if stop.armed == "first poll":
                    server.control("trap", "POST", body=trap)
            armed = stop.armed == "first poll"
            deadline = time.monotonic() + 120
            while True:
                state = server.control("state")
                if len(state["fired"]) > fired_before:
                    stop.fired = state["fired"][-1]["event"]
                    break
                done = done_count(db)
                if stop.trigger == "done" and done >= stop.target:
                    break
                if stop.trigger != "done" and not armed and done >= stop.target:
                    server.control("trap", "POST", body=trap)
                    armed = True
                if stop.trigger != "done" and done >= min(stop.target + 100, total):
                    break  # no batch came: stop anyway
                if bot.proc is not None and bot.proc.poll() is not None:
                    raise RuntimeError(f"the bot exited by itself ({bot.proc.returncode})")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stop {n}: the moment ({stop.trigger} at {stop.target}) never came")
                time.sleep(POLL_S)
            server.control("trap", "POST", body={})
            stop.code, stop.seconds = bot.stop(signum, sent=bool(stop.fired))
            stop.done_at_stop = done_count(db)
            report.stops.append(stop)
            moment = "armed from the first poll" if stop.armed == "first poll" else f"at {stop.target} done"
            print(
                f"  stop {n:2}: {stop.signal} on {stop.fired or stop.trigger} ({moment}) -> exit {stop.code}"
                f" after {stop.seconds:.2f} s; {stop.done_at_stop}/{total} done",
                flush=True,
            )
        bot.start()
        pushed = set(server.control("ids")["pushed"])

        def finished() -> bool:
            done, rows, unsent = settled(db)
            return server.control("state")["confirmed"] >= len(pushed) and done == rows == total and unsent == 0

        wait_for(finished, 300, "every update confirmed and done, every reply sent")
        code, seconds = bot.stop(signal.SIGTERM)
        report.stops.append(Stop("SIGTERM", "end", "", total, "", done_count(db), code, seconds))
        report.wall_s = time.monotonic() - began
    except Exception:
        print(f"failed; bot log tail:\n{bot.tail()}", flush=True)
        bot.kill_now()
        raise
    account(db, server, report, items)
    backlog_stop(args, tmp, server, db, report)
    lines = bot.log_path.read_text(errors="replace").splitlines()
    report.log_errors = [line for line in lines if " ERROR " in line or line.startswith("Traceback")]


def account(db: Path, server: SpawnedFake, report: Report, items: list[list[Any]]) -> None:
    ids = server.control("ids")
    pushed, served, confirmed = set(ids["pushed"]), set(ids["served"]), set(ids["confirmed"])
    inbox = {int(k.rsplit(":", 1)[1]): done for k, done in query(db, "SELECT key, done_at FROM inbox")}
    done = {i for i, at in inbox.items() if at is not None}
    report.served, report.confirmed = len(served), len(confirmed)
    report.handled = len(done & served)
    lost = sorted((served & confirmed) - done)
    report.lost, report.lost_ids = len(lost), lost[:20]
    report.never_served = len(pushed - served)
    report.never_confirmed = len(served - confirmed)
    report.inbox_extra = len(set(inbox) - pushed)
    checkers = {int(uid) for uid, _, text in items if text in ("签到", "/checkin", "v1:checkin:")}
    per_member = Counter(
        int(r[0])
        for r in query(db, "SELECT i.external_id FROM checkins c JOIN identities i ON i.member_id = c.member_id")
    )
    report.checkins = sum(per_member.values())
    report.members_without_checkin = len(checkers - set(per_member))
    report.doubled_checkins = sum(n - 1 for n in per_member.values() if n > 1)
    bookings = scalar(db, "SELECT COUNT(*) FROM ledger WHERE reason = 'checkin'")
    report.doubled_bookings = max(0, bookings - report.checkins)
    report.duplicate_idem_keys = scalar(
        db, "SELECT COUNT(*) FROM (SELECT idem_key FROM ledger GROUP BY idem_key HAVING COUNT(*) > 1)"
    )
    report.doubled = report.doubled_checkins + report.doubled_bookings + report.duplicate_idem_keys
    report.balance_mismatches = scalar(
        db,
        "SELECT COUNT(*) FROM (SELECT m.id FROM members m LEFT JOIN ledger l ON l.member_id = m.id"
        " GROUP BY m.id HAVING m.balance <> COALESCE(SUM(l.delta), 0))",
    )
    report.replies_unsent = scalar(db, "SELECT COUNT(*) FROM outbound WHERE held = 0")
    methods = server.control("calls")["methods"]
    report.get_updates_calls = int(methods.get("getUpdates", 0))
    report.messages_sent = int(methods.get("sendMessage", 0)) + int(methods.get("editMessageText", 0))
    report.callback_answers = int(methods.get("answerCallbackQuery", 0))
    report.button_presses = sum(1 for _, kind, _ in items if kind == "button")
    if report.lost or report.members_without_checkin:
        report.problems.append(f"lost {report.lost} updates, {report.members_without_checkin} members' check-ins")
    if report.doubled:
        report.problems.append(f"doubled {report.doubled} effects")
    if report.never_served or report.never_confirmed or report.inbox_extra or report.handled != len(pushed):
        report.problems.append(
            f"incomplete: {report.never_served} never served, {report.never_confirmed} never confirmed,"
            f" {report.handled}/{len(pushed)} handled, {report.inbox_extra} unknown inbox rows"
        )
    if report.balance_mismatches:
        report.problems.append(f"{report.balance_mismatches} cached balances differ from their ledger")
    if report.replies_unsent:
        report.problems.append(f"{report.replies_unsent} queued replies never sent")
    for stop in report.stops:
        if stop.signal == "SIGTERM" and (stop.code != 0 or stop.seconds >= STOP_LIMIT_S):
            report.problems.append(f"SIGTERM ({stop.trigger}) exit {stop.code} after {stop.seconds:.1f} s")


def backlog_stop(args: argparse.Namespace, tmp: Path, server: SpawnedFake, db: Path, report: Report) -> None:
    """SIGTERM with `args.backlog` stored updates waiting, then a restart that must handle them all."""
    builder = FakeBotApi(token=TOKEN)
    builder._update_ids = iter(range(BACKLOG_FIRST_ID, BACKLOG_FIRST_ID + args.backlog))  # type: ignore[assignment]
    first = FIRST_MEMBER + args.members
    updates = [
        message_update(builder, GROUP, user(uid, f"m{uid}"), "签到") for uid in range(first, first + args.backlog)
    ]
    init_db(db, updates)
    bot = Bot(bot_env(server, db), tmp, tmp / "bot.log")
    before_done = done_count(db)
    try:
        bot.start()
        bot.wait_log("Application started")
        wait_for(lambda: done_count(db) > before_done, 60, "the first stored update handled")
        pending = scalar(db, "SELECT COUNT(*) FROM inbox WHERE done_at IS NULL")
        code, seconds = bot.stop(signal.SIGTERM)
        left = scalar(db, "SELECT COUNT(*) FROM inbox WHERE done_at IS NULL")
        bot.start()
        wait_for(lambda: (lambda d, r, u: d == r and u == 0)(*settled(db)), 120, "the backlog handled")
        code2, seconds2 = bot.stop(signal.SIGTERM)
    except Exception:
        print(f"failed; bot log tail:\n{bot.tail()}", flush=True)
        bot.kill_now()
        raise
    keys = {f"telegram:update:{u['update_id']}" for u in updates}
    done_rows = {r[0] for r in query(db, "SELECT key FROM inbox WHERE done_at IS NOT NULL")}
    checked = scalar(
        db,
        f"SELECT COUNT(*) FROM checkins c JOIN identities i ON i.member_id = c.member_id"
        f" WHERE CAST(i.external_id AS INTEGER) BETWEEN {first} AND {first + args.backlog - 1}",
    )
    report.backlog = {
        "stored": args.backlog,
        "pending_at_sigterm": pending,
        "exit_code": code,
        "stop_seconds": round(seconds, 3),
        "left_stored": left,
        "handled_after_restart": len(keys & done_rows),
        "checkins": checked,
        "second_stop": [code2, round(seconds2, 3)],
    }
    if code != 0 or seconds >= STOP_LIMIT_S:
        report.problems.append(f"SIGTERM with {pending} pending: exit {code} after {seconds:.1f} s")
    if len(keys & done_rows) != args.backlog or checked != args.backlog:
        report.problems.append(f"backlog: {len(keys & done_rows)} done, {checked} check-ins of {args.backlog}")
    mismatched = scalar(
        db,
        "SELECT COUNT(*) FROM (SELECT m.id FROM members m LEFT JOIN ledger l ON l.member_id = m.id"
        " GROUP BY m.id HAVING m.balance <> COALESCE(SUM(l.delta), 0))",
    )
    if mismatched:
        report.problems.append(f"after the backlog: {mismatched} cached balances differ from their ledger")


def print_report(report: Report) -> None:
    kills = sum(1 for s in report.stops if s.trigger != "end" and s.signal == "SIGKILL")
    terms = [s for s in report.stops if s.trigger != "end" and s.signal == "SIGTERM"]
    print(f"seed {report.seed}: {report.updates} updates from {report.members} members; {kills} SIGKILL,"
          f" {len(terms)} SIGTERM mid-burst (+1 at the end)")  # fmt: skip
    triggers = Counter(s.fired or s.trigger for s in report.stops if s.trigger != "end")
    print("stops by moment: " + ", ".join(f"{k} {v}" for k, v in sorted(triggers.items())))
    print(f"served by the fake {report.served}, confirmed {report.confirmed}, handled (done) {report.handled},"
          f" lost (served+confirmed, not done) {report.lost}")  # fmt: skip
    print(f"check-ins {report.checkins}, members without one {report.members_without_checkin};"
          f" doubled {report.doubled} (check-ins {report.doubled_checkins}, bookings {report.doubled_bookings},"
          f" idempotency keys {report.duplicate_idem_keys})")  # fmt: skip
    print(f"balances == ledger: {'yes' if not report.balance_mismatches else f'NO ({report.balance_mismatches})'};"
          f" queued replies unsent {report.replies_unsent}; getUpdates calls {report.get_updates_calls},"
          f" messages sent/edited {report.messages_sent}")  # fmt: skip
    print(f"button presses {report.button_presses}, answered (toasts, not stored: a kill can drop one)"
          f" {report.callback_answers}")  # fmt: skip
    if terms:
        print("SIGTERM mid-burst: " + ", ".join(f"exit {s.code} in {s.seconds:.2f} s" for s in terms))
    b = report.backlog
    if b:
        print(f"SIGTERM with a backlog of {b['pending_at_sigterm']} stored updates: exit {b['exit_code']} after"
              f" {b['stop_seconds']:.2f} s, {b['left_stored']} left stored; after the restart"
              f" {b['handled_after_restart']}/{b['stored']} handled, {b['checkins']} check-ins")  # fmt: skip
    print(f"bot log: {len(report.log_errors)} ERROR lines or tracebacks" + "".join(
        f"\n  {line[:160]}" for line in report.log_errors[:5]))  # fmt: skip
    print(f"storm wall time {report.wall_s:.1f} s")
    for problem in report.problems:
        print(f"  FAIL: {problem}")
    print(f"result: {'FAILED' if report.problems else 'ok'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=3000, help="members; each sends 3 updates")
    parser.add_argument("--kills", type=int, default=20, help="stops during the burst")
    parser.add_argument("--sigterms", type=int, default=4, help="how many of them are SIGTERM")
    parser.add_argument("--backlog", type=int, default=1000, help="stored updates at the final SIGTERM")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a fresh one, printed)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)
    if args.members < 10 or not 0 <= args.sigterms <= args.kills or args.backlog < 1:
        parser.error("--members >= 10, 0 <= --sigterms <= --kills, --backlog >= 1")
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(2**32)
    print(f"crash storm, seed {args.seed} (repeat with --seed {args.seed})", flush=True)
    report = Report(args.seed, args.members, 3 * args.members)
    process, port = spawn_fake(storm_server_main, (TOKEN,), "storm-fake-bot-api", "the fake Bot API")
    server = SpawnedFake(process, port)
    try:
        with tempfile.TemporaryDirectory(prefix="vipbot-storm-") as tmp:
            storm(args, Path(tmp), server, report)
    finally:
        server.stop()
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(asdict(report), indent=2, ensure_ascii=False), encoding="utf-8")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
