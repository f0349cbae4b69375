"""RFM segments of members from their recorded purchases, in one aggregate query plus a CASE, and the
win-back memory (each buyer's last segment entry and whether its care message went out).

A member's age is `now - last purchase` in seconds, compared with whole days; the CASE is evaluated in
order, so every member lands in exactly one segment:

==============  ===============================================================================
new             exactly 1 purchase, age <= new_days (45)
active          2+ purchases, age <= active_days (45)
lost            age > lost_days (360)
dormant_low     age >= dormant_low start (180) and not lost, i.e. 180..360 days, both ends included
dormant_high    age >= dormant_high start (90) and below dormant_low start, i.e. 90 days up to 180
cooling         bought, but none of the above: the gap between "recent" and "dormant", e.g. one or
                more purchases with the last 45-90 days ago (also a single purchase older than
                new_days but younger than active_days when those differ)
never           no recorded purchase
==============  ===============================================================================

A voided purchase (`/void purchase`, storage.purchases) counts for none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storage.db.sql import Repo, fetch_all, fetch_all_as, fetch_one, from_row
from storage.deliveries import MemberSelect

SEGMENTS = ("new", "active", "cooling", "dormant_high", "dormant_low", "lost", "never")
"""Every segment, from the most recent buyers to members who never bought."""
BUYER_SEGMENTS = SEGMENTS[:-1]
CARE_SEGMENTS = ("dormant_high", "dormant_low")
"""Segments whose entry earns a win-back care message."""
DAY = 86_400


@dataclass(frozen=True, slots=True)
class SegmentBounds:
    """The cut-off instants (unix seconds) that the CASE compares the last purchase with."""

    new_since: int
    """A single purchase at or after this is 'new'."""
    active_since: int
    """2+ purchases, the last at or after this: 'active'."""
    dormant_high_until: int
    """Last purchase at or before this (at least 90 days ago): dormant_high or older."""
    dormant_low_until: int
    """Last purchase at or before this (at least 180 days ago): dormant_low or older."""
    lost_before: int
    """Last purchase strictly before this (more than 360 days ago): lost."""

    @classmethod
    def at(
        cls, now: int, *, new_days: int, active_days: int, dormant_high_from: int, dormant_low_from: int, lost_days: int
    ) -> SegmentBounds:
        return cls(
            new_since=now - new_days * DAY,
            active_since=now - active_days * DAY,
            dormant_high_until=now - dormant_high_from * DAY,
            dormant_low_until=now - dormant_low_from * DAY,
            lost_before=now - lost_days * DAY,
        )

    def params(self) -> dict[str, int]:
        return {
            "new_since": self.new_since,
            "active_since": self.active_since,
            "high_until": self.dormant_high_until,
            "low_until": self.dormant_low_until,
            "lost_before": self.lost_before,
        }


@dataclass(frozen=True, slots=True)
class SegmentCounts:
    """Members per segment (every segment present, 0 when empty) and the buyers behind the repurchase rate."""

    members: dict[str, int]
    buyers: int
    """Members with at least one purchase."""
    repeat_buyers: int
    """Members with two or more purchases."""

    @property
    def total(self) -> int:
        return sum(self.members.values())


@dataclass(frozen=True, slots=True)
class SegmentMember:
    member_id: int
    display_name: str
    purchases: int
    last_purchase_at: int | None


@dataclass(frozen=True, slots=True)
class SegmentPage:
    total: int
    """Members in the segment, all pages together."""
    members: list[SegmentMember]


@dataclass(frozen=True, slots=True)
class CareDue:
    """A member who entered a care segment and has not had its care message yet."""

    member_id: int
    display_name: str
    segment: str
    last_purchase_at: int


# One row per buyer: count and last of the purchases that were not voided, read from the covering partial
# index purchases_member_live.
_AGGREGATE = (
    "SELECT member_id, COUNT(*) AS n, MAX(created_at) AS last FROM purchases WHERE voided_at IS NULL"
    " GROUP BY member_id"
)
# Order matters: each WHEN is only reached by members that no earlier WHEN took.
_CASE = (
    "CASE"
    " WHEN n = 1 AND last >= :new_since THEN 'new'"
    " WHEN n >= 2 AND last >= :active_since THEN 'active'"
    " WHEN last < :lost_before THEN 'lost'"
    " WHEN last <= :low_until THEN 'dormant_low'"
    " WHEN last <= :high_until THEN 'dormant_high'"
    " ELSE 'cooling' END"
)


def _check(segment: str) -> None:
    if segment not in SEGMENTS:
        raise ValueError(f"unknown segment {segment!r}; one of {', '.join(SEGMENTS)}")


def members_of(bounds: SegmentBounds, segment: str) -> MemberSelect:
    """The SELECT of the member ids (column `member_id`) of one segment, e.g. the audience of an announcement
    (`DeliveryRepo.queue_selected`). Raises ValueError for an unknown segment."""
    _check(segment)
    if segment == "never":
        return MemberSelect(
            "SELECT m.id AS member_id FROM members m"
            " WHERE NOT EXISTS (SELECT 1 FROM purchases p WHERE p.member_id = m.id AND p.voided_at IS NULL)",
            {},
        )
    return MemberSelect(
        f"SELECT member_id FROM ({_AGGREGATE}) WHERE {_CASE} = :seg", {**bounds.params(), "seg": segment}
    )


class SegmentRepo(Repo):
    async def counts(self, bounds: SegmentBounds) -> SegmentCounts:
        rows = await fetch_all(
            self._conn,
            f"SELECT seg, COUNT(*), SUM(CASE WHEN n >= 2 THEN 1 ELSE 0 END)"
            f" FROM (SELECT {_CASE} AS seg, n FROM ({_AGGREGATE})) GROUP BY seg",
            bounds.params(),
            bulk=True,
        )
        members = dict.fromkeys(SEGMENTS, 0)
        repeat = 0
        for seg, count, repeaters in rows:
            members[seg] = int(count)
            repeat += int(repeaters)
        buyers = sum(members.values())
        total = await fetch_one(self._conn, "SELECT COUNT(*) FROM members", bulk=True)
        members["never"] = int(total[0]) - buyers if total else 0
        return SegmentCounts(members, buyers, repeat)

    async def page(self, bounds: SegmentBounds, segment: str, limit: int, offset: int) -> SegmentPage:
        """Members of one segment, most recent last purchase first (for 'never': newest members first)."""
        _check(segment)
        params: dict[str, Any] = {**bounds.params(), "seg": segment, "limit": limit, "offset": offset}
        if segment == "never":
            sql = (
                "SELECT m.id AS member_id, m.display_name, 0 AS purchases, NULL AS last_purchase_at,"
                " COUNT(*) OVER () AS total FROM members m"
                " WHERE NOT EXISTS (SELECT 1 FROM purchases p WHERE p.member_id = m.id AND p.voided_at IS NULL)"
                " ORDER BY m.joined_at DESC, m.id DESC LIMIT :limit OFFSET :offset"
            )
        else:
            sql = (
                "SELECT a.member_id, m.display_name, a.n AS purchases, a.last AS last_purchase_at,"
                " COUNT(*) OVER () AS total"
                f" FROM (SELECT member_id, n, last, {_CASE} AS seg FROM ({_AGGREGATE})) a"
                " JOIN members m ON m.id = a.member_id WHERE a.seg = :seg"
                " ORDER BY a.last DESC, a.member_id LIMIT :limit OFFSET :offset"
            )
        rows = await fetch_all(self._conn, sql, params, bulk=True)
        if not rows and offset:
            total = await self.size(bounds, segment)
        else:
            total = int(rows[0]["total"]) if rows else 0
        return SegmentPage(total, [from_row(SegmentMember, r) for r in rows])

    async def member_ids(self, bounds: SegmentBounds, segment: str) -> list[int]:
        """Every member id of one segment, in id order."""
        chosen = members_of(bounds, segment)
        rows = await fetch_all(
            self._conn, f"SELECT member_id FROM ({chosen.sql}) ORDER BY member_id", chosen.params, bulk=True
        )
        return [int(r[0]) for r in rows]

    async def size(self, bounds: SegmentBounds, segment: str) -> int:
        """How many members one segment holds."""
        chosen = members_of(bounds, segment)
        row = await fetch_one(self._conn, f"SELECT COUNT(*) FROM ({chosen.sql})", chosen.params, bulk=True)
        return int(row[0]) if row else 0

    # --- win-back memory -------------------------------------------------------------------------
    async def track(self, bounds: SegmentBounds, now: int) -> int:
        """Remember every buyer's current segment entry; returns how many entries began now.

        A new segment, or a new last purchase in the same segment, is a new entry: cared_at is cleared."""
        cur = await self._conn.execute(
            "INSERT INTO member_segments(member_id, segment, last_purchase_at, entered_at)"
            f" SELECT member_id, {_CASE}, last, :now FROM ({_AGGREGATE}) WHERE true"
            " ON CONFLICT(member_id) DO UPDATE SET segment = excluded.segment,"
            " last_purchase_at = excluded.last_purchase_at, entered_at = excluded.entered_at, cared_at = NULL"
            " WHERE member_segments.segment <> excluded.segment"
            " OR member_segments.last_purchase_at <> excluded.last_purchase_at",
            {**bounds.params(), "now": now},
            bulk=True,
        )
        return cur.rowcount

    async def care_due(self, channels: list[str]) -> list[CareDue]:
        """Members in a care segment whose entry has no care message yet and who can be messaged privately on
        one of `channels` with private notices on (members who cannot be reached wait until they can)."""
        if not channels:
            return []
        marks = ",".join("?" * len(channels))
        return await fetch_all_as(
            self._conn,
            CareDue,
            "SELECT s.member_id, m.display_name, s.segment, s.last_purchase_at FROM member_segments s"
            " JOIN members m ON m.id = s.member_id"
            f" WHERE s.cared_at IS NULL AND s.segment IN ({','.join('?' * len(CARE_SEGMENTS))}) AND m.notify = 1"
            " AND EXISTS (SELECT 1 FROM identities i WHERE i.member_id = s.member_id AND i.can_message = 1"
            f" AND i.channel IN ({marks})) ORDER BY s.member_id",
            (*CARE_SEGMENTS, *channels),
            bulk=True,
        )

    async def mark_cared(self, member_ids: list[int], now: int) -> list[int]:
        """Mark these members' current entries cared for; returns the ones marked now (an entry another run
        marked first is not returned: its care message is that run's), in order."""
        rows = await fetch_all(
            self._conn,
            "UPDATE member_segments SET cared_at = ? WHERE cared_at IS NULL"
            " AND member_id IN (SELECT CAST(value AS INTEGER) FROM json_each(?)) RETURNING member_id",
            (now, "[" + ",".join(str(int(i)) for i in member_ids) + "]"),
            bulk=True,
        )
        return sorted(int(r[0]) for r in rows)

    async def entry_of(self, member_id: int) -> tuple[str, int, int, int | None] | None:
        """(segment, last purchase, entered at, cared at) as last tracked, or None."""
        row = await fetch_one(
            self._conn,
            "SELECT segment, last_purchase_at, entered_at, cared_at FROM member_segments WHERE member_id = ?",
            (member_id,),
        )
        return (row[0], row[1], row[2], row[3]) if row else None
