"""The daily check-in board (签到榜) of each group: which message it is, and what it shows."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all, fetch_all_as, fetch_one


@dataclass(frozen=True, slots=True)
class BoardLine:
    name: str
    streak: int


class BoardRepo(Repo):
    async def message_id(self, channel: str, chat_id: str, day: str) -> str | None:
        row = await fetch_one(
            self._conn,
            "SELECT message_id FROM checkin_boards WHERE channel = ? AND chat_id = ? AND day = ?",
            (channel, chat_id, day),
        )
        return row[0] if row else None

    async def posted(self, channel: str, chat_id: str, day: str, message_id: str) -> None:
        await self._conn.execute(
            "INSERT INTO checkin_boards(channel, chat_id, day, message_id) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(channel, chat_id, day) DO UPDATE SET message_id = excluded.message_id",
            (channel, chat_id, day, message_id),
        )

    async def days_with_board(self, channel: str, day: str) -> list[str]:
        rows = await fetch_all(
            self._conn, "SELECT chat_id FROM checkin_boards WHERE channel = ? AND day = ?", (channel, day)
        )
        return [r[0] for r in rows]

    async def count(self, chat: str, day: str) -> int:
        row = await fetch_one(self._conn, "SELECT COUNT(*) FROM checkins WHERE chat = ? AND day = ?", (chat, day))
        return int(row[0]) if row else 0

    async def latest(self, chat: str, day: str, limit: int) -> list[BoardLine]:
        return await fetch_all_as(
            self._conn,
            BoardLine,
            "SELECT m.display_name AS name, c.streak FROM checkins c JOIN members m ON m.id = c.member_id"
            " WHERE c.chat = ? AND c.day = ? ORDER BY c.created_at DESC, c.id DESC LIMIT ?",
            (chat, day, limit),
        )
