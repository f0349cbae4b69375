"""Recorded purchases (amount in fen, time, note): the raw material for points, segments and stats.

A purchase recorded by mistake is voided, never deleted: it stays with `voided_at` set and counts no more."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, fetch_one, fetch_one_as, has_row


@dataclass(frozen=True, slots=True)
class PurchaseSummary:
    count: int
    total_fen: int
    last_at: int | None


@dataclass(frozen=True, slots=True)
class Purchase:
    id: int
    member_id: int
    amount_fen: int
    note: str
    created_at: int
    voided_at: int | None


class PurchaseRepo(Repo):
    async def record(
        self, member_id: int, amount_fen: int, note: str, idem_key: str, now: int, recorded_by: int | None
    ) -> int | None:
        """Store a purchase once per `idem_key`; returns its id, or None for a repeat."""
        row = await fetch_one(
            self._conn,
            "INSERT INTO purchases(member_id, amount_fen, note, recorded_by, idem_key, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(idem_key) DO NOTHING RETURNING id",
            (member_id, amount_fen, note, recorded_by, idem_key, now),
        )
        return int(row[0]) if row else None

    async def id_for(self, idem_key: str) -> int | None:
        """The id of the purchase recorded under `idem_key` (a repeated /purchase names the first one)."""
        row = await fetch_one(self._conn, "SELECT id FROM purchases WHERE idem_key = ?", (idem_key,))
        return int(row[0]) if row else None

    async def get(self, purchase_id: int) -> Purchase | None:
        return await fetch_one_as(
            self._conn,
            Purchase,
            "SELECT id, member_id, amount_fen, note, created_at, voided_at FROM purchases WHERE id = ?",
            (purchase_id,),
        )

    async def void(self, purchase_id: int, now: int, voided_by: int | None) -> bool:
        """Mark the purchase voided, once; False when it already was (or does not exist)."""
        return await has_row(
            self._conn,
            "UPDATE purchases SET voided_at = ?, voided_by = ? WHERE id = ? AND voided_at IS NULL RETURNING id",
            (now, voided_by, purchase_id),
        )

    async def live_between(self, member_id: int, start: int, end: int) -> bool:
        """Whether the member has a purchase that counts (not voided) recorded from `start` to `end` (unix
        seconds, both included)."""
        return await has_row(
            self._conn,
            "SELECT 1 FROM purchases WHERE member_id = ? AND voided_at IS NULL AND created_at BETWEEN ? AND ?",
            (member_id, start, end),
        )

    async def summary(self, member_id: int) -> PurchaseSummary:
        """The member's purchases that count (not voided)."""
        summary = await fetch_one_as(
            self._conn,
            PurchaseSummary,
            "SELECT COUNT(*) AS count, COALESCE(SUM(amount_fen), 0) AS total_fen, MAX(created_at) AS last_at"
            " FROM purchases WHERE member_id = ? AND voided_at IS NULL",
            (member_id,),
        )
        assert summary is not None
        return summary
