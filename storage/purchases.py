"""Recorded purchases (amount in fen, time, note): the raw material for points, segments and stats."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, fetch_one, fetch_one_as


@dataclass(frozen=True, slots=True)
class PurchaseSummary:
    count: int
    total_fen: int
    last_at: int | None


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

    async def summary(self, member_id: int) -> PurchaseSummary:
        summary = await fetch_one_as(
            self._conn,
            PurchaseSummary,
            "SELECT COUNT(*) AS count, COALESCE(SUM(amount_fen), 0) AS total_fen, MAX(created_at) AS last_at"
            " FROM purchases WHERE member_id = ?",
            (member_id,),
        )
        assert summary is not None
        return summary
