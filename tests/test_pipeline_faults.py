"""Storage faults on the real Telegram stack: a full disk gets every member an apology and staff one notice;
the bot recovers by itself when space returns, and what could not be booked then is booked once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from handlers.core.clock import FakeClock
from tests.fakes.bot_api import message_update, user
from tests.tg_harness import STAFF_CHAT, fake_api, harness_settings, running_bot


def fill_disk(db: object, full: bool) -> None:
    """Simulate a full disk: the writer may not grow the file (SQLite answers SQLITE_FULL)."""
    writer = db._writer  # type: ignore[attr-defined]
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count={pages if full else 1073741823}")


@pytest.mark.sqlite_only("a full disk is simulated with SQLite's max_page_count on the writer connection")
async def test_a_full_disk_apologises_tells_staff_once_and_recovers(tmp_path: Path, clock: FakeClock) -> None:
    async with fake_api() as api:
        async with running_bot(api, harness_settings(api, tmp_path / "full.db"), clock) as bot:
            db = bot.runtime.deps.db
            fill_disk(db, True)
            members = [user(3000 + n, f"m{n}") for n in range(30)]
            before = len(api.sent())
            for member in members:  # enough new rows that the file would have to grow
                api.push_update(message_update(api, member["id"], member, "/checkin " + "x" * 2000))
            sent = await api.wait_for(before + len(members) + 1, timeout=30)
            apologies = [p for p in sent[before:] if "Sorry, something went wrong" in p["text"]]
            assert {int(p["chat_id"]) for p in apologies} == {m["id"] for m in members}
            staff = [p["text"] for p in sent[before:] if int(p["chat_id"]) == STAFF_CHAT]
            assert len(staff) == 1 and "cannot write to its database" in staff[0]

            fill_disk(db, False)  # space is back: the updates that failed are handled by themselves
            for _ in range(2000):
                async with db.read() as repos:
                    booked = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM checkins")
                if booked[0][0] == len(members):
                    break
                await asyncio.sleep(0.01)
            assert booked[0][0] == len(members)
            assert await bot.channel.idle(timeout=20)
            async with db.read() as repos:
                ledger = await repos.conn.execute_fetchall("SELECT COUNT(*), SUM(delta) FROM ledger")
                pending = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM inbox WHERE done_at IS NULL")
            assert tuple(ledger[0]) == (len(members), 10 * len(members)) and pending[0][0] == 0
            staff = [p["text"] for p in api.sent() if int(p["chat_id"]) == STAFF_CHAT]
            assert len(staff) == 2 and "works again" in staff[1]
