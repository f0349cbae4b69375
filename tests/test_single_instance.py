"""One bot per database file, one poller per token.

* `storage.db.instance`: the lock beside the database refuses a second holder with the first one's pid, and the
  operating system drops it when its holder is SIGKILLed (no stale lock).
* The real `vipbot run` (a subprocess against the fake Bot API): a second `vipbot run` or `vipbot console` on the
  same configuration exits 2 at once with one line naming the running one's pid, and leaves the first one's
  in-flight push alone (not marked uncertain, as its start-up recovery would); `vipbot backup` still works while
  the bot runs; after a SIGKILL of the first, a new one starts.
* Polling: getUpdates answered 409 Conflict (another poller with the token, or a webhook) is said once as an ERROR
  naming the cause, retried ever more slowly (never in a tight loop), and polling resumes when the conflict ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.telegram.intake import Intake
from storage.db import instance
from storage.db.database import Database
from tests.fakes.bot_api import FakeBotApi, message_update, user
from tests.test_crash import GROUP, ROOT, BotProcess, bot_env, count, query, until

ALICE = user(5101, "Alice")


# --- the lock itself -----------------------------------------------------------------------------------
def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    db = tmp_path / "data" / "vipbot.db"  # the folder does not exist yet: the lock makes it, like the database
    first = instance.acquire(db)
    try:
        assert first.path == tmp_path / "data" / "vipbot.db.lock"
        assert first.path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(instance.AlreadyRunning) as refused:
            instance.acquire(db)
        assert refused.value.pid == os.getpid()
        assert str(refused.value) == (
            f"another vipbot is already running on {db} (pid {os.getpid()}); stop it first, or give this one its"
            " own storage.path"
        )
        other = instance.acquire(tmp_path / "other.db")  # another database file: its own lock
        other.release()
    finally:
        first.release()
    again = instance.acquire(db)  # released: free again
    again.release()
    assert not again.held


def test_an_unusable_path_gets_its_own_message(tmp_path: Path) -> None:
    (tmp_path / "a.db").mkdir()
    with pytest.raises(instance.StorageError, match="is a folder, not a database file"):
        instance.acquire(tmp_path / "a.db")


HOLDER = """
import sys, time
from storage.db import instance
lock = instance.acquire(sys.argv[1])
print("locked", flush=True)
time.sleep(600)
"""


async def test_a_sigkilled_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    db = tmp_path / "vipbot.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, str(db), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert line == b"locked\n"
        with pytest.raises(instance.AlreadyRunning) as refused:
            instance.acquire(db)
        assert refused.value.pid == proc.pid
        proc.send_signal(signal.SIGKILL)  # no clean-up of any kind runs
        assert await asyncio.wait_for(proc.wait(), timeout=30) == -signal.SIGKILL
        assert instance.holder_pid(db) == proc.pid  # the file still names it...
        lock = instance.acquire(db)  # ...but the lock went with the process
        assert lock.path.read_text() == f"{os.getpid()}\n"
        lock.release()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- the real `vipbot run` -----------------------------------------------------------------------------
async def vipbot(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str, float]:
    """Run `vipbot ARGS` to its end (bounded): (exit code, stderr + stdout, seconds it took)."""
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.app.cli", *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"vipbot {' '.join(args)} did not exit within 60 s") from None
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace") + out.decode(errors="replace"), time.monotonic() - began


def in_flight_push(db: Path) -> int:
    """What the running bot has in hand: a delivery it is sending (state 'sending'), as written by its outbox
    just before the call to Telegram. Returns the delivery's id."""
    with contextlib.closing(sqlite3.connect(db, timeout=10)) as conn, conn:
        ann = conn.execute(
            "INSERT INTO announcements(kind, audience, text, due_at, state, created_at, queued_at)"
            " VALUES ('now', 'groups', 'in flight', 0, 'queued', 0, 0) RETURNING id"
        ).fetchone()[0]
        delivery = conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target, state, attempts)"
            " VALUES (?, 'telegram', 'chat', ?, 'sending', 1) RETURNING id",
            (ann, str(GROUP)),
        ).fetchone()[0]
    return int(delivery)


