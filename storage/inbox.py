"""The inbox: every inbound update is stored here before its platform is told it arrived, and marked done
in the same transaction as the handler's effects, so a crash anywhere leaves it handled exactly once.

A done row is kept for a while (see `prune`), so a re-delivery is recognised as a repeat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import Repo, changed_one, fetch_all, fetch_all_as


@dataclass(frozen=True, slots=True)
class Stored:
    key: str
    payload: str


class InboxRepo(Repo):
    async def store(self, channel: str, items: Sequence[tuple[str, str]], now: int) -> list[str]:
        """Keep (key, payload) pairs not seen before; returns the keys that are new."""
        new: list[str] = []
        for key, payload in items:
            cur = await self._conn.execute(
                "INSERT INTO inbox(key, channel, payload, received_at) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO NOTHING",
                (key, channel, payload, now),
            )
            if cur.rowcount == 1:
                new.append(key)
        return new

    async def claim(self, key: str, channel: str, now: int) -> bool:
        """Mark `key` handled; False when it was handled before (a repeat). Commit with the effects."""
        return await changed_one(
            self._conn,
            "INSERT INTO inbox(key, channel, received_at, done_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET done_at = excluded.done_at WHERE inbox.done_at IS NULL",
            (key, channel, now, now),
        )

    async def release(self, key: str) -> None:
        """Handling failed: a re-delivery (or, for a stored update, the next start) handles it again."""
        await self._conn.execute("DELETE FROM inbox WHERE key = ? AND payload IS NULL", (key,))
        await self._conn.execute("UPDATE inbox SET done_at = NULL WHERE key = ?", (key,))

    async def pending(self, channel: str, limit: int) -> list[Stored]:
        """Stored and not yet handled, oldest first (what a restart resumes)."""
        return await fetch_all_as(
            self._conn,
            Stored,
            "SELECT key, payload FROM inbox WHERE channel = ? AND done_at IS NULL ORDER BY received_at, id LIMIT ?",
            (channel, limit),
        )

    async def pending_counts(self) -> dict[str, int]:
        """Channel -> updates stored and not handled yet (on the partial index inbox_pending: done rows are
        never read)."""
        rows = await fetch_all(
            self._conn, "SELECT channel, COUNT(*) FROM inbox WHERE done_at IS NULL GROUP BY channel", bulk=True
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def prune(self, older_than: int) -> int:
        cur = await self._conn.execute(
            "DELETE FROM inbox WHERE done_at IS NOT NULL AND done_at < ?", (older_than,), bulk=True
        )
        return cur.rowcount
