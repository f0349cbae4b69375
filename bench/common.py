"""Pieces shared by the benchmark scripts of ``bench/``.

* ``percentile``: the nearest-rank percentile every script reports;
* ``AnswerRecorder`` / ``timed_run``: the button-press benchmarks' answer times, and one bounded, timed run;
* ``BENCH_*`` / ``staff_inbound`` / ``bench_settings`` / ``seed_members``: the shop of the in-process Telegram
  benchmarks;
* ``run_in_process_bench``: ``main`` of the benchmarks that run the bot in this process (logging, a clean
  environment, the ``bench`` coroutine, ``--json``);
* ``clean_environment`` / ``child_env``: keep a developer's real bot configuration (``VIPBOT_*`` and the
  secrets read from the environment) out of an in-process bot or a bot child process;
* ``python_executable`` / ``spawn_bot`` / ``ChildBot`` / ``stop_child``: start, hold and stop
  ``python -m bot.app.cli run`` child processes;
* ``cpu_seconds`` / ``load_average``: a process's CPU time (user + system, all threads) from
  ``/proc/<pid>/stat``, and the machine's load average, for benchmarks that run the bot as a child;
* ``TimingRequest`` / ``TimingProcessor`` / ``instrument``: the bot's HTTPXRequest and PTB update processor
  replaced by subclasses that report each successful Bot API call and each update taking its
  ``concurrent_updates`` slot (for the in-process Telegram benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from telegram.ext import Application, SimpleUpdateProcessor
from telegram.request import HTTPXRequest, RequestData

if TYPE_CHECKING:  # the bot's own modules load only where a benchmark runs the bot in this process
    from bot.app.config import Settings
    from bot.app.runtime import Runtime
    from handlers.core.messages import Inbound

ROOT = Path(__file__).resolve().parents[1]
SECRET_VARIABLES = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET")


# --- figures -------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


@dataclass
class AnswerRecorder:
    """Times per callback query id of a button-press benchmark: when it was fed (`put_at`, set by the feeder)
    and when its first ``answerCallbackQuery`` came back, with that answer's text. `on_success` is the timing
    request's hook (see ``instrument``); `all_answered` is set once `expected` presses have an answer."""

    expected: int
    put_at: dict[str, float] = field(default_factory=dict)
    answered_at: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    answers: int = 0
    release: Callable[[], None] | None = None
    """Called once per newly answered press (a closed loop's free slot)."""
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)

    def answered(self, query_id: str, text: str) -> None:
        self.answers += 1
        if query_id in self.answered_at:
            return
        self.answered_at[query_id] = time.perf_counter()
        self.texts[query_id] = text
        if self.release is not None:
            self.release()
        if len(self.answered_at) >= self.expected:
            self.all_answered.set()

    def on_success(self, url: str, params: dict[str, Any]) -> None:
        """A Bot API call got its answer: note each ``answerCallbackQuery``."""
        if url.endswith("/answerCallbackQuery"):
            self.answered(str(params.get("callback_query_id")), str(params.get("text") or ""))


async def timed_run(work: Awaitable[None], wait_s: float) -> tuple[float, float, bool]:
    """Await `work` for at most `wait_s` seconds: (when it started, the CPU seconds this process used meanwhile,
    whether it completed in time)."""
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(work, wait_s)
        completed = True
    except TimeoutError:
        completed = False
    return t0, time.process_time() - cpu0, completed


def run_in_process_bench(
    bench: Callable[[argparse.Namespace], Coroutine[Any, Any, tuple[int, dict[str, Any]]]], args: argparse.Namespace
) -> int:
    """Run ``bench(args)`` (exit status, report) on a fresh event loop, with warnings logged and the bot's
    settings dropped from the environment; the report goes to ``args.json`` when given. The exit status."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    clean_environment()  # Settings read VIPBOT_* from the environment first
    status, report = asyncio.run(bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return status


# --- the in-process Telegram benchmarks' shop ------------------------------------------------------------------
BENCH_TOKEN = "123456:BENCH-TOKEN"
BENCH_GROUP = -1001234567890
BENCH_STAFF = 500


def staff_inbound(text: str, key: str) -> Inbound:
    """The staff's command `text` in the VIP group, as the dispatcher gets it (`key`: its idempotency key)."""
    from handlers.core.messages import Identity, Inbound

    staff = Identity("telegram", str(BENCH_STAFF), "Shop", "shopkeeper")
    return Inbound("telegram", str(BENCH_GROUP), staff, text, True, key, "1")


