"""Scale-out: N bot workers on one PostgreSQL database behind HAProxy, a burst of signed WeChat check-ins and
flash-sale claims, and one worker killed mid-burst.

Project requirement (issue #17): "N worker processes (1, 2, 4) on PostgreSQL behind a real load balancer on
127.0.0.1, a burst of 10,000 signed WeChat check-ins (half of them in the first 5 s) and 10,000 flash-sale
claims for 100 units, and one worker killed mid-burst. Report per N: answered within 5 s, requests/s,
p50/p99, check-ins booked, winners, lost and doubled; and the leader failover time. Goals: nothing lost or
doubled at any N and across the kill; exactly 100 winners; failover <= 10 s; with 2 workers >= 1.5x the
requests/s of 1."

Setup, per N (``--workers 1,2,4``):

* a fresh PostgreSQL database ``vipbot_bench_scale_<N>_<random>`` on ``--postgres`` (dropped afterwards),
  migrated by opening it through ``storage`` in this process, with one flash sale created through the
  repositories (``repos.sales.create``): ``--units`` units, one per member, open since a minute ago;
* the fake WeChat API of ``tests/fakes/wechat_api.py`` in its own process (access tokens, and the
  customer-service messages that carry answers which missed the reply window), shared by every round;
* N real bots, ``python -m bot.app.cli run --config <empty file>`` each on its own port on 127.0.0.1, set up
  through the environment only (WeChat plain mode, ``storage.url`` the database, locale en, log level
  WARNING);
* HAProxy (``bench/lb.py``) on 127.0.0.1 balancing round-robin over them, health-checked on ``/healthz``.

Load (this process: HTTP/1.1 on bare asyncio transports, connections to the balancer kept alive between
requests, and an attempt cut at 5 s closes its connection as WeChat drops it: only HAProxy sees the client's
connections, the bot gets the same requests either way, and a new connection per request would cost the load
generator more CPU than this machine has to spare. During the burst its nice value is ``--client-priority``,
-10, where permitted (its children's stay 0), so that it keeps time; how late its event loop woke up and how
late the first sends left are reported, and a run whose load generator fell behind by more than 0.5 s is
marked as such):

* ``--checkins`` text messages "签到" from as many distinct OpenIDs, half of them spread evenly over the
  first ``--peak-s`` seconds (5), the rest over the next ``--tail-s`` seconds (10);
* ``--claims`` text messages "抢 <sale id>" from as many other OpenIDs, spread evenly over the first
  ``--claim-s`` seconds (5): the rush when a sale opens;
* WeChat's retries: an attempt not answered within 5 s is cut (the connection closed) and the same request
  (same URL, signature, nonce, body and MsgId) is sent again, up to ``--retries`` (3) times; an attempt that
  fails at once (connection refused or reset, a 5xx) is retried after 1 s. An HTTP 200 ends the message,
  whatever its body (WeChat takes "success" as "no passive answer").
* ``--kill-at`` seconds (4) into the burst one worker is killed with SIGKILL: the leader (the worker whose
  ``/healthz`` says ``"leading": true``; worker 1 for a bot that does not report leadership). The failover
  time runs from the kill until another process holds the leader's advisory lock (``bot.app.leader``), as
  PostgreSQL's ``pg_locks`` shows it (polled every 50 ms on a connection of the benchmark's own: a swamped
  worker's ``/healthz`` may take seconds to answer, the database's view does not); the time until a
  survivor's ``/healthz`` (asked directly, not through the balancer) says it leads is reported beside it.
  With N = 1 the only worker is started again at once on the same port (a supervisor's restart): the failover
  is then the new process taking the lead; requests meanwhile get HAProxy's 503 and are retried as WeChat
  would. (A bot without leader election: /healthz answering 200 counts as leading.)

After the burst the benchmark waits (bounded, 180 s) until the workers are idle, no customer-service message
has arrived at the fake for 3 s (a swamped worker goes on through attempts WeChat already cut, and sends their
answers late), no stored answer is left that went out neither in a response nor late, and no message kept at
its nonce binding is left unhandled (the leader's sweeps take both once they are 30 s old: the members whose
worker was killed), stops the workers
(SIGTERM) and HAProxy, and reads the database. ``--dump DIR`` keeps the workers' logs and one JSON line per
message (its attempts, its late answers, its rows) there.

CPU per part (``CpuByRole``): the CPU seconds each part used over the burst and its settling, per message sent,
and from them the most 2 workers can be over 1 on this machine at those costs (``speed_bound``): one worker is
one event loop, at most one core, while all parts together have the machine's cores.

Figures per N:

* answered <=5s: messages with an attempt answered HTTP 200 with a passive text (not "success") within the
  5-second window, in % of all messages; ``1st try`` the same for first attempts only;
* req/s: messages answered HTTP 200 (in any attempt), divided by the time from the start of the burst to the
  last such answer (a retry is the same request again, so it is not counted twice);
* p50 / p99: over every attempt, from opening its connection to its full answer; an attempt cut at 5 s counts
  as 5 s, one that failed at once as the time it took;
* booked: members with a check-in row; winners: live claim rows of the sale (and distinct members among them);
* lost: a message whose member was told it succeeded ("Checked in!", "You claimed") without the row in the
  database, or a message accepted (HTTP 200) that left neither a row nor an answer saying why (for a claim:
  "sold out");
* silent: a row in the database whose member never received the answer (no passive text and no
  customer-service message saying so);
* doubled: a member with two check-in ledger entries or two claim rows, or who received the answer twice
  (a passive text and a customer-service message, or two of those);
* dropped: messages never accepted (no HTTP 200 in any attempt: WeChat gave up on them); a row may still
  exist for one, then it is also ``silent``.

Goals (printed PASS/FAIL): lost 0, silent 0 and doubled 0 at every N (across the kill); winners exactly
``--units``; failover <= 10 s (a failover not seen within 60 s counts as failed); req/s at 2 workers >= 1.5x
that at 1 (only when both ran); and, so that the timings can be trusted, the load generator no more than 0.5 s
behind (p99). The exit status is 1 when a correctness goal (lost, silent, doubled, winners) failed or a round
could not run, else 0: the failover, speed and load-generator goals are printed only.

Run from the repository root (HAProxy from Debian's package: ``apt-get install -y haproxy``)::

    .venv/bin/python bench/scale_out.py [--workers 1,2,4] [--checkins 10000] [--claims 10000] [--units 100]
        [--json FILE] [--quick]

``--quick`` is a smoke test: 300 check-ins, 300 claims, 20 units, workers 1,2 (unless given), the same
timeline; that load does not saturate one worker, so its speed goal says nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import logging
import os
import random
import re
import resource
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from bench.common import ChildBot, child_env, cpu_seconds, percentile, spawn_bot, stop_child  # noqa: E402
from bench.lb import HAProxy, free_port  # noqa: E402
from bench.wechat_fake import WeChatFake  # noqa: E402
from tests.fakes.wechat_api import answer_text  # noqa: E402

WX_TOKEN = "benchtoken"
WX_APP_ID = "wx0123456789abcdef"
WINDOW_S = 5.0
FAST_RETRY_S = 1.0
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
CHECKIN_OK = ("Checked in!", "You already checked in")
CLAIM_WON = "You claimed"
CLAIM_REFUSED = ("sold out",)
FIRST_CHECKIN_MSGID = 9_000_000_000
FIRST_CLAIM_MSGID = 9_500_000_000

log = logging.getLogger("bench.scale_out")


# --- PostgreSQL ------------------------------------------------------------------------------------------------
def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def prepare_database(url: str, units: int) -> int:
    """Migrate the fresh database through ``storage`` and create the flash sale; its id."""
    from bot.app.config import StorageSettings
    from storage.db.open import open_database

    db = await open_database(StorageSettings(url=url), readers=1, writers=1)
    try:
        now = int(time.time())
        async with db.transaction() as repos:
            return await repos.sales.create("Bench teapot", 9900, units, now - 60, None, 1, None, None, True, None,
                                            now)  # fmt: skip
    finally:
        await db.close()


# --- the workers -----------------------------------------------------------------------------------------------
def worker_port() -> int:
    """A free port below the ephemeral range: the load generator's thousands of outgoing connections take ports
    from that range, and one of them could take a worker's port between this choice and the worker's bind."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(100):
        port = random.randrange(max(1024, low - 12000), low - 1)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    return free_port()


