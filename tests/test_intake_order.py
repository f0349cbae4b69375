"""The intake handles one member's updates in the order they came, while different members' run side by side."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

from bot.telegram.intake import Intake
from storage.db.database import Database


def press(update_id: int, uid: int) -> dict[str, Any]:
    return {"update_id": update_id, "callback_query": {"id": f"q{update_id}", "from": {"id": uid}, "data": "x"}}


async def test_one_members_updates_keep_their_order(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "i.db")
    rng = random.Random(7)
    seen: dict[int, list[int]] = {}
    overlap = 0
    running = 0

    async def process(key: str, update: dict[str, Any]) -> bool:
        nonlocal overlap, running
        running += 1
        overlap = max(overlap, running)
        await asyncio.sleep(rng.random() / 500)  # e.g. asking Telegram whether the member is in the group
        seen.setdefault(update["callback_query"]["from"]["id"], []).append(update["update_id"])
        running -= 1
        return True

    intake = Intake(db, process, workers=16, prefetch=10_000, on_store_fault=lambda updates, exc: None)
    try:
        await intake.start()
        updates = [press(n, 100 + n % 10) for n in range(1, 401)]  # ten members, forty presses each
        await intake.store(updates)
        assert await intake.idle(timeout=30)
        for uid, ids in seen.items():
            assert ids == sorted(ids), uid
        assert sum(len(ids) for ids in seen.values()) == 400
        assert overlap > 1  # members were still handled side by side
    finally:
        await intake.stop(timeout=5)
        await db.close()
