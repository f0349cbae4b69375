"""Webhook load: N signed WeChat check-ins and N Telegram webhook check-ins, each burst posted at once.

Project requirement: "2,000 signed WeChat check-ins posted concurrently by 2,000 members: every answer
inside the 5-second window, report requests/s and p99 latency; and the Telegram webhook path with the same
load."

Setup, per round (one round per WeChat mode given with ``--modes``, default ``plain,safe``):

* the fake Bot API of ``tests/fakes/bot_api.py`` in its own process (``bench/fake_server.py``), and the fake
  WeChat API of ``tests/fakes/wechat_api.py`` in another (it receives answers that missed the window and
  went out through the customer-service API), both on 127.0.0.1;
* the real bot, a subprocess ``python -m bot.app.cli run`` in a temporary folder (an empty config file), set up
  only through the environment: a fresh SQLite file, WeChat on (app id, token; in safe mode also the
  EncodingAESKey), Telegram in webhook mode (token, secret, a webhook URL, the fake as base URL, one VIP
  group, no rate limiter), locale en, log level INFO (so tornado's access log gives server-side times),
  ``http.host`` 127.0.0.1 on a free port. Telegram and WeChat share that one port, as in production.

Load (this process): every request is built and signed (or encrypted) beforehand; then all of them are
started with ``asyncio.gather``, bounded by ``--inflight`` (default: all N at once), each on its own new
connection (nothing warmed up). ``--client raw`` (the default) writes HTTP/1.1 on asyncio streams;
``--client httpx`` uses one ``httpx.AsyncClient`` with as many connections as requests in flight, but
httpcore's pool costs about 20 ms of CPU per request at 500-2,000 connections (O(n) scans per request),
so on a small machine the load generator, not the bot, sets the figures (2,000 requests: 70 s of client
CPU, 200+ s wall).

1. WeChat: N text messages "签到" from N distinct OpenIDs to ``/wechat``. Each answer must be HTTP 200
   with a passive XML reply (decrypted in safe mode) containing the check-in text, not "success" (which
   means the 4-second reply budget ran out and the answer goes out later by customer service), and must
   arrive within WeChat's 5-second window. When some were late, the bench waits (bounded) for their
   customer-service messages at the fake WeChat API before going on.
2. Telegram: N updates "签到" from N distinct members of the VIP group, each in their private chat (in the
   group the check-in board answers them all in one edited message), to ``/telegram`` with the secret
   header. The HTTP answer only means "queued"; the reply goes to the fake Bot API, so both are reported:
   the HTTP latency, and per update the time from its POST until its ``sendMessage`` (in its chat) arrived
   at the fake, plus when the last one arrived. Both processes read CLOCK_MONOTONIC.

Latency is per request, from just before its connection is opened to the full answer (with ``--inflight``
below N the wait for a slot is not included); rate = N / (last answer - burst start). The telegram-reply
row is end to end: per update from its POST to its sendMessage at the fake, rate and wall up to the last.
"srv" columns come from tornado's access log of the bot (request parsed -> response finished, so without
connection set-up and the client's own overhead). Also reported: the bot's CPU seconds per burst (it is
one Python process on one core) and the kernel's ListenOverflows counter (SYNs dropped because the accept
queue was full, which costs a client a 1-second SYN retransmit).

Afterwards the bot is stopped (SIGTERM) and the SQLite file is checked: N check-ins per channel, one
ledger entry per check-in, ledger sum = 2 N x base points, balances equal ledger sums. Exit status 1
when an answer is missing, wrong, "success", over 5 s, a reply was lost or doubled, or the database is off.

Run from the repository root::

    .venv/bin/python bench/webhooks.py [--members 2000] [--inflight N] [--modes plain,safe]
        [--client raw|httpx] [--paths wechat,telegram] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import xmltodict  # noqa: E402
from wechatpy.crypto import WeChatCrypto  # noqa: E402

from bench.common import ChildBot, child_env, cpu_seconds, percentile, spawn_bot, stop_child  # noqa: E402
from bench.fake_server import FakeServer  # noqa: E402
from bench.wechat_fake import WeChatFake  # noqa: E402
from handlers.core.rules import CheckinRules  # noqa: E402
from tests.fakes.bot_api import FakeBotApi, message_update, user  # noqa: E402
from tests.fakes.wechat_api import answer_text  # noqa: E402

TG_TOKEN = "123456:BENCH-TOKEN"
TG_SECRET = "bench-hook-secret"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
GROUP_ID = -1001234567890
FIRST_USER_ID = 700_000_000
WX_TOKEN = "benchtoken"
WX_APP_ID = "wx0123456789abcdef"
WX_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
CHECKIN = "签到"
EXPECTED = "Checked in! +{points} points"
WINDOW_S = 5.0
BUDGET_S = 4.0
REQUEST_TIMEOUT_S = 30.0
ACCESS = re.compile(r"tornado\.access: (\d{3}) POST (/\w+)\S* \(.*?\) ([\d.]+)ms")

log = logging.getLogger("bench.webhooks")


# --- the bot process -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bot_env(tg: FakeServer, wx: WeChatFake, db_path: Path, port: int, mode: str) -> dict[str, str]:
    env = child_env(drop=lambda k: k.startswith(("VIPBOT_", "WECHAT_", "TELEGRAM_")))
    env.update(
        TELEGRAM_BOT_TOKEN=tg.token,
        TELEGRAM_WEBHOOK_SECRET=TG_SECRET,
        WECHAT_TOKEN=WX_TOKEN,
        WECHAT_APP_SECRET="bench-secret",
        VIPBOT_TELEGRAM__BASE_URL=tg.base_url,
        VIPBOT_TELEGRAM__WEBHOOK__URL="https://shop.invalid/telegram",
        VIPBOT_TELEGRAM__RATE_LIMITER="false",
        VIPBOT_TELEGRAM__GROUPS=json.dumps([GROUP_ID]),
        VIPBOT_WECHAT__APP_ID=WX_APP_ID,
        VIPBOT_WECHAT__MODE=mode,
        VIPBOT_WECHAT__API_BASE_URL=wx.base_url,
        VIPBOT_HTTP__HOST="127.0.0.1",
        VIPBOT_HTTP__PORT=str(port),
        VIPBOT_STORAGE__PATH=str(db_path),
        VIPBOT_LOCALE="en",
        VIPBOT_LOG_LEVEL="INFO",
    )
    if mode != "plain":
        env["WECHAT_ENCODING_AES_KEY"] = WX_AES_KEY
    return env


class Bot(ChildBot):
    """`python -m bot.app.cli run --config <empty file>` as a child process, its output in a log file."""

    def start(self) -> None:
        config = self.workdir / "bench.yaml"
        config.write_text("{}\n", encoding="utf-8")
        self.proc = spawn_bot(self.workdir, self.env, self.log_path, "--config", str(config))

    def cpu_seconds(self) -> float:
        """User + system CPU of the bot process so far (from /proc)."""
        if self.proc is None:
            return 0.0
        try:
            return cpu_seconds(self.proc.pid)
        except OSError:
            return 0.0

    def terminate(self, timeout: float = 30.0) -> int | None:
        return None if self.proc is None else stop_child(self.proc, timeout)


async def wait_ready(bot: Bot, base: str, timeout: float = 60.0) -> None:
    """Poll /healthz (bounded) until both channels are up."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            if not bot.alive():
                raise RuntimeError("the bot exited during start-up:\n" + bot.log_text()[-2000:])
            try:
                health = await client.get("/healthz")
                if health.status_code == 200 and len(health.json().get("channels", {})) == 2:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"the bot did not answer /healthz within {timeout:.0f} s")


