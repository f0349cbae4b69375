"""Several real `vipbot run` processes on one PostgreSQL database, with a Telegram webhook: one leads (its
/healthz says so and the others name it), a follower stores what it is posted and the leader answers it, and
when the leader is SIGKILLed a follower takes over within 10 s and sends what was scheduled, once.

Skipped when PostgreSQL cannot be reached (see tests/pg.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from bot.app.config import Settings, webhook_secret_of
from storage.db.preflight import StorageError
from tests.fakes.bot_api import FakeBotApi, message_update, user
from tests.pg import pg_template, pg_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
GROUP = -100779
ALICE = user(111, "Alice", "alice")
BOB = user(222, "Bob", "bob")
FAILOVER_GOAL_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(api: FakeBotApi, url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPBOT_")}
    return env | {
        "TELEGRAM_BOT_TOKEN": api.token,
        "VIPBOT_TELEGRAM__BASE_URL": api.base_url,
        "VIPBOT_TELEGRAM__GROUPS": json.dumps([GROUP]),
        "VIPBOT_TELEGRAM__COMMAND_MENUS": "false",
        "VIPBOT_TELEGRAM__WEBHOOK__URL": "https://shop.invalid/telegram",
        "VIPBOT_HTTP__HOST": "127.0.0.1",
        "VIPBOT_HTTP__PORT": str(port),
        "VIPBOT_STORAGE__URL": url,
        "VIPBOT_LOCALE": "en",
    }


class PortTaken(Exception):
    pass


class Worker:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.name = f"vipbot {proc.pid}@{socket.gethostname()}"

    @classmethod
    async def start(cls, api: FakeBotApi, url: str) -> tuple[Worker, dict[str, object]]:
        """A worker that answers /healthz, and its first answer. (Another test may take the free port picked
        before the worker binds it: the worker then exits 1 naming it, and another port is tried.)"""
        for _ in range(3):
            port = free_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.app.cli", "run", cwd=ROOT, env=worker_env(api, url, port),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            worker = cls(proc, port)
            try:
                return worker, await worker.until_healthy()
            except PortTaken:
                continue
        raise AssertionError("no free port for a worker")

    async def health(self) -> dict[str, object] | None:
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                answer = await client.get(f"http://127.0.0.1:{self.port}/healthz")
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    async def leading_gauge(self) -> int:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        (line,) = [line for line in text.splitlines() if line.startswith("vipbot_leading ")]
        return int(float(line.split()[1]))

    async def until_healthy(self, timeout: float = 90) -> dict[str, object]:
        """Its /healthz once it answers (a start takes seconds on a busy machine)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.returncode is not None:
                log = await self.stop()
                if "Address already in use" in log:
                    raise PortTaken(log)
                raise AssertionError(f"worker {self.name} exited {self.proc.returncode}: {log}")
            body = await self.health()
            if body is not None:
                return body
            await asyncio.sleep(0.1)
        self.proc.send_signal(signal.SIGKILL)
        raise AssertionError(f"worker {self.name} never answered /healthz: {(await self.stop())[-3000:]}")

    async def post(self, api: FakeBotApi, update: dict[str, object]) -> int:
        async with httpx.AsyncClient(timeout=10) as client:
            headers = {"X-Telegram-Bot-Api-Secret-Token": webhook_secret_of(api.token)}
            answer = await client.post(f"http://127.0.0.1:{self.port}/telegram", json=update, headers=headers)
        return answer.status_code

    async def stop(self) -> str:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(self.proc.communicate(), timeout=30)
        return err.decode()