def worker_env(wx: WeChatFake, url: str, port: int) -> dict[str, str]:
    env = child_env(drop=lambda k: k.startswith(("VIPBOT_", "WECHAT_", "TELEGRAM_")))
    env.update(
        WECHAT_TOKEN=WX_TOKEN,
        WECHAT_APP_SECRET="bench-secret",
        VIPBOT_WECHAT__APP_ID=WX_APP_ID,
        VIPBOT_WECHAT__MODE="plain",
        VIPBOT_WECHAT__API_BASE_URL=wx.base_url,
        VIPBOT_HTTP__HOST="127.0.0.1",
        VIPBOT_HTTP__PORT=str(port),
        VIPBOT_STORAGE__URL=url,
        VIPBOT_LOCALE="en",
        VIPBOT_LOG_LEVEL="WARNING",
    )
    return env


@dataclass
class Worker(ChildBot):
    name: str = ""
    port: int = 0
    starts: int = 0

    def start(self) -> None:
        config = self.workdir / "bench.yaml"
        config.write_text("{}\n", encoding="utf-8")
        self.starts += 1
        banner = f"--- {self.name} start {self.starts} at {time.strftime('%H:%M:%S')} ---\n"
        self.proc = spawn_bot(self.workdir, self.env, self.log_path, "--config", str(config), banner=banner)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30.0) -> int | None:
        return None if self.proc is None else stop_child(self.proc, timeout)


async def health(client: httpx.AsyncClient, port: int) -> dict[str, Any] | None:
    """A worker's /healthz (asked directly, not through the balancer), None when it does not answer 200."""
    try:
        response = await client.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    try:
        return dict(response.json())
    except ValueError:
        return None


def leads(status: dict[str, Any] | None) -> bool:
    """Whether this /healthz answer says its process leads (a bot without leader election: answering is leading)."""
    return status is not None and bool(status.get("leading", True))


