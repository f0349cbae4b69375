"""Figures for staff statistics and the weekly report: counts over time windows and per-day series.

Time windows are half-open [since, until) in unix seconds; the caller turns business days into instants.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all, fetch_one, fetch_one_as, from_row


@dataclass(frozen=True, slots=True)
class RatingShare:
    answers: int
    satisfied: int
    """Answers of 4 or 5."""


@dataclass(frozen=True, slots=True)
class PointsFlow:
    issued: int
    """Sum of positive ledger entries."""
    redeemed: int
    """Points spent on rewards (entries with reason 'redeem')."""


def _bucket(column: str, starts: Sequence[int]) -> str:
    """An SQL expression numbering the bucket of `column` among `starts` (ascending): 0 before starts[1],
    1 from starts[1], ... The values are integers from our own code, not user input."""
    return " + ".join(f"CASE WHEN {column} >= {int(s)} THEN 1 ELSE 0 END" for s in starts[1:]) or "0"


_FLOW = (
    "COALESCE(SUM(CASE WHEN delta > 0 THEN delta END), 0) AS issued,"
    " COALESCE(SUM(CASE WHEN reason = 'redeem' THEN -delta END), 0) AS redeemed"
    " FROM ledger WHERE created_at >= ? AND created_at < ?"
)
"""The columns of a `PointsFlow` over the ledger entries of a window [?, ?)."""


class StatsRepo(Repo):
    async def members(self, since: int) -> tuple[int, int]:
        """(all members, members who joined at or after `since`)."""
        row = await fetch_one(
            self._conn,
            "SELECT (SELECT COUNT(*) FROM members), (SELECT COUNT(*) FROM members WHERE joined_at >= ?)",
            (since,),
            bulk=True,
        )
        assert row is not None
        return int(row[0]), int(row[1])

    async def checkins_on(self, day: str) -> int:
        row = await fetch_one(self._conn, "SELECT COUNT(*) FROM checkins WHERE day = ?", (day,), bulk=True)
        return int(row[0]) if row else 0

    async def active_members(self, since_day: str, since: int) -> int:
        """Members who checked in on or after business day `since_day` or purchased at or after `since` (a voided
        purchase does not count)."""
        row = await fetch_one(
            self._conn,
            "SELECT COUNT(*) FROM (SELECT member_id FROM checkins WHERE day >= ?"
            " UNION SELECT member_id FROM purchases WHERE created_at >= ? AND voided_at IS NULL)",
            (since_day, since),
            bulk=True,
        )
        return int(row[0]) if row else 0

    async def rating_share(self, since: int) -> RatingShare:
        """Answers to closed rating polls given at or after `since`, and how many were 4 or 5."""
        share = await fetch_one_as(
            self._conn,
            RatingShare,
            "SELECT COUNT(*) AS answers,"
            " COALESCE(SUM(CASE WHEN CAST(a.answer AS INTEGER) >= 4 THEN 1 ELSE 0 END), 0) AS satisfied"
            " FROM poll_answers a JOIN polls p ON p.id = a.poll_id"
            " WHERE p.kind = 'rating' AND p.state = 'closed' AND a.complete = 1 AND a.answered_at >= ?",
            (since,),
            bulk=True,
        )
        assert share is not None
        return share

    async def referrals(self) -> int:
        """Referrals that count: those not voided (a merge that made both sides one member voids one)."""
        row = await fetch_one(self._conn, "SELECT COUNT(*) FROM referrals WHERE voided_at IS NULL", bulk=True)
        return int(row[0]) if row else 0

    async def points_flow(self, since: int, until: int) -> PointsFlow:
        flow = await fetch_one_as(self._conn, PointsFlow, f"SELECT {_FLOW}", (since, until), bulk=True)
        assert flow is not None
        return flow

    # --- per-day series for the report ------------------------------------------------------------
    async def checkins_per_day(self, days: Sequence[str]) -> list[int]:
        """Check-ins on each business day of `days` ('YYYY-MM-DD', ascending)."""
        if not days:
            return []
        rows = await fetch_all(
            self._conn,
            "SELECT day, COUNT(*) FROM checkins WHERE day >= ? AND day <= ? GROUP BY day",
            (days[0], days[-1]),
            bulk=True,
        )
        found = {r[0]: int(r[1]) for r in rows}
        return [found.get(day, 0) for day in days]

    async def joined_per_day(self, starts: Sequence[int], until: int) -> list[int]:
        """New members in each window [starts[i], starts[i+1]) (the last one ends at `until`)."""
        if not starts:
            return []
        rows = await fetch_all(
            self._conn,
            f"SELECT {_bucket('joined_at', starts)} AS b, COUNT(*) FROM members"
            " WHERE joined_at >= ? AND joined_at < ? GROUP BY b",
            (starts[0], until),
            bulk=True,
        )
        found = {int(r[0]): int(r[1]) for r in rows}
        return [found.get(i, 0) for i in range(len(starts))]

    async def points_per_day(self, starts: Sequence[int], until: int) -> list[PointsFlow]:
        """Points issued and redeemed in each window [starts[i], starts[i+1]) (the last one ends at `until`)."""
        if not starts:
            return []
        rows = await fetch_all(
            self._conn,
            f"SELECT {_bucket('created_at', starts)} AS b, {_FLOW} GROUP BY b",
            (starts[0], until),
            bulk=True,
        )
        found = {int(r["b"]): from_row(PointsFlow, r) for r in rows}
        return [found.get(i, PointsFlow(0, 0)) for i in range(len(starts))]
