"""Replies waiting to be sent: queued in the transaction that handled their update, deleted once sent.

A crash between sending and deleting sends that reply again after the restart (at least once); the
update's effects themselves are never repeated (see `storage.inbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all, fetch_all_as, from_row, inserted_id


@dataclass(frozen=True, slots=True)
class QueuedReply:
    id: int
    chat_id: str
    priority: int
    payload: str
    blob: bytes | None


class OutboundRepo(Repo):
    async def add(
        self, channel: str, chat_id: str, priority: int, payload: str, blob: bytes | None, now: int, held: bool = False
    ) -> int:
        """Queue a reply; a `held` one (a code for a member the bot may not message yet) waits for them."""
        return await inserted_id(
            self._conn,
            "INSERT INTO outbound(channel, chat_id, priority, payload, blob, created_at, held)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (channel, chat_id, priority, payload, blob, now, int(held)),
        )

    async def done(self, ids: Sequence[int]) -> None:
        if ids:
            await self._conn.execute(f"DELETE FROM outbound WHERE id IN ({','.join('?' * len(ids))})", tuple(ids))

    async def release_held(self, channel: str, chat_id: str) -> list[QueuedReply]:
        """The member can be messaged now: what waited for them, to be sent."""
        rows = await fetch_all(
            self._conn,
            "UPDATE outbound SET held = 0 WHERE channel = ? AND chat_id = ? AND held = 1"
            " RETURNING id, chat_id, priority, payload, blob",
            (channel, chat_id),
        )
        return sorted((from_row(QueuedReply, r) for r in rows), key=lambda q: q.id)

    async def waiting(self, channel: str) -> list[QueuedReply]:
        """Everything not sent yet and not held (what a restart resumes)."""
        return await fetch_all_as(
            self._conn,
            QueuedReply,
            "SELECT id, chat_id, priority, payload, blob FROM outbound WHERE channel = ? AND held = 0 ORDER BY id",
            (channel,),
            bulk=True,
        )

    async def queued_counts(self) -> dict[tuple[str, bool], int]:
        """(channel, held) -> replies queued and not sent yet (held: waiting for the member to start the bot).
        The table holds only those (a sent reply's row is deleted), so counting it reads nothing else."""
        rows = await fetch_all(
            self._conn, "SELECT channel, held, COUNT(*) FROM outbound GROUP BY channel, held", bulk=True
        )
        return {(str(r[0]), bool(r[1])): int(r[2]) for r in rows}