# --- building the requests -----------------------------------------------------------------------------------
@dataclass
class Prepared:
    key: str
    url: str
    body: bytes
    headers: dict[str, str]
    chat_id: int = 0
    """Telegram: the private chat the update comes from, where its reply goes."""


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def wechat_requests(members: int, mode: str, crypto: WeChatCrypto) -> list[Prepared]:
    """N signed (in safe mode also encrypted) text messages '签到' from N distinct OpenIDs."""
    now = int(time.time())
    out = []
    for i in range(members):
        openid = f"o-bench-{i:06d}"
        xml = (
            f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{now}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{CHECKIN}]]></Content><MsgId>{9_000_000_000 + i}</MsgId></xml>"
        )
        timestamp, nonce = str(now), f"n{i}"
        params = {"signature": signature(WX_TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        if mode == "safe":
            envelope = xmltodict.parse(crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            params |= {"encrypt_type": "aes", "msg_signature": envelope["MsgSignature"], "openid": openid}
            xml = (
                "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName>"
                f"<Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
            )
        url = "/wechat?" + urllib.parse.urlencode(params)
        out.append(Prepared(openid, url, xml.encode(), {"Content-Type": "text/xml"}))
    return out


def telegram_requests(members: int) -> list[Prepared]:
    """N updates '签到' from N distinct members of the VIP group, each in their private chat with the bot (in the
    group the check-in board answers them all in one message, edited: one reply per update is a private
    chat's)."""
    ids = FakeBotApi(token=TG_TOKEN)
    out = []
    headers = {"Content-Type": "application/json", SECRET_HEADER: TG_SECRET}
    for i in range(members):
        update = message_update(ids, FIRST_USER_ID + i, user(FIRST_USER_ID + i), CHECKIN)
        body = json.dumps(update, ensure_ascii=False).encode()
        out.append(Prepared(str(update["update_id"]), "/telegram", body, headers, FIRST_USER_ID + i))
    return out


# --- the load ------------------------------------------------------------------------------------------------
@dataclass
class Answer:
    started: float
    ended: float
    status: int
    body: str
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def listen_counters() -> dict[str, int]:
    """TcpExt ListenOverflows / ListenDrops of this network namespace."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            table = dict(zip(head.split()[1:], (int(v) for v in values.split()[1:]), strict=False))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


async def raw_post(host: str, port: int, req: Prepared) -> tuple[int, str]:
    """One HTTP/1.1 POST on its own connection (Connection: close), with asyncio streams only."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        head = [f"POST {req.url} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(req.body)}"]
        head += [f"{k}: {v}" for k, v in req.headers.items()] + ["Connection: close", "", ""]
        writer.write("\r\n".join(head).encode() + req.body)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = -1
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await (reader.readexactly(length) if length >= 0 else reader.read())
        return status, body.decode("utf-8", errors="replace")
    finally:
        writer.close()


async def burst(
    base: str, requests: list[Prepared], inflight: int, client_kind: str
) -> tuple[float, float, list[Answer], float]:
    """Post every request at once (at most `inflight` open); returns (start, end, answers, client cpu s)."""
    semaphore = asyncio.Semaphore(inflight)
    url = urllib.parse.urlsplit(base)
    host, port = url.hostname or "127.0.0.1", int(url.port or 80)
    limits = httpx.Limits(max_connections=inflight, max_keepalive_connections=inflight)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:

        async def send(req: Prepared) -> tuple[int, str]:
            if client_kind == "raw":
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    return await raw_post(host, port, req)
            response = await client.post(req.url, content=req.body, headers=req.headers)
            return response.status_code, response.text

        async def one(req: Prepared) -> Answer:
            async with semaphore:
                started = time.monotonic()
                try:
                    status, body = await send(req)
                except (httpx.HTTPError, OSError, TimeoutError, ValueError, IndexError) as exc:
                    return Answer(started, time.monotonic(), 0, "", f"{type(exc).__name__}: {exc}")
                return Answer(started, time.monotonic(), status, body)

        cpu0 = time.process_time()
        t0 = time.monotonic()
        answers = await asyncio.wait_for(
            asyncio.gather(*(one(r) for r in requests)), REQUEST_TIMEOUT_S + len(requests) / 10
        )
        t1 = max(a.ended for a in answers)
        return t0, t1, list(answers), time.process_time() - cpu0


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(poll)
    return await check()


# --- figures -------------------------------------------------------------------------------------------------
@dataclass
class PathResult:
    path: str
    requests: int
    ok: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    within_4s: int
    within_5s: int
    srv_p50_ms: float = float("nan")
    srv_p99_ms: float = float("nan")
    srv_max_ms: float = float("nan")
    bot_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    listen_overflows: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


def path_result(
    path: str, t0: float, t1: float, answers: list[Answer], ok: int, srv_ms: list[float], bot_cpu: float,
    client_cpu: float, overflows: int,
) -> PathResult:  # fmt: skip
    ms = [a.seconds * 1000 for a in answers]
    seconds = max(t1 - t0, 1e-9)
    return PathResult(
        path=path,
        requests=len(answers),
        ok=ok,
        seconds=seconds,
        rate=len(answers) / seconds,
        p50_ms=percentile(ms, 0.50),
        p99_ms=percentile(ms, 0.99),
        max_ms=max(ms, default=float("nan")),
        within_4s=sum(1 for a in answers if a.status and a.seconds <= BUDGET_S),
        within_5s=sum(1 for a in answers if a.status and a.seconds <= WINDOW_S),
        srv_p50_ms=percentile(srv_ms, 0.50),
        srv_p99_ms=percentile(srv_ms, 0.99),
        srv_max_ms=max(srv_ms, default=float("nan")),
        bot_cpu_s=bot_cpu,
        client_cpu_s=client_cpu,
        listen_overflows=overflows,
    )


def access_times(log_text: str, path: str, skip: int) -> tuple[list[float], int]:
    """Server-side times (ms) of POST `path` from tornado's access log, after the first `skip` lines."""
    lines = log_text.splitlines()
    times = []
    for line in lines[skip:]:
        match = ACCESS.search(line)
        if match and match.group(2) == path:
            times.append(float(match.group(3)))
    return times, len(lines)


@dataclass
class Load:
    members: int
    inflight: int
    client: str
    """raw (asyncio streams, one connection per request) or httpx."""
    paths: list[str] = field(default_factory=lambda: ["wechat", "telegram"])
    """Which bursts run: wechat, telegram."""


@dataclass
class RoundResult:
    mode: str
    members: int
    inflight: int
    client: str
    paths: list[PathResult] = field(default_factory=list)
    db: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    surprises: list[str] = field(default_factory=list)


# --- one round -----------------------------------------------------------------------------------------------
async def wechat_phase(
    bot: Bot, base: str, wx: WeChatFake, load: Load, mode: str, result: RoundResult, points: int
) -> None:
    crypto = WeChatCrypto(WX_TOKEN, WX_AES_KEY, WX_APP_ID)
    members = load.members
    requests = wechat_requests(members, mode, crypto)
    _, skip = access_times(bot.log_text(), "/wechat", 0)
    counters0, cpu0 = listen_counters(), bot.cpu_seconds()
    t0, t1, answers, client_cpu = await burst(base, requests, load.inflight, load.client)
    bot_cpu = bot.cpu_seconds() - cpu0
    overflows = listen_counters().get("ListenOverflows", 0) - counters0.get("ListenOverflows", 0)
    expected = EXPECTED.format(points=points)
    ok = late = wrong = failed = 0
    errors: Counter[str] = Counter()
    for answer in answers:
        if answer.status != 200:
            failed += 1
            errors[answer.error.split(":")[0] if answer.error else f"HTTP {answer.status}"] += 1
            continue
        try:
            text = answer_text(answer.body, crypto if mode == "safe" else None)
        except Exception as exc:  # an undecryptable or malformed answer is a failure, not a crash of the bench
            wrong += 1
            errors[type(exc).__name__] += 1
            continue
        if not text:
            late += 1
        elif expected in text:
            ok += 1
        else:
            wrong += 1
            errors[text[:60]] += 1
    await asyncio.sleep(0.3)  # let the bot flush its access log
    srv_ms, _ = access_times(bot.log_text(), "/wechat", skip)
    res = path_result(f"wechat-{mode}", t0, t1, answers, ok, srv_ms, bot_cpu, client_cpu, overflows)
    res.notes = {"success_fallbacks": late, "wrong": wrong, "failed": failed, "errors": dict(errors.most_common(5))}
    result.paths.append(res)
    if failed or wrong:
        result.problems.append(f"wechat-{mode}: {failed} failed, {wrong} wrong answers: {dict(errors)}")
    if late:
        result.problems.append(f"wechat-{mode}: {late} answers were 'success' (reply budget ran out)")
        loop = asyncio.get_running_loop()

        async def delivered() -> bool:
            stats = await loop.run_in_executor(None, wx.stats)
            return int(stats["recipients"]) >= late

        t_wait = time.monotonic()
        done = await wait_until(delivered, 120.0, 0.25)
        stats = await loop.run_in_executor(None, wx.stats)
        res.notes["late_delivered"] = stats["messages"]
        res.notes["late_delivered_after_s"] = round(time.monotonic() - t_wait, 2)
        if not done:
            result.problems.append(f"wechat-{mode}: only {stats['recipients']}/{late} late answers delivered")
    over = res.requests - res.within_5s
    if over:
        result.problems.append(f"wechat-{mode}: {over} answers outside the 5-second window")
    if srv_ms and len(srv_ms) != members:
        result.surprises.append(f"access log has {len(srv_ms)} /wechat lines for {members} requests")


async def telegram_phase(bot: Bot, base: str, tg: FakeServer, load: Load, result: RoundResult, points: int) -> None:
    members = load.members
    requests = telegram_requests(members)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, tg.reset)
    _, skip = access_times(bot.log_text(), "/telegram", 0)
    counters0, cpu0 = listen_counters(), bot.cpu_seconds()
    t0, t1, answers, client_cpu = await burst(base, requests, load.inflight, load.client)
    overflows = listen_counters().get("ListenOverflows", 0) - counters0.get("ListenOverflows", 0)
    ok = sum(1 for a in answers if a.status == 200)

    async def all_sent() -> bool:
        stats = await loop.run_in_executor(None, tg.stats)
        return int(stats["send_message"]) >= members

    completed = await wait_until(all_sent, 120.0, 0.05)
    bot_cpu = bot.cpu_seconds() - cpu0
    stats = await loop.run_in_executor(None, tg.stats)
    srv_ms, _ = access_times(bot.log_text(), "/telegram", skip)
    http = path_result("telegram-http", t0, t1, answers, ok, srv_ms, bot_cpu, client_cpu, overflows)
    result.paths.append(http)

    # Replies: each update's private chat, with the arrival time of the reply there (the fake's clock).
    by_chat = {req.chat_id: [m for m in await loop.run_in_executor(None, tg.messages, req.chat_id)
                             if m["status"] == 200] for req in requests}  # fmt: skip
    sent = [m for chat in by_chat.values() for m in chat]
    lost = sum(1 for chat in by_chat.values() if not chat)
    doubled = sum(len(chat) - 1 for chat in by_chat.values() if len(chat) > 1)
    e2e = [Answer(a.started, by_chat[req.chat_id][0]["at"], 200, by_chat[req.chat_id][0]["text"])
           for req, a in zip(requests, answers, strict=True) if by_chat[req.chat_id]]  # fmt: skip
    last = max((m["at"] for m in sent), default=t0)
    expected = EXPECTED.format(points=points)
    good = sum(1 for m in sent if expected in m["text"])
    reply = path_result("telegram-reply", t0, last, e2e, good, [], 0.0, 0.0, 0)
    reply.requests = len(sent)
    reply.rate = len(sent) / max(last - t0, 1e-9)
    reply.notes = {"send_message": stats["send_message"], "lost": lost, "doubled": doubled, "texts": stats["texts"]}
    result.paths.append(reply)
    if ok != members:
        result.problems.append(f"telegram: {members - ok} webhook posts not answered 200")
    if not completed or lost or doubled or good != members:
        result.problems.append(
            f"telegram: {stats['send_message']} sendMessage for {members} updates, lost {lost}, doubled {doubled},"
            f" {good} with the check-in text"
        )
    if http.requests - http.within_5s:
        result.problems.append(f"telegram: {http.requests - http.within_5s} webhook answers over 5 s")


def check_database(path: Path, members: int, points: int, channels: list[str]) -> tuple[dict[str, int], list[str]]:
    """Per channel N check-ins; one ledger entry each; ledger sum (channels x N) x points; balances = ledger sums."""
    conn = sqlite3.connect(path)
    try:

        def one(sql: str) -> int:
            return int(conn.execute(sql).fetchone()[0] or 0)

        per_channel = dict(
            conn.execute(
                "SELECT i.channel, COUNT(*) FROM checkins c JOIN identities i ON i.member_id = c.member_id"
                " GROUP BY i.channel"
            ).fetchall()
        )
        db = {
            "members": one("SELECT COUNT(*) FROM members"),
            "checkins": one("SELECT COUNT(*) FROM checkins"),
            "checkins_wechat": int(per_channel.get("wechat", 0)),
            "checkins_telegram": int(per_channel.get("telegram", 0)),
            "ledger_rows": one("SELECT COUNT(*) FROM ledger"),
            "ledger_sum": one("SELECT SUM(delta) FROM ledger"),
            "balance_mismatches": one(
                "SELECT COUNT(*) FROM members m LEFT JOIN (SELECT member_id, SUM(delta) AS s FROM ledger"
                " GROUP BY member_id) l ON l.member_id = m.id WHERE m.balance <> COALESCE(l.s, 0)"
            ),
        }
    finally:
        conn.close()
    problems = []
    for channel in channels:
        if db[f"checkins_{channel}"] != members:
            problems.append(f"{db[f'checkins_{channel}']} {channel} check-ins, expected {members}")
    expected = len(channels) * members
    if db["ledger_rows"] != expected or db["ledger_sum"] != expected * points:
        problems.append(
            f"ledger: {db['ledger_rows']} rows, sum {db['ledger_sum']}, expected sum {expected * points}"
        )
    if db["balance_mismatches"]:
        problems.append(f"{db['balance_mismatches']} balances differ from their ledger sums")
    return db, problems


async def run_round(mode: str, load: Load, tg: FakeServer, wx: WeChatFake) -> RoundResult:
    points = CheckinRules().base_points  # a member's first check-in: streak 1, no bonus
    result = RoundResult(mode, load.members, load.inflight, load.client)
    wx.control("reset", "POST")
    with tempfile.TemporaryDirectory(prefix="vipbot-webhooks-") as tmp:
        workdir = Path(tmp)
        db_path = workdir / "vip.db"
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        bot = Bot(bot_env(tg, wx, db_path, port, mode), workdir, workdir / "bot.log")
        bot.start()
        try:
            await wait_ready(bot, base)
            if "wechat" in load.paths:
                await wechat_phase(bot, base, wx, load, mode, result, points)
            if "telegram" in load.paths:
                await telegram_phase(bot, base, tg, load, result, points)
        finally:
            code = bot.terminate()
            text = bot.log_text()
        if code != 0:
            result.problems.append(f"the bot exited with {code}")
        if "Traceback" in text:
            first = text[text.index("Traceback") :][:600]
            result.surprises.append(f"traceback in the bot's log: {first}")
        warnings = Counter(
            re.sub(r"\d+", "N", line.split(": ", 1)[-1])[:100] for line in text.splitlines() if " WARNING " in line
        )
        if warnings:
            result.surprises.append(f"bot warnings: {dict(warnings.most_common(3))}")
        result.db, db_problems = check_database(db_path, load.members, points, load.paths)
        result.problems.extend(db_problems)
    return result


# --- reporting -----------------------------------------------------------------------------------------------
HEADER = (
    f"{'path':<15} {'n':>5} {'ok':>5} {'req/s':>6} {'wall s':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    f" {'<=4s':>5} {'<=5s':>5} {'srv p50':>7} {'srv p99':>7} {'srv max':>7} {'bot cpu':>7} {'lg cpu':>6}"
    f" {'ovfl':>4}"
)


def _ms(value: float) -> str:
    return "-" if value != value else f"{value:.0f}"  # NaN: not measured


def row(r: PathResult) -> str:
    cpu = f"{r.bot_cpu_s:.1f}s" if r.bot_cpu_s else "-"
    client = f"{r.client_cpu_s:.1f}s" if r.client_cpu_s else "-"
    return (
        f"{r.path:<15} {r.requests:>5} {r.ok:>5} {r.rate:6.0f} {r.seconds:6.2f} {_ms(r.p50_ms):>7} {_ms(r.p99_ms):>7}"
        f" {_ms(r.max_ms):>7} {r.within_4s:>5} {r.within_5s:>5} {_ms(r.srv_p50_ms):>7} {_ms(r.srv_p99_ms):>7}"
        f" {_ms(r.srv_max_ms):>7} {cpu:>7} {client:>6} {r.listen_overflows:>4}"
    )


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    tg = FakeServer.start(TG_TOKEN)
    wx: WeChatFake | None = None
    rounds: list[RoundResult] = []
    try:
        wx = WeChatFake.start()
        print(
            f"{args.members} members per burst, {args.inflight} in flight, client {args.client};"
            f" fake Bot API pid {tg.process.pid}, fake WeChat API pid {wx.process.pid};"
            f" load generator pid {os.getpid()}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        print(HEADER)
        for mode in args.modes:
            result = await run_round(mode, Load(args.members, args.inflight, args.client, args.paths), tg, wx)
            rounds.append(result)
            for path in result.paths:
                print(row(path), flush=True)
    finally:
        if wx is not None:
            wx.stop()
        tg.stop()

    failed = False
    for result in rounds:
        d = result.db
        print(
            f"[{result.mode}] db: check-ins wechat {d.get('checkins_wechat')}, telegram {d.get('checkins_telegram')};"
            f" ledger rows {d.get('ledger_rows')}, sum {d.get('ledger_sum')}; balance mismatches"
            f" {d.get('balance_mismatches')}"
        )
        for path in result.paths:
            if path.notes:
                print(f"[{result.mode}] {path.path}: {path.notes}")
        for surprise in result.surprises:
            print(f"[{result.mode}] note: {surprise}")
        for problem in result.problems:
            failed = True
            print(f"[{result.mode}] FAIL: {problem}")
    print("result: " + ("FAILED" if failed else "ok (every answer within 5 s, database consistent)"))
    report = {
        "members": args.members,
        "inflight": args.inflight,
        "client": args.client,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "python": sys.version.split()[0],
        "rounds": [asdict(r) for r in rounds],
        "ok": not failed,
    }
    return (1 if failed else 0), report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=2000, help="distinct members (requests) per burst")
    parser.add_argument("--inflight", type=int, default=0, help="requests in flight at once (default: all)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: raw asyncio streams (cheap) or httpx.AsyncClient")  # fmt: skip
    parser.add_argument("--modes", default="plain,safe", help="WeChat modes, one round each: plain, safe")
    parser.add_argument("--paths", default="wechat,telegram", help="bursts per round: wechat, telegram")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    args.inflight = args.inflight or args.members
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not args.paths or any(p not in ("wechat", "telegram") for p in args.paths):
        parser.error("--paths is a comma-separated list of wechat and telegram")
    if args.members < 1 or not 1 <= args.inflight <= args.members:
        parser.error("--members must be >= 1 and --inflight between 1 and --members")
    if not args.modes or any(m not in ("plain", "safe") for m in args.modes):
        parser.error("--modes is a comma-separated list of plain and safe")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # SIGTERM becomes SystemExit, so the finally blocks stop the fakes and the bot.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    status, report = asyncio.run(bench(args))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
