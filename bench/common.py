"""Pieces shared by the benchmark scripts of ``bench/``.

* ``percentile``: the nearest-rank percentile every script reports;
* ``run_in_process_bench``: ``main`` of the benchmarks that run the bot in this process (logging, a clean
  environment, the ``bench`` coroutine, ``--json``);
* ``clean_environment`` / ``child_env``: keep a developer's real bot configuration (``VIPBOT_*`` and the
  secrets read from the environment) out of an in-process bot or a bot child process;
* ``python_executable`` / ``stop_child``: start and stop ``python -m bot.app.cli run`` child processes;
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
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from telegram.ext import Application, SimpleUpdateProcessor
from telegram.request import HTTPXRequest, RequestData

ROOT = Path(__file__).resolve().parents[1]
SECRET_VARIABLES = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET")


# --- figures -------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


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
