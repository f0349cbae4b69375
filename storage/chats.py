"""The VIP group chats per channel: configured ones and those the bot has served; announcements go there."""

from __future__ import annotations

from storage.db.sql import Repo, fetch_all


class ChatRepo(Repo):
    async def add(self, channel: str, chat_id: str, now: int, title: str = "") -> None:
        await self._conn.execute(
            "INSERT INTO chats(channel, chat_id, title, added_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (channel, chat_id, title, now),
        )

    async def remove(self, channel: str, chat_id: str) -> None:
        await self._conn.execute("DELETE FROM chats WHERE channel = ? AND chat_id = ?", (channel, chat_id))

    async def of_channel(self, channel: str) -> list[str]:
        rows = await fetch_all(self._conn, "SELECT chat_id FROM chats WHERE channel = ? ORDER BY chat_id", (channel,))
        return [r[0] for r in rows]