def bench_settings(db_path: Path, base_url: str, *, rate_limiter: bool, concurrency: int, **extra: Any) -> Settings:
    """The bot's settings for an in-process benchmark: English, the VIP group and staff above, the fake Bot API
    at `base_url`, `concurrency` updates at a time; `extra` adds sections."""
    from bot.app.config import Settings

    telegram = {"token": BENCH_TOKEN, "base_url": base_url, "rate_limiter": rate_limiter, "groups": [BENCH_GROUP],
                "concurrent_updates": concurrency}  # fmt: skip
    return Settings(locale="en", storage={"path": str(db_path)}, telegram=telegram,
                    staff={"telegram": [BENCH_STAFF]}, **extra)  # fmt: skip


async def seed_members(runtime: Runtime, first_user_id: int, members: int) -> None:
    """Register `members` Telegram members, user ids from `first_user_id` on (named user<id>), in one transaction."""
    now = runtime.deps.now_ts()
    async with runtime.deps.db.transaction() as repos:
        for uid in range(first_user_id, first_user_id + members):
            await repos.members.register("telegram", str(uid), f"user{uid}", None, now)


# --- environment and child processes ---------------------------------------------------------------------------
def is_bot_setting(name: str) -> bool:
    """Whether the environment variable ``name`` configures the bot (``Settings`` read them first)."""
    return name.startswith("VIPBOT_") or name in SECRET_VARIABLES


def clean_environment() -> None:
    """Drop the bot's settings from this process's environment: never let a developer's real config leak in."""
    for name in list(os.environ):
        if is_bot_setting(name):
            del os.environ[name]


def child_env(drop: Callable[[str], bool] = is_bot_setting) -> dict[str, str]:
    """This environment without the variables ``drop`` names, with the repository on PYTHONPATH and unbuffered
    output, for a bot child process (the caller adds the bot's settings)."""
    env = {k: v for k, v in os.environ.items() if not drop(k)}
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        PYTHONUNBUFFERED="1",
    )
    return env


def python_executable() -> str:
    """The project's virtualenv python, else this one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def spawn_bot(
    workdir: Path, env: dict[str, str], log_path: Path, *args: str, banner: str = ""
) -> subprocess.Popen[bytes]:
    """``python -m bot.app.cli run *args`` as a child process in ``workdir``, its output appended to
    ``log_path`` after ``banner`` (a line marking this start, when given)."""
    with log_path.open("ab") as log:
        if banner:
            log.write(banner.encode())
            log.flush()
        return subprocess.Popen(
            [python_executable(), "-m", "bot.app.cli", "run", *args],
            cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip


@dataclass
class ChildBot:
    """A bot child process (see ``spawn_bot``) and the log file its output goes to."""

    env: dict[str, str]
    workdir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def stop_child(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM ``proc`` if it still runs, SIGKILL it after ``timeout`` seconds; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


def cpu_seconds(pid: int) -> float:
    """CPU seconds (utime + stime, every thread) the process ``pid`` has used so far, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 (state) is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages and its CPU count, as one line."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --- instrumentation of an in-process PTB Application ----------------------------------------------------------
class TimingRequest(HTTPXRequest):
    """The default HTTPXRequest, calling ``on_success(url, parameters)`` when a call with parameters got a 200
    answer (the caller notes the time and what it needs)."""

    __slots__ = ("_on_success",)

    def __init__(self, on_success: Callable[[str, dict[str, Any]], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_success = on_success

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        write_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        connect_timeout: Any = HTTPXRequest.DEFAULT_NONE,
        pool_timeout: Any = HTTPXRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        result = await super().do_request(
            url, method, request_data, read_timeout, write_timeout, connect_timeout, pool_timeout
        )
        if result[0] == 200 and request_data is not None:
            self._on_success(url, request_data.parameters)
        return result


class TimingProcessor(SimpleUpdateProcessor):
    """PTB's default processor for an int ``concurrent_updates``, calling ``on_start(update)`` when an update
    gets its slot."""

    __slots__ = ("_on_start",)

    def __init__(self, max_concurrent_updates: int, on_start: Callable[[object], None]) -> None:
        super().__init__(max_concurrent_updates)
        self._on_start = on_start

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        self._on_start(update)
        await coroutine


async def instrument(
    application: Application,
    on_success: Callable[[str, dict[str, Any]], None],
    on_start: Callable[[object], None] | None = None,
) -> None:
    """Swap in the timing request (same pool size as ApplicationBuilder's default) and, with ``on_start``,
    the timing update processor."""
    bot = application.bot
    unused = bot._request[1]
    bot._request = (bot._request[0], TimingRequest(on_success, connection_pool_size=256))
    await unused.shutdown()
    if on_start is not None:
        concurrency = application.update_processor.max_concurrent_updates
        application._update_processor = TimingProcessor(concurrency, on_start)
