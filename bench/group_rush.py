"""The morning rush (早高峰): members check in by the hundred within a minute, through the real ``vipbot run``,
against a fake Bot API that enforces Telegram's flood limits.

Set-up of every scenario (each on a fresh SQLite file, a fresh fake and a fresh bot process):

* the fake Bot API of ``tests/fakes/bot_api.py`` in its own process (``bench/fake_server.py``) with its default
  limits on: 30 messages/s overall, 20 messages and edits per 60 s into one group, 1/s into one private chat
  (HTTP 429 with ``retry_after`` beyond them);
* the bot as ``python -m bot.app.cli run --config config.yaml`` (the shipped configuration: board on,
  ``telegram.rate_limiter`` true, ``delivery.*`` as shipped), with only ``VIPBOT_TELEGRAM__TOKEN``,
  ``VIPBOT_TELEGRAM__BASE_URL``, ``VIPBOT_TELEGRAM__GROUPS``, ``VIPBOT_STAFF__TELEGRAM`` and
  ``VIPBOT_STORAGE__PATH`` (a temporary directory) set in its environment. It long-polls ``getUpdates``;
* this script pushes the updates into the fake (``POST /control/push_updates``) at their scheduled real times
  and follows every call the bot makes (``GET /control/calls``), with the fake's clock (``time.monotonic()``,
  system-wide on Linux).

Before the rush ``--started-share`` of the members (at least the ``--points`` members) send ``/start`` in
private and get their welcome. Then, over ``--seconds`` (60):

* (a) ``--members`` (1,000) members of one VIP group check in at uniformly random times: the even-numbered
  ones type (``签到`` and ``/checkin`` alternately), the odd-numbered ones press the board's ``签到 ✅`` button
  (callback data ``v1:checkin:`` under the board message). A presser whose time comes before the board was
  posted types ``签到`` instead;
* (b) ``--groups`` (3) groups at once, ``--group-members`` (500) members each, the same mix;
* (c) as (a), plus a flash sale: the rush is timed so that a minute boundary falls in its middle; 15 s before
  it (at once for short rushes) a staff member sends ``/sale add Jade cup | price=9 stock=100 start=<that
  minute> --force`` in the group (the start must be in the future and has minute resolution, so "now" is the
  next minute). When the sale's post (the group message with the ``v1:claim:1`` button) reaches the fake,
  ``--presses`` (1,000) distinct members press it within ``--claim-seconds`` (5).
* in every scenario, ``--points`` (20) ``/points`` in private from started members and ``--stats`` (10)
  ``/stats`` in private from the staff ids, evenly spread over the rush.

Reported per scenario:

* check-ins booked (``checkins`` rows in the SQLite file after the bot stopped) of those sent;
* confirmation: from the push of a member's update to what shows it to them. Typed: the first board send or
  edit (a successful ``sendMessage``/``editMessageText`` carrying the board button) arriving at the fake after
  the push whose text contains the member's display name (unique, fixed width: ``g1m0042``). Pressed: the
  ``answerCallbackQuery`` of that query id. p50/p99/max over all members (one never confirmed counts as
  infinitely late: "never"), for typed and pressed apart, and how many were never confirmed;
* per group the most messages plus edits in any 60 s (the fake's sliding window), split into board and other;
* the 429 answers of the fake, by method;
* ``/points`` and ``/stats``: push to the reply's arrival (the first successful ``sendMessage`` into that chat
  after the push with the points header, resp. the statistics header), p50/p99;
* (c): when the post came, presses answered and their latency, winners (``sales.sold`` and live claims in the
  database; must be exactly ``--stock``), codes sent privately (private messages with a code) and codes held
  for members who never opened a private chat (``outbound`` rows with ``held = 1``);
* CPU seconds per update of the bot process (utime + stime, all threads, of ``/proc/<pid>/stat``, sampled
  every 0.1 s: from the first push to the first sample after the bot's last call, over the updates pushed in
  the rush: check-ins, presses, private commands, the staff's ``/sale add``), the same for a bare
  python-telegram-bot ``Application`` (PTB's own polling; one ``TypeHandler``: ``sendMessage "ok"`` to a
  message, ``answerCallbackQuery "ok"`` to a press; ``concurrent_updates(8)`` like the bot's default) run
  afterwards in its own process against the same fake with the limits off, fed the same updates on the same
  schedule (from the first push to its last reply); their ratio, and the bare handler's press answer times.

``--timeline`` prints every message and edit into the groups and every 429 (seconds from the rush's start)
and each private answer slower than the goal with what went into that chat before it; ``--py-spy PREFIX``
records the bot with py-spy during each rush (collapsed stacks in ``PREFIX-<scenario>.txt``).

Goals (PASS/FAIL): 100% booked and confirmed; confirmation p99 <= 5 s; no 429; private answers p99 <= 500 ms;
(c) exactly ``--stock`` winners, each code either sent or held; CPU ratio bot/bare < 2. The exit status is 1
when a goal fails. The load average is printed before and after each scenario (the machine may be shared).

Run from the repository root (full size; small while developing)::

    .venv/bin/python bench/group_rush.py [--scenarios a,b,c] [--members 1000] [--groups 3] [--group-members 500]
        [--seconds 60] [--presses 1000] [--stock 100] [--claim-seconds 5] [--points 20] [--stats 10]
        [--started-share 0.2] [--drain 90] [--seed 1] [--no-bare] [--timeline] [--py-spy PREFIX] [--keep]
        [--json FILE]
    .venv/bin/python bench/group_rush.py --members 100 --group-members 50 --seconds 10 --presses 100 --stock 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import child_env, cpu_seconds, load_average, percentile, python_executable, spawn_bot, stop_child  # noqa: E402
from bench.fake_server import DEFAULT_TOKEN, FakeServer  # noqa: E402
from tests.fakes.bot_api import MESSAGE_METHODS  # noqa: E402

TOKEN = DEFAULT_TOKEN
GROUP_IDS = (-1001000000001, -1001000000002, -1001000000003, -1001000000004, -1001000000005)
FIRST_MEMBER = 710_000_000
"""Member i of group g has the user id FIRST_MEMBER + 100_000 * g + i."""
STAFF_IDS = (690_000_001, 690_000_002)
ZONE = ZoneInfo("Asia/Shanghai")  # config.yaml's timezone
BOARD_DATA = "v1:checkin:"
CLAIM_DATA = "v1:claim:1"
POINTS_MARK = "的积分："  # points.header of the zh_CN catalog (config.yaml's locale)
STATS_MARK = "📊"  # stats.header
CODE_MARK = "领取码："  # claim.code
WON_MARK = "抢到了"  # claim.won_private / claim.won_public
FETCH_EVERY = 0.15
STEP = 0.01
CONFIRM_GOAL_S = 5.0
PRIVATE_GOAL_MS = 500.0
CPU_RATIO_GOAL = 2.0

log = logging.getLogger("bench.group_rush")


# --- the workload --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class Member:
    group: int
    chat: int
    user_id: int
    name: str
    at: float
    """Planned offset into the rush (s)."""
    way: str
    """Planned: "typed" or "button"."""
    text: str
    started: bool = False
    sent_way: str = ""
    pushed_at: float | None = None
    query_id: str | None = None
    confirmed_at: float | None = None


@dataclass(eq=False)
class Private:
    kind: str
    """"points" or "stats"."""
    user_id: int
    at: float
    pushed_at: float | None = None
    answered_at: float | None = None


@dataclass(eq=False)
class Press:
    member: Member
    at: float
    """Offset into the rush, set when the sale's post was seen."""
    pushed_at: float | None = None
    query_id: str = ""
    answered_at: float | None = None
    answer: str = ""


