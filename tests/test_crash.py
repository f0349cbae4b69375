"""Nothing lost, nothing doubled: the real `vipbot run` killed (SIGKILL, SIGTERM) while it handles a burst.

Each test starts `python -m bot.app.cli run` as a subprocess against a fake Bot API served in this process, feeds
a burst (typed check-ins and presses of the board's `v1:checkin:` button, flash-sale claims `/claim 1` and
`v1:claim:1`, reward redemptions `/redeem 1`; the sale, the reward and the redeemers' points are seeded
through the storage repositories before the first start), kills the bot at moments drawn from a seeded
`random.Random` (progress in the database, or the instant the fake hands out a batch or is told one was
stored), starts it again each time, and finally checks the SQLite file and the fake's records:

* every update the fake served (polling) or acknowledged with 200 (webhook) has its inbox row done, and the
  inbox holds nothing else;
* effects once: each member checked in once, one ledger entry per check-in, sale stock sold == claims ==
  min(stock, claimers) <= stock, reward redemptions == min(stock, redeemers) with one ledger entry each,
  no idempotency key twice, every member's cached balance == the sum of their ledger;
* replies: every queued reply was sent (no non-held `outbound` row left) and every code waits exactly once
  (one held row per claim and per redemption).

Waits are bounded polls of conditions (the fake's records, row counts through a read-only sqlite3
connection), never fixed sleeps. The seed is printed (shown when a test fails); `CRASH_SEED=<n>` repeats it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from storage.db.database import Database
from tests.fakes.bot_api import FakeBotApi, callback_update, message_update, user

ROOT = Path(__file__).resolve().parent.parent
GROUP = -100424242
SECRET = "crash-Secret_1"
SALE_STOCK = 40
REWARD_STOCK = 25
REWARD_COST = 100
SEED_POINTS = 150  # one redemption each: a check-in adds at most 10 today, never reaching 2 x REWARD_COST
STOP_LIMIT_S = 10.0


def seed_of() -> int:
    given = os.environ.get("CRASH_SEED")
    seed = int(given) if given else random.SystemRandom().randrange(2**32)
    print(f"crash test seed: {seed} (repeat with CRASH_SEED={seed})")
    return seed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(
    condition: Callable[[], bool], timeout: float, what: str, every: float = 0.005, why: Callable[[], str] | None = None
) -> None:
    """Poll `condition` (bounded) on the event loop until it holds; `why` explains a timeout."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f"; {why()}" if why else ""))
        await asyncio.sleep(every)


# --- the fake, with traps ------------------------------------------------------------------------------
@dataclass
class TrapApi(FakeBotApi):
    """The fake Bot API, calling `trap(event)` at two instants of getUpdates: "confirm" when a call's offset
    confirms updates (the bot stored them), before anything is answered; "served" right after a non-empty
    batch was picked, before it is sent (the bot never receives it)."""

    trap: Callable[[str], None] | None = None

    async def take_updates(self, offset: int, timeout: float, limit: int = 100) -> list[dict[str, Any]]:
        if self.trap is not None and any(u["update_id"] < offset for u in self._updates):
            self.trap("confirm")
        served = await super().take_updates(offset, timeout, limit)
        if served and self.trap is not None:
            self.trap("served")
        return served