async def schedule(url: str, text: str, due_at: int) -> int:
    """An announcement to every group, due at `due_at`, written straight into the database: no process was
    told, so only the leader's planning from the rows (at its start, or its sweep) can send it."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(
            "INSERT INTO announcements(kind, audience, text, due_at, created_at)"
            " VALUES ('scheduled', 'all', $1, $2, $3) RETURNING id", text, due_at, int(time.time()),
        ))  # fmt: skip
    finally:
        await conn.close()


async def test_one_leads_a_follower_takes_over_within_ten_seconds_and_nothing_is_lost_or_doubled(
    pg_url: str,  # noqa: F811
) -> None:
    api = await FakeBotApi().start()
    first, body = await Worker.start(api, pg_url)
    workers = [first]
    try:
        assert body["leading"] is True
        (second, body2), (third, body3) = await asyncio.gather(Worker.start(api, pg_url), Worker.start(api, pg_url))
        workers += [second, third]
        for body in (body2, body3):
            assert body["leading"] is False and body["leader"] == first.name and body["status"] == "ok", body
        assert len(api.sent("setWebhook")) == 1  # the leader registers it; followers only serve it
        assert [await worker.leading_gauge() for worker in workers] == [1, 0, 0]  # /metrics agrees

        # A follower is posted an update: it stores it (200), the leader handles it and answers in the group.
        assert await second.post(api, message_update(api, GROUP, ALICE, "签到")) == 200
        (board,) = await api.wait_for(1, timeout=20)
        assert "Alice" in board["text"] and int(board["chat_id"]) == GROUP

        ann = await schedule(pg_url, "Doors open at ten", int(time.time()) + 2)
        first.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await first.proc.wait()
        leader: Worker | None = None
        while leader is None and time.monotonic() - killed_at < 20:
            for worker in (second, third):
                body = await worker.health()
                if body is not None and body["leading"] is True:
                    leader = worker
            await asyncio.sleep(0.05)
        failover = time.monotonic() - killed_at
        assert leader is not None and failover <= FAILOVER_GOAL_SECONDS, failover
        other = third if leader is second else second
        assert (await other.health() or {})["leader"] == leader.name

        # The new leader sends what was due, once, and answers what the survivors are posted.
        posts = await api.wait_for(2, timeout=20)
        assert posts[1]["text"] == "Doors open at ten" and int(posts[1]["chat_id"]) == GROUP
        assert await other.post(api, message_update(api, GROUP, BOB, "签到")) == 200
        await api.wait_for(1, method="editMessageText", timeout=20)  # the day's board gains Bob
        await asyncio.sleep(1.5)  # anything doubled would have arrived by now (the sweeps run every second)
        texts = [m["text"] for m in api.sent()]
        assert texts.count("Doors open at ten") == 1, texts
        import asyncpg

        conn = await asyncpg.connect(pg_url)
        try:
            checkins = await conn.fetchval("SELECT COUNT(*) FROM checkins")
            states = await conn.fetch(
                "SELECT state, COUNT(*) FROM deliveries WHERE announcement_id = $1 GROUP BY state", ann
            )
        finally:
            await conn.close()
        assert checkins == 2
        assert {r[0]: r[1] for r in states} == {"sent": 1}
    finally:
        logs = [await worker.stop() for worker in workers]
        await api.stop()
    for log in logs[1:]:
        assert "Traceback" not in log, log


async def test_a_port_in_use_stops_vipbot_run_with_one_line_and_exit_code_1(tmp_path: Path) -> None:
    """Exit code 1, not 2: a supervisor tries again (the port may be held by an instance still stopping)."""
    api = await FakeBotApi().start()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = worker_env(api, "", port) | {"VIPBOT_STORAGE__PATH": str(tmp_path / "vip.db")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.app.cli", "run", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    await api.stop()
    said = err.decode()
    assert proc.returncode == 1, said
    assert said.strip().splitlines()[-1] == (f"vipbot: cannot listen on 127.0.0.1:{port} (http.host, http.port):"
                                             " Address already in use")  # fmt: skip
    assert "Traceback" not in said


async def test_the_console_refuses_a_postgresql_database_a_worker_leads(
    pg_url: str, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    from bot.app import cli
    from bot.app.leader import PostgresLeadership

    worker = PostgresLeadership(pg_url, name="vipbot 77@shop")

    async def nothing() -> None:
        return None

    await worker.start(nothing, lambda: None)
    try:
        with pytest.raises(StorageError) as refused:
            await cli.run_console(Settings(locale="en", storage={"url": pg_url}))
    finally:
        await worker.stop()
    assert "another vipbot (vipbot 77@shop) runs on postgresql://" in str(refused.value)
    assert "needs a database of its own" in str(refused.value)