async def test_a_second_vipbot_run_on_the_same_database_refuses_to_start(tmp_path: Path) -> None:
    api = await FakeBotApi().start()
    db = tmp_path / "vipbot.db"
    env = bot_env(api, db)
    first = BotProcess(env, ROOT, tmp_path / "first.log")
    try:
        await first.start()
        await until(first.says("vipbot is running"), 60, "the first bot to start", why=first.tail)
        assert first.proc is not None
        sending = in_flight_push(db)

        code, said, took = await vipbot(env, ROOT, "run")
        assert code == 2, said
        assert said.strip().splitlines()[-1] == (
            f"vipbot: another vipbot is already running on {db} (pid {first.proc.pid}); stop it first, or give"
            " this one its own storage.path"
        )
        assert took < 30
        assert "Traceback" not in said
        code, said, _ = await vipbot(env, ROOT, "console")  # the terminal chat is a bot process too
        assert code == 2 and f"already running on {db} (pid {first.proc.pid})" in said, said
        # The first one's push in hand is as it was: the second start recovered nothing.
        assert query(db, "SELECT state, last_error FROM deliveries WHERE id = ?", (sending,)) == [("sending", "")]
        assert count(db, "SELECT COUNT(*) FROM deliveries WHERE state = 'uncertain'") == 0

        code, said, _ = await vipbot(env, ROOT, "backup", str(tmp_path / "copy.db"))  # a tool, not a bot: allowed
        assert code == 0, said
        assert count(tmp_path / "copy.db", "SELECT COUNT(*) FROM deliveries WHERE id = ?", (sending,)) == 1

        # The first still works: it answers a check-in.
        api.push_update(message_update(api, GROUP, ALICE, "签到"))
        await until(lambda: any("Alice" in t for t in api.messages(GROUP).values()), 30, "the check-in's answer",
                    why=first.tail)  # fmt: skip

        # Killed (no clean-up at all), it leaves no lock behind: a new one starts, and its recovery now finds
        # the interrupted push (that is what recovery is for, after a crash).
        await first.stop(signal.SIGKILL)
        await first.start()
        await until(first.says("vipbot is running"), 60, "the bot to start again after SIGKILL", why=first.tail)
        assert query(db, "SELECT state FROM deliveries WHERE id = ?", (sending,)) == [("uncertain",)]
        code, _ = await first.stop(signal.SIGTERM)
        assert code == 0, first.tail()
    finally:
        await first.close()
        await api.stop()


# --- polling: a second poller, a webhook ---------------------------------------------------------------
class Waits:
    """Stands in for the poller's sleep after a 409: records the waits and ends the conflict after `until`."""

    def __init__(self, api: FakeBotApi, until: int) -> None:
        self.api, self.until = api, until
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if len(self.waits) >= self.until:
            self.api.rival_poller = False
            self.api.webhook_url = ""
        await asyncio.sleep(0)


async def poll_through_conflict(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, conflict: str
) -> tuple[FakeBotApi, Waits, list[str], list[logging.LogRecord]]:
    api = await FakeBotApi().start()
    if conflict == "poller":
        api.rival_poller = True
    else:
        api.webhook_url = "https://elsewhere.example/telegram"
    db = await Database.open(tmp_path / "poll.db")
    handled: list[str] = []

    async def process(key: str, update: dict[str, Any]) -> bool:
        handled.append(key)
        return True

    intake = Intake(db, process, workers=1, prefetch=100, on_store_fault=lambda updates, exc: None)
    waits = Waits(api, until=8)
    intake.conflict_sleep = waits
    caplog.set_level(logging.DEBUG, logger="bot.telegram.intake")
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await intake.start()
            api.push_update(message_update(api, GROUP, ALICE, "签到"))
            intake.poll(client, f"{api.base_url}{api.token}/getUpdates", ["message"])
            await until(lambda: len(handled) == 1, 30, "the update after the conflict")
            assert intake.conflict is None
            assert intake.conflicts == 8
            await intake.stop(timeout=5)
    finally:
        await intake.stop(timeout=5)
        await db.close()
        await api.stop()
    records = [r for r in caplog.records if r.name == "bot.telegram.intake"]
    return api, waits, handled, records


@pytest.mark.parametrize("conflict", ["poller", "webhook"])
async def test_a_409_conflict_is_said_once_and_polling_goes_on_slowly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, conflict: str
) -> None:
    api, waits, handled, records = await poll_through_conflict(tmp_path, caplog, conflict)
    refused = [c for c in api.calls if c.method == "getUpdates" and c.status == 409]
    assert len(refused) == 8
    assert waits.waits == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0]  # never a tight loop, at most a minute
    errors = [r.getMessage() for r in records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, errors  # said once, not at every try
    if conflict == "poller":
        assert errors[0].startswith("telegram: another process is polling getUpdates with this bot token")
        assert "terminated by other getUpdates request" in errors[0]
        assert "telegram.webhook.url" in errors[0]
    else:
        assert errors[0].startswith("telegram: a webhook is set for this bot token")
        assert "can't use getUpdates method while webhook is active" in errors[0]
    assert "Trying again in 5 s" in errors[0]
    back = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    gone = "other poller" if conflict == "poller" else "webhook"
    assert back == [f"telegram: getUpdates works again (the {gone} is gone); polling goes on"]
    assert len(handled) == 1
