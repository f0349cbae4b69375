"""Points expiry and the yearly tier review: bulk statements over the ledger (each runs off the event loop).

Expiry is first in, first out: every positive entry is a lot, every negative entry (spending, deductions,
earlier expiries) uses up the oldest lots first. Because lots expire in the order they were earned (the expiry
date only ever grows with the earning date), what is still unspent of the lots earned before a cutoff is one sum
per member: the points earned before the cutoff less everything ever spent, when that is above zero. So the
FIFO needs no per-lot walk: one grouped statement books it for the whole shop.

The tier review leaves lifetime points alone and keeps, per member, how many of them no longer count towards
the tier (`tier_standing.discount`, see migration 0021)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all, fetch_one

_DUE = (
    "SELECT l.member_id, SUM(CASE WHEN l.delta > 0 AND l.created_at < :cutoff THEN l.delta ELSE 0 END)"
    " + SUM(CASE WHEN l.delta < 0 THEN l.delta ELSE 0 END) AS due"
    " FROM ledger l JOIN members m ON m.id = l.member_id WHERE m.balance > 0 GROUP BY l.member_id"
)
"""Per member with a balance, the points earned before `:cutoff` (unix seconds) that are still unspent."""


@dataclass(frozen=True, slots=True)
class Due:
    member_id: int
    points: int


class ExpiryRepo(Repo):
    async def expire(self, cutoff: int, expires_on: str, now: int, *, note: str, ref: str) -> list[Due]:
        """Book, for every member, the still unspent points earned before `cutoff` as one 'expire' entry
        (earned_delta 0: the tier stays), once per member and `expires_on` ('expire:<member>:<date>'). Returns
        what was booked now; a repeat books nothing."""
        rows = await fetch_all(
            self._conn,
            "INSERT INTO ledger(member_id, delta, earned_delta, reason, note, ref, idem_key, created_at)"
            " SELECT d.member_id, -d.due, 0, 'expire', :note, :ref, 'expire:' || d.member_id || ':' || :on, :now"
            f" FROM ({_DUE}) d WHERE d.due > 0 ORDER BY d.member_id"
            " ON CONFLICT(idem_key) DO NOTHING RETURNING member_id, -delta AS points",
            {"cutoff": cutoff, "note": note, "ref": ref, "on": expires_on, "now": now},
            bulk=True,
        )
        return [Due(int(r["member_id"]), int(r["points"])) for r in rows]

    async def remind(self, cutoff: int, expires_on: str, now: int) -> list[Due]:
        """Record a reminder for every member with unspent points earned before `cutoff` (they expire after
        `expires_on`), once per member and date. Returns the reminders recorded now, to be sent."""
        rows = await fetch_all(
            self._conn,
            "INSERT INTO points_expiry_reminders(member_id, expires_on, points, created_at)"
            f" SELECT d.member_id, :on, d.due, :now FROM ({_DUE}) d WHERE d.due > 0 ORDER BY d.member_id"
            " ON CONFLICT DO NOTHING RETURNING member_id, points",
            {"cutoff": cutoff, "on": expires_on, "now": now},
            bulk=True,
        )
        return [Due(int(r["member_id"]), int(r["points"])) for r in rows]

    async def due_for(self, member_id: int, cutoff: int) -> int:
        """One member's unspent points earned before `cutoff` (for their own view)."""
        row = await fetch_one(
            self._conn,
            "SELECT COALESCE(SUM(CASE WHEN delta > 0 AND created_at < ? THEN delta ELSE 0 END)"
            " + SUM(CASE WHEN delta < 0 THEN delta ELSE 0 END), 0) FROM ledger WHERE member_id = ?",
            (cutoff, member_id),
        )
        return max(int(row[0]), 0) if row else 0


@dataclass(frozen=True, slots=True)
class Reviewed:
    member_id: int
    earned_window: int
    tier_before: str
    tier_after: str


def _tier_of(points: str) -> str:
    """SQL: the id of the highest tier whose threshold `points` reach (:tiers is JSON [[min_points, id], ...])."""
    return (
        "(SELECT json_extract(t.value, '$[1]') FROM json_each(:tiers) t"
        f" WHERE CAST(json_extract(t.value, '$[0]') AS BIGINT) <= {points}"
        " ORDER BY CAST(json_extract(t.value, '$[0]') AS BIGINT) DESC LIMIT 1)"
    )


