"""The inbox: every inbound update is stored here before its platform is told it arrived, and marked done
in the same transaction as the handler's effects, so a crash anywhere leaves it handled exactly once.

A done row is kept for a while (see `prune`), so a re-delivery is recognised as a repeat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import BULK_ROWS, Repo, changed_one, fetch_all, fetch_all_as


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

    async def store_many(self, channel: str, items: Sequence[tuple[str, str]], now: int) -> None:
        """`store` for many (key, payload) pairs in one statement, in the keys' order (two processes storing
        overlapping batches at once wait for each other's rows in the same order: no deadlock); a key seen
        before is left as it is, and without waiting for a transaction that holds its row (on PostgreSQL an
        upsert that meets a row another transaction changes waits for that one to end: a message's handler
        must not hold up the batch that a retry of it is in)."""
        unique = sorted(dict(items).items())
        if not unique:
            return
        await self._conn.execute(
            "INSERT INTO inbox(key, channel, payload, received_at)"
            " SELECT json_extract(j.value, '$[0]'), ?, json_extract(j.value, '$[1]'), ? FROM json_each(?) j"
            " WHERE NOT EXISTS (SELECT 1 FROM inbox i WHERE i.key = json_extract(j.value, '$[0]'))"
            " ORDER BY j.key ON CONFLICT(key) DO NOTHING",
            (channel, now, json.dumps([list(item) for item in unique], ensure_ascii=False)),
            bulk=len(unique) > BULK_ROWS,
        )

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

    async def pending(self, channel: str, limit: int, *, received_before: int | None = None) -> list[Stored]:
        """Stored and not yet handled, oldest first (what a restart resumes); with `received_before`, only
        those stored before then."""
        before = "" if received_before is None else " AND received_at < ?"
        return await fetch_all_as(
            self._conn,
            Stored,
            f"SELECT key, payload FROM inbox WHERE channel = ? AND done_at IS NULL{before}"
            " ORDER BY received_at, id LIMIT ?",
            (channel, limit) if received_before is None else (channel, received_before, limit),
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