async def wait_healthy(worker: Worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if not worker.alive():
                raise RuntimeError(f"{worker.name} exited during start-up:\n" + worker.log_text()[-1500:])
            if await health(client, worker.port) is not None:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{worker.name} did not answer /healthz within {timeout:.0f} s")


async def find_leader(workers: list[Worker], timeout: float = 30.0) -> tuple[Worker, bool]:
    """The worker whose /healthz says it leads, and whether the bot reports leadership at all."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            states = [await health(client, w.port) for w in workers]
            if states and all(s is not None and "leading" not in s for s in states):
                return workers[0], False
            leading = [w for w, s in zip(workers, states, strict=True) if s is not None and s.get("leading")]
            if len(leading) == 1:
                return leading[0], True
            await asyncio.sleep(0.1)
    raise RuntimeError(f"no single leader among the workers within {timeout:.0f} s")


# --- the messages ----------------------------------------------------------------------------------------------
@dataclass
class Attempt:
    started: float
    ended: float
    status: int
    """HTTP status; 0: no answer (cut at 5 s, or a connection error)."""
    text: str = ""
    """The passive answer's text ("" for "success" or no answer)."""
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Message:
    kind: str
    """checkin or claim."""
    openid: str
    url: str
    body: bytes
    due: float
    """Seconds after the start of the burst when it is first sent."""
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def accepted(self) -> Attempt | None:
        return next((a for a in self.attempts if a.status == 200), None)


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def wechat_message(kind: str, index: int, text: str, msg_id: int, due: float, now: int) -> Message:
    openid = f"o-scale-{kind}-{index:06d}"
    xml = (
        f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
    timestamp, nonce = str(now), f"{kind[:2]}{index}"
    params = {"signature": signature(WX_TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
    return Message(kind, openid, "/wechat?" + urllib.parse.urlencode(params), xml.encode(), due)


@dataclass
class Load:
    checkins: int
    claims: int
    units: int
    peak_s: float
    tail_s: float
    claim_s: float
    kill_at: float
    retries: int


def schedule(load: Load, sale_id: int) -> list[Message]:
    """Every message with its due time: check-ins half in the peak, half in the tail; claims in the rush."""
    now = int(time.time())
    half = load.checkins // 2
    out = []
    for i in range(load.checkins):
        due = i / max(half, 1) * load.peak_s if i < half else (
            load.peak_s + (i - half) / max(load.checkins - half, 1) * load.tail_s)  # fmt: skip
        out.append(wechat_message("checkin", i, "签到", FIRST_CHECKIN_MSGID + i, due, now))
    for i in range(load.claims):
        due = i / max(load.claims, 1) * load.claim_s
        out.append(wechat_message("claim", i, f"抢 {sale_id}", FIRST_CLAIM_MSGID + i, due, now))
    return out


class _Connection(asyncio.Protocol):
    """A kept-alive HTTP/1.1 connection to the balancer, one request at a time (bare transport: cheaper than
    asyncio streams, and the load generator shares two cores with everything it measures)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.data = bytearray()
        self.pending: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.answered = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def request(self, data: bytes) -> asyncio.Future[tuple[int, bytes, bool]]:
        """Send one request; the future gets (status, body, whether the connection may be used again)."""
        assert self.transport is not None and self.pending is None
        self.pending = asyncio.get_running_loop().create_future()
        self.data.clear()
        self.transport.write(data)
        return self.pending

    def data_received(self, data: bytes) -> None:
        self.data += data
        head_end = self.data.find(b"\r\n\r\n")
        if head_end < 0:
            return
        head = bytes(self.data[:head_end]).lower()
        length = _content_length(head)
        if length is not None and len(self.data) - head_end - 4 >= length:
            self._finish(head, bytes(self.data[head_end + 4 : head_end + 4 + length]), b"connection: close" not in head)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        head_end = self.data.find(b"\r\n\r\n")
        if head_end >= 0 and _content_length(bytes(self.data[:head_end]).lower()) is None:
            self._finish(bytes(self.data[:head_end]).lower(), bytes(self.data[head_end + 4 :]), False)
        elif self.pending is not None and not self.pending.done():
            self.pending.set_exception(ConnectionResetError("closed before a full answer"))

    def _finish(self, head: bytes, body: bytes, keep: bool) -> None:
        pending, self.pending = self.pending, None
        if pending is None or pending.done():
            return
        try:
            status = int(head[: head.find(b"\r\n")].split()[1])
        except (ValueError, IndexError):
            pending.set_exception(ValueError("malformed status line"))
            return
        self.answered += 1
        pending.set_result((status, body, keep))

    def close(self) -> None:
        self.closed = True
        if self.pending is not None:
            self.pending.cancel()  # nothing may set it later
            self.pending = None
        if self.transport is not None:
            self.transport.close()


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return None


class Client:
    """Requests to the balancer on kept-alive connections (a request cut at 5 s closes its connection, as
    WeChat drops it). The balancer, not the bot, sees the client's connections: the bot gets the same
    requests either way."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[_Connection] = []
        self.opened = 0

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, "127.0.0.1", self.port)
        self.opened += 1
        return conn

    async def post(self, msg: Message) -> tuple[int, str]:
        head = [f"POST {msg.url} HTTP/1.1", f"Host: 127.0.0.1:{self.port}", f"Content-Length: {len(msg.body)}",
                "Content-Type: text/xml", "", ""]  # fmt: skip
        data = "\r\n".join(head).encode() + msg.body
        while self.idle:
            conn = self.idle.pop()
            if conn.closed:
                continue
            try:
                return await self._exchange(conn, data)
            except ConnectionResetError:
                continue  # the balancer closed the idle connection meanwhile: not this request's failure
        return await self._exchange(await self._connect(), data)

    async def _exchange(self, conn: _Connection, data: bytes) -> tuple[int, str]:
        kept = False
        try:
            status, body, keep = await conn.request(data)
            if keep and not conn.closed:
                self.idle.append(conn)
                kept = True
            return status, body.decode("utf-8", errors="replace")
        finally:
            if not kept:
                conn.close()

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


_CONTENT = re.compile(r"<Content><!\[CDATA\[(.*?)\]\]></Content>", re.DOTALL)


def passive_text(body: str) -> str:
    """The text of a passive answer ("" for "success"); the fake's reader for anything unusual."""
    found = _CONTENT.search(body)
    return found.group(1) if found else answer_text(body)


async def send(client: Client, msg: Message, t0: float, retries: int) -> None:
    """Send the message at its due time, as WeChat does: cut at 5 s, retried up to `retries` times."""
    await asyncio.sleep(max(0.0, t0 + msg.due - time.monotonic()))
    for _ in range(1 + retries):
        started = time.monotonic()
        try:
            async with asyncio.timeout(WINDOW_S):
                status, body = await client.post(msg)
        except TimeoutError:
            msg.attempts.append(Attempt(started, time.monotonic(), 0, error="cut at 5 s"))
            continue
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError) as exc:
            msg.attempts.append(Attempt(started, time.monotonic(), 0, error=type(exc).__name__))
            await asyncio.sleep(FAST_RETRY_S)
            continue
        text = ""
        if status == 200:
            try:
                text = passive_text(body)
            except Exception as exc:  # a malformed answer is a finding, not a crash of the benchmark
                text = f"<unreadable answer: {type(exc).__name__}>"
        msg.attempts.append(Attempt(started, time.monotonic(), status, text))
        if status == 200:
            return
        await asyncio.sleep(FAST_RETRY_S)


class LagMonitor:
    """How late this process's event loop wakes up (a 50 ms sleep, over and over): when the load generator falls
    behind, its sends and its 5-second cuts are late by as much, and the figures say so."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.05)
            self.lags.append(time.monotonic() - before - 0.05)

    def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
        ms = [lag * 1000 for lag in self.lags]
        return {"p50_ms": round(percentile(ms, 0.5), 1), "p99_ms": round(percentile(ms, 0.99), 1),
                "max_ms": round(max(ms, default=0.0), 1)}  # fmt: skip


class CpuByRole:
    """CPU seconds per role over the burst and its settling: the workers (every process a worker ran as, the
    killed and restarted ones included), PostgreSQL (every ``postgres`` process: the backends and the server's
    own), HAProxy, the load generator (this process) and the rest of the machine. /proc is read every 0.5 s in a
    thread, so a process that ends between two readings is counted up to its last one. The split says what one
    request costs each part: more workers can only help while the workers are the part that runs out of CPU."""

    def __init__(self, worker_pids: Any) -> None:
        self._worker_pids = worker_pids
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self._machine0 = self._machine()
        self._task: asyncio.Task[None] | None = None
        for pid, (_role, cpu) in self._read().items():
            self._first[pid] = cpu

    @staticmethod
    def _machine() -> float:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        busy = sum(int(f) for f in fields) - int(fields[3]) - int(fields[4])  # minus idle and iowait
        return busy / os.sysconf("SC_CLK_TCK")

    def _role(self, pid: int, comm: str) -> str:
        if pid == os.getpid():
            return "load generator"
        if pid in self._worker_pids():
            return "workers"
        if comm == "postgres":
            return "postgres"
        if comm == "haproxy":
            return "haproxy"
        return "other"

    def _read(self) -> dict[int, tuple[str, float]]:
        out: dict[int, tuple[str, float]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            out[int(entry)] = (self._role(int(entry), comm), cpu)
        return out

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._last.update(await loop.run_in_executor(None, self._read))
            await asyncio.sleep(0.5)

    async def stop(self) -> dict[str, float]:
        if self._task is not None:
            self._task.cancel()
        self._last.update(await asyncio.get_running_loop().run_in_executor(None, self._read))
        roles: Counter[str] = Counter()
        for pid, (role, cpu) in self._last.items():
            roles[role] += cpu - self._first.get(pid, 0.0)
        machine = self._machine() - self._machine0
        roles["other"] = max(0.0, machine - sum(v for k, v in roles.items() if k != "other"))
        return {role: round(roles[role], 1) for role in ("workers", "postgres", "haproxy", "load generator", "other")}


# --- one round -------------------------------------------------------------------------------------------------
@dataclass
class Kill:
    worker: str = ""
    at_s: float = float("nan")
    """Seconds into the burst."""
    failover_s: float = float("nan")
    """From the kill until another process holds the leader lock in PostgreSQL."""
    new_leader: str = ""
    healthz_failover_s: float = float("nan")
    """From the kill until a survivor's (or the restarted process's) /healthz says it leads."""
    healthz_leader: str = ""
    reports_leadership: bool = False
    restarted: bool = False


@dataclass
class Figures:
    messages: int = 0
    answered_5s: int = 0
    first_try_5s: int = 0
    accepted: int = 0
    dropped: int = 0
    attempts: int = 0
    rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    lost: int = 0
    silent: int = 0
    doubled: int = 0
    late_answers: int = 0
    """Answers that arrived by customer-service message."""
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Round:
    workers: int
    database: str = ""
    seconds: float = 0.0
    """From the start of the burst to the last answer."""
    kill: Kill = field(default_factory=Kill)
    checkin: Figures = field(default_factory=Figures)
    claim: Figures = field(default_factory=Figures)
    booked: int = 0
    winners: int = 0
    winner_members: int = 0
    sold: int = 0
    rate: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    answered_5s_pct: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""
    client_cpu_s: float = 0.0
    """CPU seconds of this process (the load generator) during the burst."""
    client_lag: dict[str, float] = field(default_factory=dict)
    """How late the load generator's event loop woke up during the burst."""
    client_connections: int = 0
    """Connections the load generator opened to the balancer."""
    settle_s: float = 0.0
    """How long the workers went on after the last answer of the burst (backlog, late answers)."""
    cpu_s: dict[str, float] = field(default_factory=dict)
    """CPU seconds per role from the start of the burst to the end of its settling (``CpuByRole``)."""


LEADER_SQL = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def leader_lock() -> int | None:
    """The advisory lock the leading process holds (``bot.app.leader``), None for a bot without leader election."""
    try:
        from bot.app.leader import LEADER_LOCK
    except ImportError:
        return None
    return int(LEADER_LOCK)


async def lock_holder(conn: asyncpg.Connection, lock: int) -> str | None:
    """The application name ('vipbot <pid>@<host>') of the session holding the leader lock, as PostgreSQL sees it."""
    name = await conn.fetchval(LEADER_SQL, (lock >> 32) & 0xFFFFFFFF, lock & 0xFFFFFFFF)
    return None if name is None else str(name)


def holder_pid(name: str | None) -> int | None:
    try:
        return int(name.split()[1].split("@")[0]) if name else None
    except (IndexError, ValueError):
        return None


async def kill_one(
    workers: list[Worker], leader: Worker, reports: bool, t0: float, at: float, kill: Kill, url: str
) -> None:
    """At `at` s into the burst SIGKILL the leader; then time until another process holds the leader lock in
    PostgreSQL (the database's view, unaffected by how busy the workers are), and until a survivor (N >= 2) or
    the restarted process (N = 1) says on /healthz that it leads."""
    lock = leader_lock()
    conn = await asyncpg.connect(url, timeout=10) if lock is not None else None
    try:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        kill.worker, kill.reports_leadership = leader.name, reports
        old_pid = leader.proc.pid if leader.proc is not None else None
        leader.kill()
        killed = time.monotonic()
        kill.at_s = killed - t0
        survivors = [w for w in workers if w is not leader]
        if not survivors:
            leader.start()
            if leader.proc is not None:
                set_priority(leader.proc.pid, 0)  # not the load generator's raised priority
            kill.restarted = True
            survivors = [leader]
        pids = {w.proc.pid: w.name for w in survivors if w.proc is not None}
        deadline = killed + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline and (kill.failover_s != kill.failover_s or
                                                   kill.healthz_failover_s != kill.healthz_failover_s):  # fmt: skip
                if conn is not None and lock is not None and kill.failover_s != kill.failover_s:
                    pid = holder_pid(await lock_holder(conn, lock))
                    if pid is not None and pid != old_pid:
                        kill.failover_s = time.monotonic() - killed
                        kill.new_leader = pids.get(pid, f"pid {pid}")
                if kill.healthz_failover_s != kill.healthz_failover_s:
                    states = await asyncio.gather(*(health(client, w.port) for w in survivors))
                    for worker, state in zip(survivors, states, strict=True):
                        if leads(state):
                            kill.healthz_failover_s = time.monotonic() - killed
                            kill.healthz_leader = worker.name
                            break
                await asyncio.sleep(0.05)
        if conn is None:  # no leader lock to watch: /healthz is the only view
            kill.failover_s, kill.new_leader = kill.healthz_failover_s, kill.healthz_leader
    finally:
        if conn is not None:
            await conn.close()


def busy_seconds(workers: list[Worker]) -> float:
    """CPU seconds the live workers have used so far."""
    total = 0.0
    for worker in workers:
        if worker.alive() and worker.proc is not None:
            try:
                total += cpu_seconds(worker.proc.pid)
            except OSError:
                pass
    return total


UNSENT_SQL = (
    "SELECT COUNT(*) FROM wechat_answers WHERE late_at IS NULL AND passive_at IS NULL",
    "SELECT COUNT(*) FROM inbox WHERE channel = 'wechat' AND done_at IS NULL",
)
"""Stored answers that went out neither in an HTTP response nor late, and messages kept at their nonce binding
that nobody has handled: the leader sends the first and handles the second once they are 30 s old
(``WeChatChannel.deliver_undelivered`` and ``resume_kept``, every 10 s)."""


async def unsent_answers(url: str) -> int:
    """How many stored answers and kept messages wait for the leader's sweeps (0 for a bot that keeps none)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        total = 0
        for sql in UNSENT_SQL:
            try:
                total += int(await conn.fetchval(sql))
            except asyncpg.UndefinedTableError:
                pass
        return total
    finally:
        await conn.close()


async def settle(
    wx: WeChatFake, workers: list[Worker], url: str, quiet_s: float = 3.0, timeout: float = 180.0
) -> float:
    """Wait until the workers are idle (under 10% of a core together), no customer-service message has arrived
    for `quiet_s` and no stored answer waits for the leader's sweep of undelivered answers, at most `timeout`:
    the backlog of a swamped worker (attempts WeChat already cut) and the late answers are through before the
    workers are stopped. The seconds waited."""
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    last, since = -1, started
    cpu = busy_seconds(workers)
    while time.monotonic() - started < timeout:
        await asyncio.sleep(0.5)
        count = int((await loop.run_in_executor(None, wx.control, "count"))["messages"])
        used, cpu = busy_seconds(workers) - cpu, busy_seconds(workers)
        if count != last or used > 0.05:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= quiet_s and await unsent_answers(url) == 0:
            break
    return time.monotonic() - started


def set_priority(pid: int, value: int) -> bool:
    """Set a process's nice value; False where not permitted."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, value)
    except OSError:
        return False
    return True


async def read_database(url: str, sale_id: int) -> dict[str, Any]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        checkin_rows = {r["external_id"]: int(r["n"]) for r in await conn.fetch(
            "SELECT i.external_id, COUNT(c.day) AS n FROM identities i JOIN checkins c ON c.member_id = i.member_id"
            " WHERE i.channel = 'wechat' GROUP BY i.external_id")}  # fmt: skip
        ledger = {r["external_id"]: int(r["n"]) for r in await conn.fetch(
            "SELECT i.external_id, COUNT(*) AS n FROM identities i JOIN ledger l ON l.member_id = i.member_id"
            " WHERE i.channel = 'wechat' AND l.reason = 'checkin' GROUP BY i.external_id")}  # fmt: skip
        claims = {r["external_id"]: int(r["n"]) for r in await conn.fetch(
            "SELECT i.external_id, COUNT(*) AS n FROM identities i JOIN sale_claims s ON s.member_id = i.member_id"
            " WHERE i.channel = 'wechat' AND s.sale_id = $1 AND s.state <> 'released' GROUP BY i.external_id",
            sale_id)}  # fmt: skip
        sold = int(await conn.fetchval("SELECT sold FROM sales WHERE id = $1", sale_id))
        members = int(await conn.fetchval("SELECT COUNT(*) FROM identities WHERE channel = 'wechat'"))
        mismatches = int(await conn.fetchval(
            "SELECT COUNT(*) FROM members m LEFT JOIN (SELECT member_id, SUM(delta) AS s FROM ledger"
            " GROUP BY member_id) l ON l.member_id = m.id WHERE m.balance <> COALESCE(l.s, 0)"))  # fmt: skip
    finally:
        await conn.close()
    return {"checkins": checkin_rows, "ledger": ledger, "claims": claims, "sold": sold, "members": members,
            "balance_mismatches": mismatches}  # fmt: skip


def keep_log(path: Path, worker: Worker) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(worker.log_text(), encoding="utf-8")


def write_dump(path: Path, msgs: list[Message], db: dict[str, Any], late: dict[str, list[str]], t0: float) -> None:
    """One JSON line per message: its attempts (times from the start of the burst), the customer-service texts
    its member received and its rows in the database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = db["checkins"] | db["claims"]
    with path.open("w", encoding="utf-8") as out:
        for m in msgs:
            attempts = [[round(a.started - t0, 3), round(a.seconds, 3), a.status, a.text[:60], a.error]
                        for a in m.attempts]  # fmt: skip
            line = {"kind": m.kind, "openid": m.openid, "due": round(m.due, 3), "attempts": attempts,
                    "late": late.get(m.openid, []), "rows": rows.get(m.openid, 0)}  # fmt: skip
            out.write(json.dumps(line, ensure_ascii=False) + "\n")


def failures_by_second(msgs: list[Message], t0: float) -> dict[int, int]:
    """Second of the burst -> attempts started then that got no HTTP 200 (where the kill shows)."""
    seconds = Counter(int(a.started - t0) for m in msgs for a in m.attempts if a.status != 200)
    return dict(sorted(seconds.items()))


def figures(msgs: list[Message], rows: dict[str, int], effects: dict[str, int], late: dict[str, list[str]],
            ok: tuple[str, ...], refused: tuple[str, ...], t0: float) -> Figures:  # fmt: skip
    """The figures of one kind of message: `rows` OpenID -> rows in the database (check-ins or claims),
    `effects` OpenID -> booked entries that must be one (ledger entries or claim rows)."""
    fig = Figures(messages=len(msgs))
    told_ok = already = 0
    for msg in msgs:
        fig.attempts += len(msg.attempts)
        accepted = msg.accepted
        passive = [a.text for a in msg.attempts if a.status == 200 and a.text]
        if any(a.status == 200 and a.text and a.seconds <= WINDOW_S for a in msg.attempts):
            fig.answered_5s += 1
        first = msg.attempts[0] if msg.attempts else None
        if first is not None and first.status == 200 and first.text and first.seconds <= WINDOW_S:
            fig.first_try_5s += 1
        if accepted is None:
            fig.dropped += 1
        else:
            fig.accepted += 1
        cs = late.get(msg.openid, [])
        fig.late_answers += len(cs)
        answers = passive + cs
        said_ok = any(any(o in t for o in ok) for t in answers)
        said_no = any(any(r in t for r in refused) for t in answers)
        told_ok += said_ok
        already += any("already" in t for t in answers)
        has_row = rows.get(msg.openid, 0) > 0
        if (said_ok and not has_row) or (accepted is not None and not has_row and not said_no):
            fig.lost += 1
        if has_row and not said_ok:
            fig.silent += 1
        if effects.get(msg.openid, 0) > 1 or len(answers) > 1:
            fig.doubled += 1
    fig.notes = {"told_ok": told_ok, "already_checked_in_answers": already,
                 "late_texts": Counter(t[:40] for m in msgs for t in late.get(m.openid, [])).most_common(4),
                 "texts": Counter(a.text[:40] for m in msgs for a in m.attempts if a.text).most_common(4),
                 "errors": Counter(a.error or f"HTTP {a.status}" for m in msgs for a in m.attempts
                                   if a.status != 200).most_common(5),
                 "failed_attempts_by_second": failures_by_second(msgs, t0)}  # fmt: skip
    return fig


async def run_round(
    n: int, load: Load, wx: WeChatFake, postgres: str, dump: Path | None = None, priority: int = 0
) -> Round:
    result = Round(n)
    name = f"vipbot_bench_scale_{n}_{random.randrange(16**6):06x}"
    result.database = name
    url = with_database(postgres, name)
    await admin(postgres, f'CREATE DATABASE "{name}"')
    workers: list[Worker] = []
    lb: HAProxy | None = None
    loop = asyncio.get_running_loop()
    tmp = tempfile.TemporaryDirectory(prefix="vipbot-scale-")
    try:
        sale_id = await prepare_database(url, load.units)
        await loop.run_in_executor(None, wx.reset)
        folder = Path(tmp.name)
        for i in range(n):
            port = worker_port()
            workdir = folder / f"w{i + 1}"
            workdir.mkdir()
            workers.append(Worker(worker_env(wx, url, port), workdir, workdir / "bot.log", name=f"w{i + 1}",
                                  port=port))  # fmt: skip
        for worker in workers:
            worker.start()
        await asyncio.gather(*(wait_healthy(w) for w in workers))
        lb = HAProxy([(w.name, w.port) for w in workers], free_port()).start()
        await loop.run_in_executor(None, lb.wait_up, [w.name for w in workers])
        leader, reports = await find_leader(workers)
        msgs = schedule(load, sale_id)
        print(f"  N={n}: {len(workers)} workers up (leader {leader.name}), {len(msgs)} messages ...", flush=True)
        if priority:
            set_priority(0, priority)  # the load generator keeps time; its children are set back to 0
        gc.collect()
        gc.freeze()  # the messages stay to the end: no collection walks them again
        gc.disable()  # nor pauses the load generator during the burst
        lag = LagMonitor()
        lag.start()
        roles = CpuByRole(lambda: {w.proc.pid for w in workers if w.proc is not None})
        roles.start()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        killer = asyncio.ensure_future(kill_one(workers, leader, reports, t0, load.kill_at, result.kill, url))
        client = Client(lb.port)
        await asyncio.gather(*(send(client, m, t0, load.retries) for m in msgs))
        client.close()
        result.client_connections = client.opened
        await killer
        gc.enable()
        result.client_cpu_s = round(time.process_time() - cpu0, 1)
        set_priority(0, 0)
        result.client_lag = lag.stop()
        first_late = [(m.attempts[0].started - t0 - m.due) * 1000 for m in msgs if m.attempts]
        result.client_lag["first_send_late_p99_ms"] = round(percentile(first_late, 0.99), 1)
        ends = [a.ended for m in msgs for a in m.attempts if a.status == 200]
        result.seconds = (max(ends) if ends else time.monotonic()) - t0
        result.settle_s = round(await settle(wx, workers, url), 1)
        result.cpu_s = await roles.stop()
        late = await loop.run_in_executor(None, wx.received)
        for worker in workers:
            code = worker.terminate()
            if (worker.name != result.kill.worker or result.kill.restarted) and code not in (0, None):
                result.problems.append(f"{worker.name} exited with {code} when stopped")
        lb.stop()
        lb = None
        db = await read_database(url, sale_id)
        checkins = [m for m in msgs if m.kind == "checkin"]
        claims = [m for m in msgs if m.kind == "claim"]
        if dump is not None:
            write_dump(dump / f"messages-n{n}.jsonl", msgs, db, late, t0)
        result.checkin = figures(checkins, db["checkins"], db["ledger"], late, CHECKIN_OK, (), t0)
        result.claim = figures(claims, db["claims"], db["claims"], late, (CLAIM_WON,), CLAIM_REFUSED, t0)
        result.booked = sum(1 for m in checkins if db["checkins"].get(m.openid, 0) > 0)
        result.winners = sum(db["claims"].values())
        result.winner_members = len(db["claims"])
        result.sold = db["sold"]
        accepted = len([m for m in msgs if m.accepted is not None])
        result.rate = accepted / max(result.seconds, 1e-9)
        times = [a.seconds * 1000 for m in msgs for a in m.attempts]
        result.p50_ms, result.p99_ms = percentile(times, 0.5), percentile(times, 0.99)
        answered = result.checkin.answered_5s + result.claim.answered_5s
        result.answered_5s_pct = 100.0 * answered / max(len(msgs), 1)
        if db["balance_mismatches"]:
            result.problems.append(f"{db['balance_mismatches']} balances differ from their ledger sums")
        for worker in workers:
            text = worker.log_text()
            if "Traceback" in text:
                result.notes.append(f"{worker.name}: traceback in its log: {text[text.index('Traceback') :][:500]}")
            warnings = Counter(line.split(": ", 1)[-1][:90] for line in text.splitlines() if "WARNING" in line)
            if warnings:
                result.notes.append(f"{worker.name}: warnings {dict(warnings.most_common(3))}")
    except Exception as exc:  # one round failing (e.g. a second worker refused) is reported; the others run
        result.error = f"{type(exc).__name__}: {exc}"
        log.debug("round %s failed", n, exc_info=True)
    finally:
        gc.enable()
        gc.unfreeze()
        set_priority(0, 0)
        for worker in workers:
            if worker.alive():
                worker.terminate(10)
            if dump is not None:
                keep_log(dump / f"{worker.name}-n{n}.log", worker)
        if lb is not None:
            lb.stop()
        tmp.cleanup()
        try:
            await admin(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:  # the figures stand; say which database is left behind
            result.notes.append(f"could not drop the database {name}: {exc}")
    return result


# --- reporting -------------------------------------------------------------------------------------------------
HEADER = (
    f"{'N':>2} {'msgs':>6} {'<=5s %':>6} {'1st %':>6} {'req/s':>6} {'wall s':>6} {'p50 ms':>7} {'p99 ms':>7}"
    f" {'booked':>6} {'winners':>7} {'lost':>5} {'silent':>6} {'doubled':>7} {'dropped':>7} {'late':>5}"
    f" {'failover s':>10}"
)


def _f(value: float, digits: int = 0) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def row(r: Round) -> str:
    c, k = r.checkin, r.claim
    msgs = c.messages + k.messages
    first = 100.0 * (c.first_try_5s + k.first_try_5s) / max(msgs, 1)
    return (
        f"{r.workers:>2} {msgs:>6} {r.answered_5s_pct:6.1f} {first:6.1f} {r.rate:6.0f} {r.seconds:6.1f}"
        f" {_f(r.p50_ms):>7} {_f(r.p99_ms):>7} {r.booked:>6} {r.winners:>7} {c.lost + k.lost:>5}"
        f" {c.silent + k.silent:>6} {c.doubled + k.doubled:>7} {c.dropped + k.dropped:>7}"
        f" {c.late_answers + k.late_answers:>5} {_f(r.kill.failover_s, 2):>10}"
    )


def speed_bound(r: Round, cpus: int) -> tuple[dict[str, float], float] | None:
    """What one message cost each part in the round `r` (ms of CPU per message sent), and the most the rate of 2
    workers can be over that of 1 on `cpus` cores at those costs: a worker is one event loop, at most one core,
    so 1 worker answers at most 1/w messages a second and 2 workers 2/w; and all parts together at most
    cpus/(w + rest), where w is a worker's CPU per message and rest the others' (PostgreSQL, HAProxy, the load
    generator, the rest of the machine). The ratio of the two rates' upper bounds is the best 2 workers can do
    here, whatever the bot does."""
    messages = r.checkin.messages + r.claim.messages
    if not r.cpu_s or not messages:
        return None
    per = {role: 1000 * seconds / messages for role, seconds in r.cpu_s.items()}
    w = per.get("workers", 0.0)
    rest = sum(v for k, v in per.items() if k != "workers")
    if w <= 0:
        return None
    one = min(1 / w, cpus / (w + rest))
    two = min(2 / w, cpus / (w + rest))
    return per, two / one


def goals(rounds: list[Round], units: int) -> tuple[list[tuple[str, bool, bool]], bool]:
    """(goal, passed, is a correctness goal) per goal; and whether every correctness goal passed."""
    out: list[tuple[str, bool, bool]] = []
    for r in rounds:
        if r.error:
            out.append((f"N={r.workers}: the round ran ({r.error[:200]})", False, True))
            continue
        lost = r.checkin.lost + r.claim.lost
        silent = r.checkin.silent + r.claim.silent
        doubled = r.checkin.doubled + r.claim.doubled
        out.append((f"N={r.workers}: nothing lost (lost {lost})", lost == 0, True))
        out.append((f"N={r.workers}: no answer lost (silent {silent})", silent == 0, True))
        out.append((f"N={r.workers}: nothing doubled (doubled {doubled})", doubled == 0, True))
        exact = r.winners == units and r.winner_members == units and r.sold == units
        out.append((f"N={r.workers}: exactly {units} winners (claim rows {r.winners}, members {r.winner_members},"
                    f" sold {r.sold})", exact, True))  # fmt: skip
        if r.problems:
            out.append((f"N={r.workers}: workers and balances sound ({'; '.join(r.problems)})", False, True))
        behind = max(r.client_lag.get("p99_ms", 0.0), r.client_lag.get("first_send_late_p99_ms", 0.0))
        out.append((f"N={r.workers}: the load generator kept time (p99 {behind / 1000:.1f} s late; if not, the"
                    " timings are its own, not the bot's)", behind <= 500, False))  # fmt: skip
        failover = r.kill.failover_s
        out.append((f"N={r.workers}: failover <= 10 s ({_f(failover, 2)} s)", failover <= 10.0, False))
    by_n = {r.workers: r for r in rounds if not r.error}
    if 1 in by_n and 2 in by_n:
        ratio = by_n[2].rate / max(by_n[1].rate, 1e-9)
        out.append((f"2 workers >= 1.5x the req/s of 1 ({ratio:.2f}x)", ratio >= 1.5, False))
    return out, all(passed for _, passed, correctness in out if correctness)


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    problem = HAProxy.available()
    if problem:
        print(problem, file=sys.stderr)
        return 2, {"error": problem}
    load = Load(args.checkins, args.claims, args.units, args.peak_s, args.tail_s, args.claim_s, args.kill_at,
                args.retries)  # fmt: skip
    wx = WeChatFake.start()
    rounds: list[Round] = []
    print(f"{load.checkins} check-ins ({load.checkins // 2} in {load.peak_s:g} s, the rest in {load.tail_s:g} s),"
          f" {load.claims} claims for {load.units} units in {load.claim_s:g} s, a worker killed at"
          f" {load.kill_at:g} s, up to {load.retries} retries; {os.cpu_count()} CPUs, load average"
          f" {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    try:
        for n in args.workers:
            dump = Path(args.dump) if args.dump else None
            rounds.append(await run_round(n, load, wx, args.postgres, dump, args.client_priority))
    finally:
        wx.stop()
    print(HEADER)
    for r in rounds:
        print(row(r) if not r.error else f"{r.workers:>2} round failed: {r.error[:300]}")
    for r in rounds:
        if r.error:
            continue
        k = r.kill
        print(
            f"[N={r.workers}] killed {k.worker} at {_f(k.at_s, 2)} s; {'restarted; ' if k.restarted else ''}"
            f"leader lock taken after {_f(k.failover_s, 2)} s by {k.new_leader or '-'}; /healthz says so after"
            f" {_f(k.healthz_failover_s, 2)} s ({k.healthz_leader or '-'})"
            f"{'' if k.reports_leadership else ' (the bot does not report leadership: /healthz 200 counted)'}"
        )
        for label, fig in (("check-ins", r.checkin), ("claims", r.claim)):
            print(f"[N={r.workers}] {label}: {fig.messages} sent, {fig.accepted} accepted, {fig.answered_5s} answered"
                  f" <=5s ({fig.first_try_5s} on the first try), {fig.attempts} attempts, {fig.late_answers} late"
                  f" answers; lost {fig.lost}, silent {fig.silent}, doubled {fig.doubled}, dropped {fig.dropped};"
                  f" {fig.notes}")  # fmt: skip
        print(
            f"[N={r.workers}] load generator: {r.client_cpu_s} CPU s, {r.client_connections} connections, event"
            f" loop late by {r.client_lag};"
            f" the workers went on {r.settle_s} s after the burst"
        )
        print(f"[N={r.workers}] CPU s over the burst and its settling: {r.cpu_s}")
        bound = speed_bound(r, os.cpu_count() or 1)
        if bound is not None:
            per, most = bound
            print(f"[N={r.workers}] CPU ms per message: "
                  + ", ".join(f"{role} {ms:.2f}" for role, ms in per.items())
                  + f"; at these costs 2 workers can reach at most {most:.2f}x the rate of 1 on"
                  f" {os.cpu_count()} cores")  # fmt: skip
        print(f"[N={r.workers}] booked {r.booked}; winners {r.winners} ({r.winner_members} members, sold {r.sold})")
        for note in r.notes:
            print(f"[N={r.workers}] note: {note}")
    results, correct = goals(rounds, load.units)
    print("goals:")
    for goal, passed, correctness in results:
        print(f"  {'PASS' if passed else 'FAIL'} {goal}{'' if correctness else ' (not in the exit status)'}")
    print("result: " + ("ok (correctness goals met)" if correct else "FAILED (a correctness goal)"))
    report = {"load": asdict(load), "cpus": os.cpu_count(), "python": sys.version.split()[0],
              "rounds": [asdict(r) for r in rounds],
              "goals": [{"goal": g, "passed": p, "correctness": c} for g, p, c in results], "ok": correct}  # fmt: skip
    return (0 if correct else 1), report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workers", default=None, help="worker counts, one round each (default 1,2,4)")
    parser.add_argument("--checkins", type=int, default=10_000, help="check-ins from distinct OpenIDs")
    parser.add_argument("--claims", type=int, default=10_000, help="flash-sale claims from other OpenIDs")
    parser.add_argument("--units", type=int, default=100, help="units of the flash sale")
    parser.add_argument("--peak-s", type=float, default=5.0, help="seconds for the first half of the check-ins")
    parser.add_argument("--tail-s", type=float, default=10.0, help="seconds over which the second half go")
    parser.add_argument("--claim-s", type=float, default=5.0, help="seconds over which the claims go")
    parser.add_argument("--kill-at", type=float, default=4.0, help="seconds into the burst when the leader is killed")
    parser.add_argument("--retries", type=int, default=3, help="WeChat's retries of a request not answered in 5 s")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("VIPBOT_TEST_POSTGRES_URL") or DEFAULT_POSTGRES,
        help="a database on the server where the benchmark creates (and drops) its own",
    )
    parser.add_argument("--client-priority", type=int, default=-10,
                        help="nice value of the load generator during a burst (root only; 0: unchanged)")  # fmt: skip
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--dump", metavar="DIR", help="keep the workers' logs and every message's attempts there")
    parser.add_argument("--quick", action="store_true", help="smoke test: 300 check-ins, 300 claims, 20 units, N 1,2")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; what is given explicitly stays
        given = set(argv if argv is not None else sys.argv[1:])
        args.checkins = args.checkins if "--checkins" in given else 300
        args.claims = args.claims if "--claims" in given else 300
        args.units = args.units if "--units" in given else 20
        args.workers = args.workers or "1,2"
    args.workers = args.workers or "1,2,4"
    try:
        args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers is a comma-separated list of worker counts")
    if not args.workers or any(w < 1 or w > 16 for w in args.workers):
        parser.error("--workers: counts between 1 and 16")
    if args.checkins < 1 or args.claims < 1 or not 1 <= args.units <= args.claims:
        parser.error("--checkins and --claims must be >= 1, --units between 1 and --claims")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # one connection per request in flight
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally blocks stop the workers and HAProxy
    status, report = asyncio.run(bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