class TierReviewRepo(Repo):
    async def discount(self, member_id: int) -> int:
        """Lifetime points of this member that no longer count towards the tier (0 before any review)."""
        row = await fetch_one(self._conn, "SELECT discount FROM tier_standing WHERE member_id = ?", (member_id,))
        return int(row[0]) if row else 0

    async def move(self, source_id: int, target_id: int) -> None:
        """A merge: `source_id`'s lifetime points move to `target_id`, and so does what the review set aside of
        them (added to the target's own), so the merged member's tier points are the sum of both; the source's
        standing goes."""
        await self._conn.execute(
            "INSERT INTO tier_standing(member_id, discount, reviewed_at)"
            " SELECT CAST(:target AS BIGINT), discount, reviewed_at FROM tier_standing"
            " WHERE member_id = :source AND discount > 0"
            " ON CONFLICT(member_id) DO UPDATE SET discount = tier_standing.discount + excluded.discount,"
            " reviewed_at = MAX(tier_standing.reviewed_at, excluded.reviewed_at)",
            {"source": source_id, "target": target_id},
        )
        await self._conn.execute("DELETE FROM tier_standing WHERE member_id = ?", (source_id,))

    async def review(
        self, year: int, window: tuple[int, int], tiers: Sequence[tuple[int, str]], now: int
    ) -> list[Reviewed]:
        """Review every member above the lowest tier once for `year`: a member keeps their tier when the points
        earned in `window` (unix seconds [from, to)) reach it; otherwise they move to the tier those points
        reach, and their tier points become the window's points (discount = lifetime points - window points).
        Returns the members reviewed now, kept ones too; a repeat for the same year reviews nobody."""
        tiers_json = json.dumps(sorted([int(low), tier_id] for low, tier_id in tiers))
        second = sorted(low for low, _ in tiers)[1] if len(tiers) > 1 else None
        if second is None:
            return []
        rows = await fetch_all(
            self._conn,
            "INSERT INTO tier_reviews(member_id, year, earned_window, tier_before, tier_after, reviewed_at)"
            f" SELECT p.member_id, :year, p.win, {_tier_of('p.points')}, {_tier_of('MIN(p.points, p.win)')}, :now"
            " FROM (SELECT m.id AS member_id, m.earned - COALESCE(s.discount, 0) AS points,"
            "  MAX(0, COALESCE((SELECT SUM(l.earned_delta) FROM ledger l WHERE l.member_id = m.id"
            "   AND l.created_at >= :start AND l.created_at < :end), 0)) AS win"
            "  FROM members m LEFT JOIN tier_standing s ON s.member_id = m.id"
            "  WHERE m.earned - COALESCE(s.discount, 0) >= :second) p WHERE true ORDER BY p.member_id"
            " ON CONFLICT DO NOTHING RETURNING member_id, earned_window, tier_before, tier_after",
            {"year": year, "tiers": tiers_json, "now": now, "start": window[0], "end": window[1], "second": second},
            bulk=True,
        )
        reviewed = [Reviewed(int(r[0]), int(r[1]), str(r[2]), str(r[3])) for r in rows]
        dropped = [r.member_id for r in reviewed if r.tier_after != r.tier_before]
        if dropped:
            await self._conn.execute(
                "INSERT INTO tier_standing(member_id, discount, reviewed_at)"
                " SELECT r.member_id, MAX(0, m.earned - r.earned_window), :now FROM json_each(:ids) j"
                " JOIN tier_reviews r ON r.member_id = CAST(j.value AS BIGINT) AND r.year = :year"
                " JOIN members m ON m.id = CAST(j.value AS BIGINT)"
                " WHERE true ON CONFLICT(member_id) DO UPDATE SET discount = excluded.discount,"
                " reviewed_at = excluded.reviewed_at",
                {"ids": json.dumps(dropped), "year": year, "now": now},
                bulk=True,
            )
        return reviewed