@dataclass
class Workload:
    name: str
    groups: list[int]
    members: list[Member]
    privates: list[Private]
    started: list[Member]
    seconds: float
    sale: bool = False
    presses: int = 0
    stock: int = 0
    claim_seconds: float = 5.0


def build_workload(args: argparse.Namespace, name: str, rng: random.Random) -> Workload:
    groups = list(GROUP_IDS[: args.groups]) if name == "b" else [GROUP_IDS[0]]
    per_group = args.group_members if name == "b" else args.members
    width = max(4, len(str(per_group - 1)))
    members: list[Member] = []
    for g, chat in enumerate(groups):
        times = sorted(rng.uniform(0, args.seconds) for _ in range(per_group))
        for i, at in enumerate(times):
            typed = i % 2 == 0
            text = "签到" if (i // 2) % 2 == 0 else "/checkin"
            members.append(
                Member(g, chat, FIRST_MEMBER + 100_000 * g + i, f"g{g + 1}m{i:0{width}d}", at,
                       "typed" if typed else "button", text)
            )  # fmt: skip
    count = min(len(members), max(args.points, round(args.started_share * len(members))))
    started = rng.sample(members, count)
    for member in started:
        member.started = True
    privates = [
        Private("points", started[k].user_id, args.seconds * (k + 0.5) / args.points) for k in range(args.points)
    ]
    privates += [
        Private("stats", STAFF_IDS[k % len(STAFF_IDS)], args.seconds * (k + 0.25) / args.stats)
        for k in range(args.stats)
    ]
    workload = Workload(name, groups, members, privates, started, args.seconds)
    if name == "c":
        workload.sale, workload.presses, workload.stock = True, args.presses, args.stock
        workload.claim_seconds = args.claim_seconds
    return workload


# --- following the fake ----------------------------------------------------------------------------------------
class Tracker:
    """Everything the bot sent, fetched incrementally from ``/control/calls``, with the indexes the rush needs."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.next = 0
        self.get_updates = 0
        self.records: list[dict[str, Any]] = []
        self.board_ids: dict[int, int] = {}
        self.boards: dict[int, list[dict[str, Any]]] = {}
        self.post: dict[str, Any] | None = None
        self.answers: dict[str, dict[str, Any]] = {}
        self.private: dict[int, list[dict[str, Any]]] = {}
        self.pending_typed: dict[int, list[Member]] = {}

    async def fetch(self) -> None:
        response = await self.client.get("calls", params={"since": self.next})
        data = response.json()
        for record in data["calls"]:
            self._add(record)
        self.next = int(data["next"])
        self.get_updates += int(data["get_updates"])

    def _add(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        if rec["status"] != 200:
            return
        method, chat = rec["method"], rec["chat"]
        if method == "answerCallbackQuery":
            self.answers.setdefault(str(rec["query_id"]), rec)
            return
        if not isinstance(chat, int):
            return
        if chat > 0 and method == "sendMessage":
            self.private.setdefault(chat, []).append(rec)
        if chat < 0 and method in ("sendMessage", "editMessageText") and BOARD_DATA in rec["buttons"]:
            if method == "sendMessage":
                self.board_ids.setdefault(chat, int(rec["message_id"]))
            self.boards.setdefault(chat, []).append(rec)
            still = []
            for member in self.pending_typed.get(chat, []):
                if member.pushed_at is not None and member.pushed_at <= rec["at"] and member.name in rec["text"]:
                    member.confirmed_at = rec["at"]
                else:
                    still.append(member)
            self.pending_typed[chat] = still
        if chat < 0 and method == "sendMessage" and CLAIM_DATA in rec["buttons"] and self.post is None:
            self.post = rec

    def typed_pushed(self, member: Member) -> None:
        self.pending_typed.setdefault(member.chat, []).append(member)

    def private_after(self, chat: int, after: float, mark: str, used: set[int]) -> dict[str, Any] | None:
        for rec in self.private.get(chat, []):
            if rec["at"] >= after and mark in rec["text"] and rec["i"] not in used:
                return rec
        return None


async def follow(tracker: Tracker, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await tracker.fetch()
        except httpx.HTTPError as exc:
            log.warning("fetching the calls failed: %s", exc)
        try:
            await asyncio.wait_for(stop.wait(), FETCH_EVERY)
        except TimeoutError:
            pass
    await tracker.fetch()


async def push(client: httpx.AsyncClient, items: list[dict[str, Any]]) -> dict[str, Any]:
    response = await client.post("push_updates", json={"updates": items})
    response.raise_for_status()
    return dict(response.json())


async def wait_for(check: Any, timeout: float, what: str, alive: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if alive is not None and not alive():
            raise RuntimeError(f"the process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


# --- the processes ---------------------------------------------------------------------------------------------
def start_bot(server: FakeServer, workload: Workload, workdir: Path) -> subprocess.Popen[bytes]:
    env = child_env()
    env.update(
        VIPBOT_TELEGRAM__TOKEN=server.token,
        VIPBOT_TELEGRAM__BASE_URL=server.base_url,
        VIPBOT_TELEGRAM__GROUPS=json.dumps(workload.groups),
        VIPBOT_STAFF__TELEGRAM=json.dumps(list(STAFF_IDS)),
        VIPBOT_STORAGE__PATH=str(workdir / "vip.db"),
    )
    return spawn_bot(workdir, env, workdir / "bot.log", "--config", str(ROOT / "config.yaml"))


def start_bare(server: FakeServer, workdir: Path) -> subprocess.Popen[bytes]:
    with (workdir / "bare.log").open("wb") as out:
        return subprocess.Popen(
            [python_executable(), str(Path(__file__).resolve()), "--bare-child", server.base_url],
            cwd=workdir, env=child_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def bare_child(base_url: str) -> int:
    """The bare python-telegram-bot reply handler (run in its own process by ``start_bare``)."""
    from telegram import Update
    from telegram.ext import ApplicationBuilder, ContextTypes, TypeHandler

    async def reply(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update):
            return
        if update.callback_query is not None:
            await update.callback_query.answer("ok")
        elif update.effective_chat is not None:
            await context.bot.send_message(update.effective_chat.id, "ok")

    logging.basicConfig(level=logging.WARNING)
    application = ApplicationBuilder().token(TOKEN).base_url(base_url).concurrent_updates(8).build()
    application.add_handler(TypeHandler(Update, reply))
    application.run_polling(allowed_updates=Update.ALL_TYPES, poll_interval=0.0, timeout=10)
    return 0


def start_py_spy(prefix: str | None, scenario: str, pid: int) -> subprocess.Popen[bytes] | None:
    """``py-spy record`` of the bot during the rush, as collapsed stacks in ``<prefix>-<scenario>.txt``."""
    spy = shutil.which("py-spy") or str(Path(python_executable()).with_name("py-spy"))
    if not prefix or not Path(spy).exists():
        return None
    out = f"{prefix}-{scenario}.txt"
    print(f"  py-spy on the bot (pid {pid}) -> {out}", flush=True)
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), "-o", out, "--format", "raw", "-r", "50", "--nonblocking"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_py_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None and spy.poll() is None:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- one scenario ------------------------------------------------------------------------------------------------
@dataclass
class Figures:
    scenario: str
    groups: int
    members: int
    seconds: float
    load_before: str = ""
    load_after: str = ""
    sent: int = 0
    sent_typed: int = 0
    sent_button: int = 0
    booked: int = 0
    confirmed: int = 0
    confirm_p50_s: float = math.nan
    confirm_p99_s: float = math.nan
    confirm_max_s: float = math.nan
    typed_p50_s: float = math.nan
    typed_p99_s: float = math.nan
    button_p50_s: float = math.nan
    button_p99_s: float = math.nan
    within_goal_pct: float = math.nan
    """Share of the members whose check-in was confirmed within CONFIRM_GOAL_S."""
    never_on_board: int = 0
    """Typed check-ins whose member's name no board showed."""
    unanswered_presses: int = 0
    group_max_60s: dict[str, int] = field(default_factory=dict)
    group_board_60s: dict[str, int] = field(default_factory=dict)
    board_updates: dict[str, int] = field(default_factory=dict)
    floods: dict[str, int] = field(default_factory=dict)
    points_answered: int = 0
    points_p50_ms: float = math.nan
    points_p99_ms: float = math.nan
    stats_answered: int = 0
    stats_p50_ms: float = math.nan
    stats_p99_ms: float = math.nan
    private_p99_ms: float = math.nan
    sale: dict[str, Any] = field(default_factory=dict)
    updates: int = 0
    bot_cpu_s: float = math.nan
    bare_cpu_s: float = math.nan
    bot_ms_per_update: float = math.nan
    bare_ms_per_update: float = math.nan
    bare_press_p50_ms: float = math.nan
    bare_press_p99_ms: float = math.nan
    """The bare handler's answerCallbackQuery after the same presses (board and sale buttons)."""
    cpu_ratio: float = math.nan
    rush_wall_s: float = math.nan
    last_call_s: float = math.nan
    bot_log_warnings: int = 0
    goals: dict[str, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


class Scenario:
    def __init__(self, args: argparse.Namespace, workload: Workload, rng: random.Random) -> None:
        self.args = args
        self.w = workload
        self.rng = rng
        self.presses: list[Press] = []
        self.pushes: list[tuple[float, dict[str, Any]]] = []
        """(offset into the rush, item) of every update pushed during the rush, for the bare run."""
        self.sale_command_at: float | None = None
        self.sale_start_mono: float | None = None
        self.names = {m.user_id: m.name for m in workload.members}
        self.cpu_samples: list[tuple[float, float]] = []
        """(time, the bot's CPU seconds) every 0.1 s of the rush."""

    # --- phases ----------------------------------------------------------------------------------------------
    async def run(self, workdir: Path) -> Figures:
        w = self.w
        figures = Figures(w.name, len(w.groups), len(w.members), w.seconds, load_before=load_average())
        server = FakeServer.start(TOKEN)
        bot: subprocess.Popen[bytes] | None = None
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}/control/", timeout=30)
        tracker = Tracker(client)
        stop = asyncio.Event()
        follower = asyncio.create_task(follow(tracker, stop))
        try:
            bot = start_bot(server, w, workdir)
            alive = lambda: bot is not None and bot.poll() is None  # noqa: E731
            try:
                await wait_for(lambda: tracker.get_updates > 0, 90, "the bot to poll getUpdates", alive)
                await self.pre_rush(client, tracker, alive)
                spy = start_py_spy(self.args.py_spy, w.name, bot.pid)
                try:
                    cpu0, t0, done_at = await self.rush(client, tracker, bot.pid, alive)
                finally:
                    stop_py_spy(spy)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n--- bot log ---\n{log_tail(workdir / 'bot.log')}") from exc
            await tracker.fetch()
            # The bot's work ended with its last call up to then (a drain that waited for a confirmation
            # that never came would otherwise add idle time): CPU at the first sample after that call.
            last_call = max((r["at"] for r in tracker.records if r["at"] <= done_at), default=done_at)
            cpu1 = next((cpu for at, cpu in self.cpu_samples if at >= last_call), self.cpu_samples[-1][1])
            await asyncio.sleep(2.0)  # stragglers (codes, last edits) for the records
            await tracker.fetch()
            figures.bot_cpu_s = cpu1 - cpu0
            figures.rush_wall_s = done_at - t0
            figures.last_call_s = last_call - t0
            stop_child(bot, 30)
            figures.bot_log_warnings = sum(
                (" WARNING " in line or " ERROR " in line)
                for line in (workdir / "bot.log").read_text(errors="replace").splitlines()
            )
            self.measure(tracker, figures, workdir / "vip.db", t0)
            if self.args.timeline:
                print_timeline(tracker, w, t0)
            if not self.args.no_bare:
                await self.bare(client, tracker, server, workdir, figures)
        finally:
            if bot is not None and bot.poll() is None:
                stop_child(bot, 30)
            stop.set()
            try:
                await asyncio.wait_for(follower, 30)
            except Exception:
                follower.cancel()
            await client.aclose()
            server.stop()
        figures.load_after = load_average()
        figures.updates = len(self.pushes)
        if figures.updates:
            figures.bot_ms_per_update = 1000 * figures.bot_cpu_s / figures.updates
            figures.bare_ms_per_update = 1000 * figures.bare_cpu_s / figures.updates
            figures.cpu_ratio = figures.bot_cpu_s / figures.bare_cpu_s if figures.bare_cpu_s > 0 else math.nan
        judge(figures, w)
        return figures

    async def pre_rush(self, client: httpx.AsyncClient, tracker: Tracker, alive: Any) -> None:
        """The started members open their private chat (``/start``) and get their welcome."""
        started = self.w.started
        items = [{"kind": "message", "chat_id": m.user_id, "user_id": m.user_id, "first_name": m.name,
                  "text": "/start"} for m in started]  # fmt: skip
        answer = await push(client, items)
        since = float(answer["at"])
        await wait_for(
            lambda: all(any(r["at"] >= since for r in tracker.private.get(m.user_id, [])) for m in started),
            60 + len(started) / 10, "the welcome of every started member", alive,
        )  # fmt: skip
        await asyncio.sleep(1.5)  # every private chat's 1.1 s gap has passed

    async def rush(
        self, client: httpx.AsyncClient, tracker: Tracker, pid: int, alive: Any
    ) -> tuple[float, float, float]:
        """Push the rush on schedule until everything is confirmed or the drain time is over; (cpu at the
        first push, the rush's start, the time everything was confirmed or the wait ended)."""
        w = self.w
        lead = 0.5
        sale_text = ""
        if w.sale:
            # A minute boundary in the middle of the rush: the sale's start (the command takes minutes).
            wall = time.time() + lead + 1.0
            boundary = math.ceil((wall + w.seconds / 2) / 60) * 60
            await asyncio.sleep(max(0.0, boundary - w.seconds / 2 - time.time()))
            self.sale_start_mono = time.monotonic() + w.seconds / 2
            start_text = datetime.fromtimestamp(boundary, ZONE).strftime("%Y-%m-%d %H:%M")
            self.sale_command_at = max(0.5, w.seconds / 2 - 15.0)
            sale_text = f"/sale add Jade cup | price=9 stock={w.stock} start={start_text} --force"
            t0 = time.monotonic()
        else:
            t0 = time.monotonic() + lead
            await asyncio.sleep(lead)
        cpu0 = cpu_seconds(pid)
        self.cpu_samples = [(time.monotonic(), cpu0)]
        queue: list[tuple[float, int, Any]] = [(m.at, n, m) for n, m in enumerate(w.members)]
        queue += [(p.at, len(queue) + n, p) for n, p in enumerate(w.privates)]
        if self.sale_command_at is not None:
            queue.append((self.sale_command_at, len(queue), "sale"))
        queue.sort(key=lambda e: (e[0], e[1]))
        cursor = 0
        presses_planned = False
        last_planned = max(e[0] for e in queue)
        while True:
            now = time.monotonic()
            if now - self.cpu_samples[-1][0] >= 0.1:
                self.cpu_samples.append((now, cpu_seconds(pid)))
            if w.sale and not presses_planned and tracker.post is not None:
                presses_planned = True
                begin = max(now - t0, 0.0)
                pressers = self.rng.sample([m for m in w.members], w.presses)
                offsets = sorted(self.rng.uniform(0, w.claim_seconds) for _ in pressers)
                self.presses = [Press(m, begin + off) for m, off in zip(pressers, offsets, strict=True)]
                queue = queue[cursor:] + [(p.at, 10**9 + n, p) for n, p in enumerate(self.presses)]
                queue.sort(key=lambda e: (e[0], e[1]))
                cursor = 0
                last_planned = max(last_planned, begin + w.claim_seconds)
            due = []
            while cursor < len(queue) and t0 + queue[cursor][0] <= now:
                due.append(queue[cursor][2])
                cursor += 1
            if due:
                await self._push_due(client, tracker, due, t0, sale_text)
            if cursor >= len(queue) and self._complete(tracker):
                self.cpu_samples.append((time.monotonic(), cpu_seconds(pid)))
                return cpu0, t0, self.cpu_samples[-1][0]
            if now > t0 + last_planned + self.args.drain and cursor >= len(queue):
                self.cpu_samples.append((time.monotonic(), cpu_seconds(pid)))
                return cpu0, t0, self.cpu_samples[-1][0]
            if not alive():
                raise RuntimeError("the bot exited during the rush")
            nxt = t0 + queue[cursor][0] if cursor < len(queue) else now + 0.05
            await asyncio.sleep(min(max(nxt - time.monotonic(), 0.0), 0.05) or STEP / 10)

    async def _push_due(self, client: httpx.AsyncClient, tracker: Tracker, due: list[Any], t0: float,
                        sale_text: str) -> None:  # fmt: skip
        items: list[dict[str, Any]] = []
        for what in due:
            if isinstance(what, Member):
                board = tracker.board_ids.get(what.chat)
                if what.way == "button" and board is not None:
                    what.sent_way = "button"
                    what.query_id = f"ci-{what.user_id}"
                    items.append({"kind": "callback", "chat_id": what.chat, "user_id": what.user_id,
                                  "first_name": what.name, "data": BOARD_DATA, "message_id": board,
                                  "query_id": what.query_id})  # fmt: skip
                else:
                    what.sent_way = "typed"
                    text = what.text if what.way == "typed" else "签到"
                    items.append({"kind": "message", "chat_id": what.chat, "user_id": what.user_id,
                                  "first_name": what.name, "text": text})  # fmt: skip
            elif isinstance(what, Private):
                items.append({"kind": "message", "chat_id": what.user_id, "user_id": what.user_id,
                              "first_name": self.names.get(what.user_id, f"店员{what.user_id % 10}"),
                              "text": "/points" if what.kind == "points" else "/stats"})  # fmt: skip
            elif isinstance(what, Press):
                assert tracker.post is not None
                what.query_id = f"claim-{what.member.user_id}"
                items.append({"kind": "callback", "chat_id": what.member.chat, "user_id": what.member.user_id,
                              "first_name": what.member.name, "data": CLAIM_DATA,
                              "message_id": tracker.post["message_id"], "query_id": what.query_id})  # fmt: skip
            else:  # the staff's /sale add in the group
                items.append({"kind": "message", "chat_id": self.w.groups[0], "user_id": STAFF_IDS[0],
                              "first_name": "店长", "text": sale_text})  # fmt: skip
        answer = await push(client, items)
        at = float(answer["at"])
        for what in due:
            if isinstance(what, Member | Private | Press):
                what.pushed_at = at
            if isinstance(what, Member) and what.sent_way == "typed":
                tracker.typed_pushed(what)
        self.pushes.extend((at - t0, item) for item in items)

    def _complete(self, tracker: Tracker) -> bool:
        w = self.w
        for member in w.members:
            if member.sent_way == "typed" and member.confirmed_at is None:
                return False
            if member.sent_way == "button" and str(member.query_id) not in tracker.answers:
                return False
        used: set[int] = set()
        for private in w.privates:
            mark = POINTS_MARK if private.kind == "points" else STATS_MARK
            assert private.pushed_at is not None
            rec = tracker.private_after(private.user_id, private.pushed_at, mark, used)
            if rec is None:
                return False
            used.add(rec["i"])
        if w.sale:
            if tracker.post is None or not self.presses:
                return False
            return all(p.query_id in tracker.answers for p in self.presses)
        return True

    # --- figures ---------------------------------------------------------------------------------------------
    def measure(self, tracker: Tracker, f: Figures, db_path: Path, t0: float) -> None:
        w = self.w
        for member in w.members:
            if member.sent_way == "button":
                rec = tracker.answers.get(str(member.query_id))
                member.confirmed_at = rec["at"] if rec is not None else None
        typed = [m for m in w.members if m.sent_way == "typed"]
        button = [m for m in w.members if m.sent_way == "button"]
        f.sent, f.sent_typed, f.sent_button = len(w.members), len(typed), len(button)

        def wait(m: Member) -> float:  # never confirmed: infinitely late (it counts in the percentiles)
            return m.confirmed_at - m.pushed_at if m.confirmed_at is not None and m.pushed_at else math.inf

        waits = [wait(m) for m in w.members]
        f.confirmed = sum(1 for x in waits if x < math.inf)
        f.confirm_p50_s, f.confirm_p99_s = percentile(waits, 0.5), percentile(waits, 0.99)
        f.confirm_max_s = max(waits, default=math.nan)
        typed_waits, button_waits = [wait(m) for m in typed], [wait(m) for m in button]
        f.typed_p50_s, f.typed_p99_s = percentile(typed_waits, 0.5), percentile(typed_waits, 0.99)
        f.button_p50_s, f.button_p99_s = percentile(button_waits, 0.5), percentile(button_waits, 0.99)
        f.never_on_board = sum(1 for x in typed_waits if x == math.inf)
        f.within_goal_pct = 100 * sum(1 for x in waits if x <= CONFIRM_GOAL_S) / max(len(waits), 1)
        f.unanswered_presses = sum(1 for x in button_waits if x == math.inf)
        for chat in w.groups:
            sent = [r for r in tracker.records if r["chat"] == chat and r["status"] == 200
                    and r["method"] in MESSAGE_METHODS]  # fmt: skip
            f.group_max_60s[str(chat)] = max_in_window([r["at"] for r in sent], 60.0)
            f.group_board_60s[str(chat)] = max_in_window([r["at"] for r in tracker.boards.get(chat, [])], 60.0)
            f.board_updates[str(chat)] = len(tracker.boards.get(chat, []))
        f.floods = dict(Counter(r["method"] for r in tracker.records if r["status"] == 429))
        used: set[int] = set()
        latencies: dict[str, list[float]] = {"points": [], "stats": []}
        for private in w.privates:
            mark = POINTS_MARK if private.kind == "points" else STATS_MARK
            rec = tracker.private_after(private.user_id, private.pushed_at or 0.0, mark, used)
            if rec is not None and private.pushed_at is not None:
                used.add(rec["i"])
                private.answered_at = rec["at"]
                latencies[private.kind].append(1000 * (rec["at"] - private.pushed_at))
        f.points_answered, f.stats_answered = len(latencies["points"]), len(latencies["stats"])
        f.points_p50_ms, f.points_p99_ms = percentile(latencies["points"], 0.5), percentile(latencies["points"], 0.99)
        f.stats_p50_ms, f.stats_p99_ms = percentile(latencies["stats"], 0.5), percentile(latencies["stats"], 0.99)
        f.private_p99_ms = percentile(latencies["points"] + latencies["stats"], 0.99)
        db = read_db(db_path)
        f.booked = sum(db["checkins"].get(f"telegram:{chat}", 0) for chat in w.groups)
        if db["checkin_doubles"]:
            f.problems.append(f"{db['checkin_doubles']} members checked in twice")
        if w.sale:
            f.sale = self.sale_figures(tracker, db, t0)

    def sale_figures(self, tracker: Tracker, db: dict[str, Any], t0: float) -> dict[str, Any]:
        w = self.w
        post = tracker.post
        answered = [p for p in self.presses if p.query_id in tracker.answers]
        for press in answered:
            rec = tracker.answers[press.query_id]
            press.answered_at, press.answer = rec["at"], rec["text"]
        waits = [p.answered_at - p.pushed_at for p in answered if p.answered_at and p.pushed_at]
        codes = [r for chat, recs in tracker.private.items() for r in recs if CODE_MARK in r["text"]]
        started_ids = {m.user_id for m in w.started}
        code_chats = {r["chat"] for r in codes}
        figures = {
            "command_at_s": self.sale_command_at,
            "start_at_s": (self.sale_start_mono - t0) if self.sale_start_mono else None,
            "post_at_s": (post["at"] - t0) if post else None,
            "post_late_s": (post["at"] - self.sale_start_mono) if post and self.sale_start_mono else None,
            "presses": len(self.presses),
            "answered": len(answered),
            "won_answers": sum(WON_MARK in p.answer for p in answered),
            "press_p50_ms": 1000 * percentile(waits, 0.5),
            "press_p99_ms": 1000 * percentile(waits, 0.99),
            "sold": db["sold"],
            "live_claims": db["claims"],
            "claim_members": db["claim_members"],
            "codes_sent_privately": len(codes),
            "code_chats_started": len(code_chats & started_ids),
            "codes_held": db["held_codes"],
        }
        return figures

    # --- the bare handler ------------------------------------------------------------------------------------
    async def bare(self, client: httpx.AsyncClient, tracker: Tracker, server: FakeServer, workdir: Path,
                   f: Figures) -> None:  # fmt: skip
        """The same updates on the same schedule to the bare PTB handler (limits off): its CPU seconds, and
        how long its answers to the presses took."""
        await client.post("limits", json={"on": False})
        await client.post("drop")
        await tracker.fetch()
        proc = start_bare(server, workdir)
        try:
            polls = tracker.get_updates
            await wait_for(lambda: tracker.get_updates > polls, 60, "the bare handler to poll",
                           lambda: proc.poll() is None)  # fmt: skip
            base = len(tracker.records)
            items = []
            for n, (offset, item) in enumerate(self.pushes):
                copy = dict(item)
                if copy["kind"] == "callback":
                    copy["query_id"] = f"bare-{n}"
                items.append((offset, copy))
            expected = len(items)

            def replies() -> int:
                return sum(
                    1 for r in tracker.records[base:]
                    if r["status"] == 200
                    and (r["method"] == "answerCallbackQuery" or (r["method"] == "sendMessage" and r["text"] == "ok"))
                )  # fmt: skip

            cpu0 = cpu_seconds(proc.pid)
            t0 = time.monotonic() + 0.2
            cursor = 0
            pressed: dict[str, float] = {}
            while cursor < len(items):
                now = time.monotonic()
                due = []
                while cursor < len(items) and t0 + items[cursor][0] <= now:
                    due.append(items[cursor][1])
                    cursor += 1
                if due:
                    at = float((await push(client, due))["at"])
                    pressed.update((str(item["query_id"]), at) for item in due if item["kind"] == "callback")
                await asyncio.sleep(STEP)
            await tracker.fetch()
            await wait_for(lambda: replies() >= expected, 60, f"the bare handler's {expected} replies",
                           lambda: proc.poll() is None)  # fmt: skip
            f.bare_cpu_s = cpu_seconds(proc.pid) - cpu0
            waits = [1000 * (tracker.answers[q]["at"] - at) for q, at in pressed.items() if q in tracker.answers]
            f.bare_press_p50_ms, f.bare_press_p99_ms = percentile(waits, 0.5), percentile(waits, 0.99)
        finally:
            stop_child(proc, 15)
            await client.post("limits", json={"on": True})


def describe(rec: dict[str, Any]) -> str:
    """What a call into a group was, in a few words."""
    text = rec["text"].replace("\n", " | ")
    if BOARD_DATA in rec["buttons"]:
        return f"board ({text.split(' | ')[1] if ' | ' in text else ''})"
    if CLAIM_DATA in rec["buttons"]:
        return "sale post" if rec["method"] == "sendMessage" else f"sale edit: {text[-40:]}"
    return text[:90]


def print_timeline(tracker: Tracker, w: Workload, t0: float) -> None:
    """Every message or edit into the groups (and every 429), seconds from the rush's start; then each
    private answer slower than the goal, with what went into that chat just before."""
    for rec in tracker.records:
        chat = rec["chat"]
        if (rec["method"] in MESSAGE_METHODS and isinstance(chat, int) and chat < 0) or rec["status"] == 429:
            print(f"    {rec['at'] - t0:8.2f} {chat} {rec['method']} {rec['status']} {describe(rec)}")
    for m in w.members:
        if m.pushed_at is not None and (m.confirmed_at is None or m.confirmed_at - m.pushed_at > CONFIRM_GOAL_S):
            seen = f"{m.confirmed_at - t0:.2f} s" if m.confirmed_at is not None else "never"
            print(f"    late {m.sent_way} check-in of {m.name} pushed at {m.pushed_at - t0:.2f} s: seen {seen}")
    for private in w.privates:
        if private.pushed_at is None or private.answered_at is None:
            continue
        late = private.answered_at - private.pushed_at
        if late * 1000 <= PRIVATE_GOAL_MS:
            continue
        before = [r for r in tracker.private.get(private.user_id, []) if r["at"] < private.answered_at]
        last = f"{before[-1]['at'] - t0:.2f} s: {before[-1]['text'][:50]!r}" if before else "nothing"
        print(f"    slow /{private.kind} of {private.user_id} pushed at {private.pushed_at - t0:.2f} s:"
              f" answered {1000 * late:.0f} ms later; the chat's message before: {last}")  # fmt: skip


def max_in_window(times: list[float], window: float) -> int:
    """The most arrivals in any (t - window, t] (the fake's sliding window)."""
    ordered = sorted(times)
    best = start = 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def read_db(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:

        def one(sql: str) -> int:
            row = conn.execute(sql).fetchone()
            return int(row[0] or 0) if row else 0

        checkins = {str(chat): int(n) for chat, n in conn.execute("SELECT chat, COUNT(*) FROM checkins GROUP BY chat")}
        return {
            "checkins": checkins,
            "checkin_doubles": one("SELECT COUNT(*) - COUNT(DISTINCT member_id || ':' || day) FROM checkins"),
            "sold": one("SELECT COALESCE(MAX(sold), 0) FROM sales WHERE id = 1"),
            "claims": one("SELECT COUNT(*) FROM sale_claims WHERE sale_id = 1 AND state <> 'released'"),
            "claim_members": one("SELECT COUNT(DISTINCT member_id) FROM sale_claims WHERE sale_id = 1"),
            "held_codes": one(f"SELECT COUNT(*) FROM outbound WHERE held = 1 AND payload LIKE '%{CODE_MARK}%'"),
        }
    finally:
        conn.close()


# --- judging and printing ------------------------------------------------------------------------------------------
def judge(f: Figures, w: Workload) -> None:
    f.goals["booked_and_confirmed_100pct"] = f.booked == f.sent and f.confirmed == f.sent
    f.goals["confirmation_p99_le_5s"] = f.confirm_p99_s <= CONFIRM_GOAL_S
    f.goals["no_429"] = not f.floods
    f.goals["private_p99_le_500ms"] = (
        f.private_p99_ms <= PRIVATE_GOAL_MS and f.points_answered + f.stats_answered == len(w.privates)
    )
    if w.sale:
        s = f.sale
        f.goals["sale_winners_exact"] = s["sold"] == w.stock == s["live_claims"] == s["won_answers"]
        f.goals["sale_codes_sent_or_held"] = s["codes_sent_privately"] + s["codes_held"] == s["live_claims"]
    if not math.isnan(f.cpu_ratio):
        f.goals["cpu_ratio_lt_2"] = f.cpu_ratio < CPU_RATIO_GOAL


def ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    return "-" if math.isnan(seconds) else f"{1000 * seconds:.0f} ms"


def report(f: Figures, w: Workload) -> None:
    print(f"\n=== scenario {f.scenario}: {f.members} members in {len(w.groups)} group(s) within {f.seconds:.0f} s ===")
    print(f"  before: {f.load_before}; after: {f.load_after}")
    print(f"  check-ins: sent {f.sent} (typed {f.sent_typed}, pressed {f.sent_button}); booked {f.booked};"
          f" confirmed {f.confirmed}; the wait ended {f.rush_wall_s:.1f} s after the rush began (the bot's last"
          f" call then at {f.last_call_s:.1f} s)")  # fmt: skip
    print(f"  confirmation: p50 {ms(f.confirm_p50_s)}, p99 {ms(f.confirm_p99_s)}, max {ms(f.confirm_max_s)}"
          f" (typed p50 {ms(f.typed_p50_s)} p99 {ms(f.typed_p99_s)}, pressed p50 {ms(f.button_p50_s)} p99"
          f" {ms(f.button_p99_s)}); not confirmed: {f.never_on_board} typed (name on no board),"
          f" {f.unanswered_presses} pressed (no answer); {f.within_goal_pct:.1f}% within"
          f" {CONFIRM_GOAL_S:.0f} s")  # fmt: skip
    for chat in w.groups:
        key = str(chat)
        print(f"  group {chat}: most messages+edits in 60 s {f.group_max_60s[key]} (board alone"
              f" {f.group_board_60s[key]}); board posted/edited {f.board_updates[key]} times")  # fmt: skip
    print(f"  429 answers: {sum(f.floods.values())} {dict(f.floods) if f.floods else ''}")
    print(
        f"  /points: {f.points_answered}/{sum(p.kind == 'points' for p in w.privates)} answered, p50"
        f" {f.points_p50_ms:.0f} ms, p99 {f.points_p99_ms:.0f} ms; /stats: {f.stats_answered}/"
        f"{sum(p.kind == 'stats' for p in w.privates)}, p50 {f.stats_p50_ms:.0f} ms, p99 {f.stats_p99_ms:.0f} ms"
    )
    if f.sale:
        s = f.sale
        post = (
            "never" if s["post_at_s"] is None else f"{s['post_at_s']:.1f} s ({s['post_late_s']:+.1f} s after the start)"
        )
        print(f"  sale: command at {s['command_at_s']:.1f} s, start at {s['start_at_s']:.1f} s, post at {post};"
              f" presses answered {s['answered']}/{s['presses']} (p50 {s['press_p50_ms']:.0f} ms, p99"
              f" {s['press_p99_ms']:.0f} ms)")  # fmt: skip
        print(f"  sale: winners {s['sold']} sold, {s['live_claims']} live claims, {s['won_answers']} 'won' toasts;"
              f" codes sent privately {s['codes_sent_privately']}, held {s['codes_held']}")  # fmt: skip
    print(
        f"  CPU: bot {f.bot_cpu_s:.2f} s = {f.bot_ms_per_update:.2f} ms/update; bare PTB {f.bare_cpu_s:.2f} s ="
        f" {f.bare_ms_per_update:.2f} ms/update ({f.updates} updates); ratio {f.cpu_ratio:.2f} (the bare"
        f" handler answered the same presses in p50 {f.bare_press_p50_ms:.0f} ms, p99 {f.bare_press_p99_ms:.0f} ms)"
    )
    if f.bot_log_warnings:
        print(f"  bot log: {f.bot_log_warnings} WARNING/ERROR lines")
    for problem in f.problems:
        print(f"  problem: {problem}")
    print("  goals: " + "; ".join(f"{name} {'PASS' if ok else 'FAIL'}" for name, ok in f.goals.items()))


# --- main ------------------------------------------------------------------------------------------------------------
async def bench(args: argparse.Namespace) -> tuple[int, list[Figures]]:
    results: list[Figures] = []
    failed = False
    for name in args.scenarios:
        rng = random.Random(f"{args.seed}:{name}")
        workload = build_workload(args, name, rng)
        workdir = Path(tempfile.mkdtemp(prefix=f"vipbot-rush-{name}-"))
        try:
            figures = await Scenario(args, workload, rng).run(workdir)
        finally:
            if args.keep:
                print(f"  (kept {workdir})")
            else:
                shutil.rmtree(workdir, ignore_errors=True)
        report(figures, workload)
        results.append(figures)
        failed = failed or not all(figures.goals.values())
    return (1 if failed else 0), results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenarios", default="a,b,c", help="which of a, b, c to run, in order")
    parser.add_argument("--members", type=int, default=1000, help="members of the one group in (a) and (c)")
    parser.add_argument("--groups", type=int, default=3, help="groups in (b)")
    parser.add_argument("--group-members", type=int, default=500, help="members per group in (b)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the rush")
    parser.add_argument("--presses", type=int, default=1000, help="(c): claim presses, one per member")
    parser.add_argument("--stock", type=int, default=100, help="(c): units of the sale")
    parser.add_argument("--claim-seconds", type=float, default=5.0, help="(c): the presses come within this")
    parser.add_argument("--points", type=int, default=20, help="private /points during the rush")
    parser.add_argument("--stats", type=int, default=10, help="staff /stats in private during the rush")
    parser.add_argument("--started-share", type=float, default=0.2, help="members who /start-ed before the rush")
    parser.add_argument("--drain", type=float, default=90.0, help="seconds to wait for stragglers after the rush")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare PTB handler")
    parser.add_argument("--py-spy", metavar="PREFIX", help="py-spy record the bot during each rush to PREFIX-<s>.txt")
    parser.add_argument("--timeline", action="store_true", help="print every group message and every 429")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's directory (database, logs)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if not set(args.scenarios) <= {"a", "b", "c"}:
        parser.error("--scenarios takes a, b and c")
    if not 1 <= args.groups <= len(GROUP_IDS):
        parser.error(f"--groups must be 1..{len(GROUP_IDS)}")
    if args.members < max(args.points, 2) or args.group_members < 2:
        parser.error("--members must be at least --points (and 2), --group-members at least 2")
    if "c" in args.scenarios and not 0 < args.stock <= args.presses <= args.members:
        parser.error("(c) needs 0 < --stock <= --presses <= --members")
    if args.points < 1 or args.stats < 1:
        parser.error("--points and --stats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--bare-child"]:
        return bare_child(argv[1])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    print(f"morning rush: scenarios {','.join(args.scenarios)}; {load_average()}", flush=True)
    status, results = asyncio.run(bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2, ensure_ascii=False))
    return status


if __name__ == "__main__":
    sys.exit(main())