# --- the bot process -----------------------------------------------------------------------------------
@dataclass
class BotProcess:
    env: dict[str, str]
    cwd: Path
    log: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    offset: int = 0
    """Where this start's part of the log begins."""
    stops: list[tuple[str, int, float]] = field(default_factory=list)
    """(signal name, return code, seconds from the signal to the exit) of every stop."""

    async def start(self) -> None:
        assert self.proc is None or self.proc.returncode is not None
        self.starts += 1
        self.offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            out.write(f"===== start {self.starts} =====\n".encode())
            out.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.app.cli", "run", cwd=self.cwd, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip

    def signal_now(self, signum: signal.Signals) -> None:
        """Send `signum` synchronously (also from inside the fake's handler)."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signum)

    async def stop(self, signum: signal.Signals, sent: bool = False) -> tuple[int, float]:
        """Signal the bot (unless `sent`) and wait (bounded) for it to exit: (return code, seconds)."""
        assert self.proc is not None
        began = time.monotonic()
        if not sent:
            self.signal_now(signum)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout=30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"the bot did not exit within 30 s of {signum.name}") from None
        took = time.monotonic() - began
        self.stops.append((signum.name, code, took))
        return code, took

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def this_run(self) -> str:
        """The log of the running process so far."""
        with self.log.open("rb") as log:
            log.seek(self.offset)
            return log.read().decode(errors="replace")

    def says(self, text: str) -> Callable[[], bool]:
        return lambda: text in self.this_run()


def far_rollover_hour() -> int:
    """A business day that starts 12 hours from now (in the default zone): no test runs across two days."""
    return (datetime.now(ZoneInfo("Asia/Shanghai")).hour + 12) % 24


def bot_env(api: FakeBotApi, db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIPBOT_", "WECHAT_", "TELEGRAM_"))}
    env |= {
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
        "PYTHONUNBUFFERED": "1",
        "TELEGRAM_BOT_TOKEN": api.token,
        "VIPBOT_TELEGRAM__BASE_URL": api.base_url,
        "VIPBOT_TELEGRAM__GROUPS": json.dumps([GROUP]),
        "VIPBOT_TELEGRAM__RATE_LIMITER": "false",
        "VIPBOT_STORAGE__PATH": str(db),
        "VIPBOT_LOCALE": "en",
        "VIPBOT_LOG_LEVEL": "INFO",
        "VIPBOT_CHECKIN__ROLLOVER_HOUR": str(far_rollover_hour()),
    }
    return env | extra


# --- the database, read-only from here ------------------------------------------------------------------
def query(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return conn.execute(sql, params).fetchall()


def count(db: Path, sql: str, params: tuple[Any, ...] = ()) -> int:
    return int(query(db, sql, params)[0][0])


def done_count(db: Path) -> int:
    return count(db, "SELECT COUNT(*) FROM inbox WHERE done_at IS NOT NULL")


# --- the burst -----------------------------------------------------------------------------------------
@dataclass
class Burst:
    updates: list[dict[str, Any]]
    checkers: set[int]
    claimers: set[int]
    redeemers: set[int]
    redeem_ids: set[int]

    @property
    def ids(self) -> set[int]:
        return {int(u["update_id"]) for u in self.updates}


def make_burst(api: FakeBotApi, rng: random.Random, checkers: int, claimers: int, redeemers: int) -> Burst:
    """Check-ins (typed 签到, some members again with /checkin or the board's button), claims of sale 1
    (button or /claim 1, some twice), redemptions of reward 1 (/redeem 1, some twice), shuffled."""
    check_ids = list(range(20_001, 20_001 + checkers))
    claim_ids = list(range(30_001, 30_001 + claimers))
    redeem_ids = list(range(40_001, 40_001 + redeemers))
    plan: list[tuple[int, str, str]] = []  # (user id, kind, text or data)
    for uid in check_ids:
        plan.append((uid, "text", "签到"))
        again = rng.random()
        if again < 0.3:
            plan.append((uid, "button", "v1:checkin:"))
        elif again < 0.45:
            plan.append((uid, "text", "/checkin"))
    for uid in claim_ids:
        for _ in range(2 if rng.random() < 0.25 else 1):
            plan.append((uid, "button", "v1:claim:1") if rng.random() < 0.5 else (uid, "text", "/claim 1"))
    for uid in redeem_ids:
        for _ in range(2 if rng.random() < 0.25 else 1):
            plan.append((uid, "text", "/redeem 1"))
    for uid in rng.sample(redeem_ids, len(redeem_ids) // 3):  # some redeemers check in as well
        plan.append((uid, "text", "签到"))
    rng.shuffle(plan)
    updates, redeem_updates = [], set()
    for uid, kind, body in plan:
        sender = user(uid, f"m{uid}")
        update = (
            callback_update(api, GROUP, sender, body) if kind == "button" else message_update(api, GROUP, sender, body)
        )
        if body.startswith("/redeem"):
            redeem_updates.add(int(update["update_id"]))
        updates.append(update)
    checked = set(check_ids) | {uid for uid, _, body in plan if body == "签到"}
    return Burst(updates, checked, set(claim_ids), set(redeem_ids), redeem_updates)


async def seed(db: Path, redeemers: set[int]) -> None:
    """Sale 1 (running, SALE_STOCK units, one per member), reward 1 (REWARD_STOCK, REWARD_COST points), and
    the redeemers as members with SEED_POINTS each, written through the storage repositories."""
    now = int(time.time())
    database = await Database.open(db)
    try:
        async with database.transaction() as repos:
            await repos.sales.create("Jade cup", 900, SALE_STOCK, now - 3600, None, 1, None, None, True, None, now)
            await repos.rewards.create("Tea set", REWARD_COST, REWARD_STOCK, None, now)
            for uid in sorted(redeemers):
                member_id, _ = await repos.members.register("telegram", str(uid), f"m{uid}", None, now)
                await repos.ledger.append(member_id, SEED_POINTS, "award", f"seed:{uid}", now)
    finally:
        await database.close()


async def seed_backlog(db: Path, updates: list[dict[str, Any]]) -> None:
    """Updates stored in the inbox and not handled, as a stop would leave them."""
    database = await Database.open(db)
    try:
        items = [(f"telegram:update:{u['update_id']}", json.dumps(u, ensure_ascii=False)) for u in updates]
        async with database.transaction() as repos:
            await repos.inbox.store("telegram", items, int(time.time()))
    finally:
        await database.close()


# --- the books -----------------------------------------------------------------------------------------
def check_books(db: Path, burst: Burst, handled_ids: set[int]) -> None:
    """Everything in `handled_ids` was handled exactly once in effect, and the books balance."""
    inbox = {row[0]: row[1] for row in query(db, "SELECT key, done_at FROM inbox")}
    keys = {f"telegram:update:{i}" for i in handled_ids}
    not_done = sorted(k for k in keys if inbox.get(k) is None)
    assert not not_done, f"{len(not_done)} served updates not done (lost), e.g. {not_done[:5]}"
    extra = sorted(set(inbox) - keys)
    assert not extra, f"inbox rows of updates never served: {extra[:5]}"

    def external(member_id_sql: str) -> list[int]:
        return [
            int(r[0])
            for r in query(db, f"SELECT i.external_id FROM ({member_id_sql}) x JOIN identities i ON i.member_id = x.m")
        ]

    checked = external("SELECT member_id AS m FROM checkins")
    assert sorted(checked) == sorted(burst.checkers), "each member who checked in has exactly one check-in"
    assert count(db, "SELECT COUNT(*) FROM ledger WHERE reason = 'checkin'") == len(burst.checkers)

    sold, stock = query(db, "SELECT sold, stock FROM sales WHERE id = 1")[0]
    claims = external("SELECT member_id AS m FROM sale_claims WHERE state <> 'released'")
    expect_sold = min(SALE_STOCK, len(burst.claimers))
    assert sold == len(claims) == expect_sold <= stock, (sold, len(claims), expect_sold)
    assert len(set(claims)) == len(claims) and set(claims) <= burst.claimers

    redeemed, reward_stock = query(db, "SELECT redeemed, stock FROM rewards WHERE id = 1")[0]
    redemptions = external("SELECT member_id AS m FROM redemptions")
    expect_redeemed = min(REWARD_STOCK, len(burst.redeemers))
    assert redeemed == len(redemptions) == expect_redeemed <= reward_stock, (redeemed, len(redemptions))
    assert len(set(redemptions)) == len(redemptions) and set(redemptions) <= burst.redeemers
    redeem_keys = [r[0] for r in query(db, "SELECT idem_key FROM ledger WHERE reason = 'redeem'")]
    assert len(redeem_keys) == expect_redeemed
    assert {int(k.rsplit(":", 1)[1]) for k in redeem_keys} <= burst.redeem_ids, "bookings come from /redeem updates"

    assert not query(db, "SELECT idem_key FROM ledger GROUP BY idem_key HAVING COUNT(*) > 1")
    off = query(
        db,
        "SELECT m.id, m.balance, COALESCE(SUM(l.delta), 0) FROM members m LEFT JOIN ledger l ON l.member_id = m.id"
        " GROUP BY m.id HAVING m.balance <> COALESCE(SUM(l.delta), 0)",
    )
    assert not off, f"cached balances differ from their ledger: {off[:5]}"
    # Replies: all sent; each code (won claim, redemption) waits once for its member's private chat.
    assert count(db, "SELECT COUNT(*) FROM outbound WHERE held = 0") == 0
    assert count(db, "SELECT COUNT(*) FROM outbound WHERE held = 1") == expect_sold + expect_redeemed


def missing(db: Path, handed_over: set[int]) -> str:
    """What became of updates the bot was given (served and confirmed, or acknowledged)."""
    inbox = {int(k.rsplit(":", 1)[1]): done for k, done in query(db, "SELECT key, done_at FROM inbox")}
    lost = sorted(handed_over - set(inbox))
    waiting = sorted(i for i, done in inbox.items() if done is None)
    return f"{len(lost)} handed over but never stored (lost) {lost[:5]}, {len(waiting)} stored and not done"


def all_settled(db: Path, expected_done: int) -> bool:
    rows = query(
        db,
        "SELECT (SELECT COUNT(*) FROM inbox WHERE done_at IS NOT NULL), (SELECT COUNT(*) FROM inbox),"
        " (SELECT COUNT(*) FROM outbound WHERE held = 0)",
    )[0]
    return rows[0] == rows[1] == expected_done and rows[2] == 0


def plan_stops(rng: random.Random, stops: int, total: int, kinds: list[str]) -> list[tuple[signal.Signals, str, int]]:
    """`stops` stops, one of them a SIGTERM: (signal, trigger kind, progress to stop at), the progress points
    one in each of `stops` equal slices of the first 90 % of the burst."""
    term_at = rng.randrange(stops)
    width = total * 0.9 / stops
    return [
        (signal.SIGTERM if n == term_at else signal.SIGKILL, rng.choice(kinds),
         rng.randint(int(n * width) + 3, int((n + 1) * width)))
        for n in range(stops)
    ]  # fmt: skip


async def run_guarded(bot: BotProcess, seed: int, body: Callable[[], Awaitable[None]]) -> None:
    try:
        await body()
    except BaseException as exc:
        print(f"seed {seed}; bot log tail:\n{bot.tail()}")
        if isinstance(exc, AssertionError):
            raise AssertionError(f"[seed {seed}] {exc}") from exc
        raise
    finally:
        await bot.close()


def assert_clean_stops(bot: BotProcess) -> None:
    for name, code, took in bot.stops:
        if name == "SIGTERM":
            assert code == 0, f"exit code {code} after SIGTERM"
            assert took < STOP_LIMIT_S, f"SIGTERM took {took:.1f} s"
    assert "Traceback" not in bot.log_text(), "the bot logged a traceback"


# --- the tests -----------------------------------------------------------------------------------------
async def test_polling_bot_killed_mid_burst_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed_value = seed_of()
    rng = random.Random(seed_value)
    api = await TrapApi(limits=False).start()
    db = tmp_path / "crash.db"
    burst = make_burst(api, rng, checkers=150, claimers=60, redeemers=40)
    await seed(db, burst.redeemers)
    env = bot_env(api, db, VIPBOT_TELEGRAM__PREFETCH="40")  # fetch, store and handle interleave all along
    bot = BotProcess(env, tmp_path, tmp_path / "bot.log")
    total = len(burst.updates)

    async def body() -> None:
        for update in burst.updates:
            api.push_update(update)
        stops = plan_stops(rng, 5, total, ["done", "done", "served", "confirm"])
        stops[0] = (stops[0][0], "confirm", 0)  # the first stop: the instant the first batch is confirmed
        for signum, kind, target in stops:
            fired: list[str] = []

            def trap(event: str, kind: str = kind, signum: signal.Signals = signum, fired: list[str] = fired) -> None:
                if event == kind and not fired:
                    bot.signal_now(signum)  # right now, inside the fake's answer
                    fired.append(event)

            early = kind != "done" and (target == 0 or rng.random() < 0.5)  # armed from the first poll, or at `target`
            await bot.start()
            if signum is signal.SIGTERM:  # a SIGTERM before the handler is installed just ends the process
                await until(bot.says("Application started"), 60, "the bot handling signals", every=0.01)
            if kind != "done":  # a long poll of the killed process may still be answered before this one polls
                await until(bot.says("telegram: polling as"), 60, "the bot polling", every=0.01)
                if early:
                    api.trap = trap

            def reached(kind: str = kind, target: int = target, trap: Callable[[str], None] = trap,
                        fired: list[str] = fired) -> bool:  # fmt: skip
                if fired:
                    return True
                done = done_count(db)
                if kind == "done":
                    return done >= target
                if done >= target:
                    api.trap = trap  # the next batch served (or confirmed) from here on
                return done >= min(target + 30, total)  # none came: stop anyway

            await until(
                reached, 30, f"the moment to stop ({kind} at {target})", why=lambda: missing(db, api.confirmed_ids)
            )
            api.trap = None
            await bot.stop(signum, sent=bool(fired))
            moment = f"{fired[0] if fired else kind} ({'first poll' if early else f'at {target}'})"
            print(f"{signum.name} on {moment}: {done_count(db)}/{total} done,"
                  f" {len(api.served_ids)} served, {len(api.confirmed_ids)} confirmed")  # fmt: skip
        await bot.start()
        await until(lambda: api.confirmed_ids >= burst.ids, 60, "every update confirmed to the fake")
        await until(lambda: all_settled(db, total), 90, "every update done and every reply sent", every=0.02,
                    why=lambda: missing(db, api.confirmed_ids))  # fmt: skip
        code, _ = await bot.stop(signal.SIGTERM)
        assert code == 0
        assert api.served_ids == burst.ids
        check_books(db, burst, api.served_ids)
        assert_clean_stops(bot)
        assert bot.starts == 6

    try:
        await run_guarded(bot, seed_value, body)
    finally:
        await api.stop()


async def test_webhook_bot_killed_mid_burst_loses_and_doubles_nothing(tmp_path: Path) -> None:
    seed_value = seed_of()
    rng = random.Random(seed_value)
    api = await FakeBotApi(limits=False).start()
    db = tmp_path / "hook.db"
    burst = make_burst(api, rng, checkers=120, claimers=50, redeemers=30)
    await seed(db, burst.redeemers)
    port = free_port()
    env = bot_env(
        api, db, TELEGRAM_WEBHOOK_SECRET=SECRET, VIPBOT_TELEGRAM__WEBHOOK__URL="https://shop.invalid/telegram",
        VIPBOT_HTTP__HOST="127.0.0.1", VIPBOT_HTTP__PORT=str(port),
    )  # fmt: skip
    bot = BotProcess(env, tmp_path, tmp_path / "bot.log")
    total = len(burst.updates)
    acked: set[int] = set()
    attempts = [0]

    async def deliver(client: httpx.AsyncClient, queue: asyncio.Queue[dict[str, Any]]) -> None:
        """One of Telegram's connections: POST each update until it gets 200 (a refusal, a non-2xx or a
        dropped connection means: again, after a short pause)."""
        headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
        while True:
            try:
                update = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            while True:
                attempts[0] += 1
                try:
                    response = await client.post("/telegram", json=update, headers=headers)
                    if response.status_code == 200:
                        acked.add(int(update["update_id"]))
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.02)  # Telegram's retry backoff (shortened), not a wait for a condition

    async def body() -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for update in burst.updates:
            queue.put_nowait(update)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            posters = [asyncio.create_task(deliver(client, queue)) for _ in range(8)]
            try:
                for signum, kind, target in plan_stops(rng, 3, total, ["done", "acked"]):
                    await bot.start()
                    if signum is signal.SIGTERM:  # before the handler is installed it just ends the process
                        await until(bot.says("Application started"), 60, "the bot handling signals", every=0.01)

                    def reached(kind: str = kind, target: int = target) -> bool:
                        return (len(acked) if kind == "acked" else done_count(db)) >= target

                    await until(reached, 90, f"the moment to stop ({kind} at {target})", why=lambda: missing(db, acked))
                    await bot.stop(signum)
                    print(f"{signum.name} on {kind} (at {target}): {done_count(db)}/{total} done,"
                          f" {len(acked)} acknowledged")  # fmt: skip
                await bot.start()
                await asyncio.wait_for(asyncio.gather(*posters), timeout=60)
            finally:
                for task in posters:
                    task.cancel()
        await until(lambda: all_settled(db, total), 90, "every update done and every reply sent", every=0.02,
                    why=lambda: missing(db, acked))  # fmt: skip
        code, _ = await bot.stop(signal.SIGTERM)
        assert code == 0
        assert acked == burst.ids and attempts[0] >= total
        check_books(db, burst, acked)
        assert_clean_stops(bot)
        registered = api.sent("setWebhook")
        # Every start registers the webhook (with the secret) once it leads, except one killed before it got
        # that far: a stop can fall due the moment a start begins.
        starts = bot.log_text().split("===== start ")[1:]
        assert len(starts) == bot.starts and "-> /telegram" in starts[-1]
        assert len(registered) == sum("-> /telegram" in start for start in starts) >= bot.starts - 3
        assert all(r["secret_token"] == SECRET for r in registered)

    try:
        await run_guarded(bot, seed_value, body)
    finally:
        await api.stop()


async def test_sigterm_with_1000_stored_updates_exits_quickly_and_the_rest_follows(tmp_path: Path) -> None:
    api = await FakeBotApi(limits=False).start()
    db = tmp_path / "backlog.db"
    members = list(range(50_001, 51_001))
    updates = [message_update(api, GROUP, user(uid, f"m{uid}"), "签到") for uid in members]
    await seed_backlog(db, updates)  # stored by an earlier run and not handled yet
    bot = BotProcess(bot_env(api, db), tmp_path, tmp_path / "bot.log")

    def backlog() -> int:
        return count(db, "SELECT COUNT(*) FROM inbox WHERE done_at IS NULL")

    async def body() -> None:
        await bot.start()
        await until(bot.says("Application started"), 60, "the bot handling signals", every=0.01)
        await until(lambda: done_count(db) >= 1, 60, "the first stored update handled")
        pending = backlog()
        code, took = await bot.stop(signal.SIGTERM)
        left = backlog()
        print(f"SIGTERM with {pending} stored updates pending: exit {code} after {took:.2f} s, {left} left stored")
        assert pending >= 500, f"only {pending} updates were pending at the SIGTERM"
        assert code == 0 and took < STOP_LIMIT_S, (code, took)
        assert left > 0, "the stop drained the backlog instead of leaving it stored"
        await bot.start()
        await until(lambda: all_settled(db, len(updates)), 60, "the backlog handled after the restart", every=0.02)
        code, took = await bot.stop(signal.SIGTERM)
        assert code == 0 and took < STOP_LIMIT_S
        checked = [int(r[0]) for r in query(db, "SELECT i.external_id FROM checkins c JOIN identities i"
                                                " ON i.member_id = c.member_id")]  # fmt: skip
        assert sorted(checked) == members
        assert count(db, "SELECT COUNT(*) FROM ledger WHERE reason = 'checkin'") == len(members)
        assert not query(
            db,
            "SELECT m.id FROM members m LEFT JOIN ledger l ON l.member_id = m.id"
            " GROUP BY m.id HAVING m.balance <> COALESCE(SUM(l.delta), 0)",
        )
        assert count(db, "SELECT COUNT(*) FROM outbound") == 0
        assert_clean_stops(bot)

    try:
        await run_guarded(bot, 0, body)
    finally:
        await api.stop()
