"""Keys of inbound updates already taken, so a re-delivered update is handled only once."""

from __future__ import annotations

from storage.sql import Statements, fetch_one


class SeenUpdateRepo:
    def __init__(self, conn: Statements) -> None:
        self._conn = conn

    async def claim(self, key: str, now: int) -> bool:
        """True the first time `key` is seen, False for every repeat."""
        return (
            await fetch_one(
                self._conn,
                "INSERT INTO seen_updates(key, seen_at) VALUES (?, ?) ON CONFLICT(key) DO NOTHING RETURNING key",
                (key, now),
            )
            is not None
        )

    async def release(self, key: str) -> None:
        """Forget `key` so that a re-delivery is handled again (used when handling failed)."""
        await self._conn.execute("DELETE FROM seen_updates WHERE key = ?", (key,))

    async def prune(self, older_than: int) -> int:
        cur = await self._conn.execute("DELETE FROM seen_updates WHERE seen_at < ?", (older_than,), bulk=True)
        return cur.rowcount
