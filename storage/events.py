"""Events (活动) and their sign-ups; the capacity is enforced in the same statement as the sign-up.

A sign-up and a change of capacity first lock the event's row (`_LOCK_EVENT`, an update that changes nothing):
on PostgreSQL, where transactions run at once under READ COMMITTED, two sign-ups to the last place would each
count the other's row as not there yet; with the lock the second waits for the first to commit, and its next
statement counts afresh. On SQLite (one writer at a time) the lock is a one-row no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from storage.db.sql import (
    Repo,
    changed_one,
    fetch_all_as,
    fetch_one,
    fetch_one_as,
    has_row,
    inserted_id,
    update_columns,
)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    title: str
    description: str
    starts_at: int
    capacity: int | None
    attend_points: int
    state: str
    forced: bool
    joined: int
    """How many members are signed up now."""


class SignupResult(Enum):
    JOINED = "joined"
    ALREADY = "already"
    FULL = "full"


class AttendResult(Enum):
    RECORDED = "recorded"
    ALREADY = "already"
    CLOSED = "closed"
    """The event is not on: cancelled, not started, or past its attendance window."""


_EVENT_SELECT = (
    "SELECT e.id, e.title, e.description, e.starts_at, e.capacity, e.attend_points, e.state, e.forced,"
    " (SELECT COUNT(*) FROM event_signups s WHERE s.event_id = e.id AND s.state = 'joined') AS joined"
    " FROM events e"
)


_LOCK_EVENT = "UPDATE events SET capacity = capacity WHERE id = ?"
"""Take the event's row lock until the transaction ends (PostgreSQL; a no-op change on SQLite). `capacity` is no
key and in no index: the lock does not hold up sign-ups' foreign keys, and SQLite rewrites no index."""


class EventRepo(Repo):
    async def create(
        self,
        title: str,
        description: str,
        starts_at: int,
        capacity: int | None,
        attend_points: int,
        forced: bool,
        created_by: int | None,
        now: int,
    ) -> int:
        return await inserted_id(
            self._conn,
            "INSERT INTO events(title, description, starts_at, capacity, attend_points, forced, created_by,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (title, description, starts_at, capacity, attend_points, int(forced), created_by, now),
        )

    async def get(self, event_id: int) -> Event | None:
        return await fetch_one_as(self._conn, Event, f"{_EVENT_SELECT} WHERE e.id = ?", (event_id,))

    async def upcoming(self, now: int, limit: int = 20) -> list[Event]:
        return await fetch_all_as(
            self._conn,
            Event,
            f"{_EVENT_SELECT} WHERE e.state = 'active' AND e.starts_at > ? ORDER BY e.starts_at LIMIT ?",
            (now, limit),
        )

    async def update(self, event_id: int, **fields: object) -> bool:
        """Change some of title, description, starts_at, capacity, attend_points, forced of an active event."""
        allowed = {"title", "description", "starts_at", "capacity", "attend_points", "forced"}
        return await update_columns(self._conn, "events", event_id, fields, allowed, "state = 'active'")

    async def set_capacity(self, event_id: int, capacity: int | None) -> bool:
        """Change the capacity of an active event, unless more members are signed up than it would allow
        (checked in the same statement as the change, after taking the event's lock: no sign-up slips in)."""
        await self._conn.execute(_LOCK_EVENT, (event_id,))
        return await changed_one(
            self._conn,
            "UPDATE events SET capacity = :c WHERE id = :e AND state = 'active'"
            " AND (CAST(:c AS BIGINT) IS NULL"
            " OR :c >= (SELECT COUNT(*) FROM event_signups s WHERE s.event_id = :e AND s.state = 'joined'))",
            {"c": capacity, "e": event_id},
        )

    async def cancel(self, event_id: int) -> bool:
        return await changed_one(
            self._conn, "UPDATE events SET state = 'cancelled' WHERE id = ? AND state = 'active'", (event_id,)
        )

    async def join(self, event_id: int, member_id: int, now: int) -> SignupResult:
        """Sign up, unless already signed up or the event is full (checked in the same statement, after taking
        the event's lock, so sign-ups to the last place on several connections get it once)."""
        await self._conn.execute(_LOCK_EVENT, (event_id,))
        row = await fetch_one(
            self._conn,
            "INSERT INTO event_signups(event_id, member_id, state, joined_at)"
            " SELECT :e, :m, 'joined', :now FROM events e WHERE e.id = :e AND (e.capacity IS NULL OR"
            "  (SELECT COUNT(*) FROM event_signups s WHERE s.event_id = :e AND s.state = 'joined') < e.capacity)"
            " ON CONFLICT(event_id, member_id) DO UPDATE SET state = 'joined', joined_at = :now"
            "  WHERE event_signups.state = 'withdrawn'"
            " RETURNING member_id",
            {"e": event_id, "m": member_id, "now": now},
        )
        if row is not None:
            return SignupResult.JOINED
        existing = await fetch_one(
            self._conn,
            "SELECT state FROM event_signups WHERE event_id = ? AND member_id = ?",
            (event_id, member_id),
        )
        if existing is not None and existing[0] == "joined":
            return SignupResult.ALREADY
        return SignupResult.FULL

    async def withdraw(self, event_id: int, member_id: int) -> bool:
        return await changed_one(
            self._conn,
            "UPDATE event_signups SET state = 'withdrawn' WHERE event_id = ? AND member_id = ? AND state = 'joined'",
            (event_id, member_id),
        )

    async def mark_attended(self, event_id: int, member_id: int, now: int, window: int) -> AttendResult:
        """Record attendance once, only while the event is on: active, started, and at most `window` seconds
        after its start (checked in the same statement). A walk-in without sign-up is recorded too."""
        row = await fetch_one(
            self._conn,
            "INSERT INTO event_signups(event_id, member_id, state, joined_at, attended_at)"
            " SELECT :e, :m, 'joined', :now, :now FROM events e"
            "  WHERE e.id = :e AND e.state = 'active' AND e.starts_at <= :now AND :now <= e.starts_at + :window"
            " ON CONFLICT(event_id, member_id) DO UPDATE SET attended_at = :now"
            "  WHERE event_signups.attended_at IS NULL"
            " RETURNING member_id",
            {"e": event_id, "m": member_id, "now": now, "window": window},
        )
        if row is not None:
            return AttendResult.RECORDED
        existing = await fetch_one(
            self._conn,
            "SELECT 1 FROM event_signups WHERE event_id = ? AND member_id = ? AND attended_at IS NOT NULL",
            (event_id, member_id),
        )
        return AttendResult.ALREADY if existing is not None else AttendResult.CLOSED

    async def is_signed_up(self, event_id: int, member_id: int) -> bool:
        return await has_row(
            self._conn,
            "SELECT 1 FROM event_signups WHERE event_id = ? AND member_id = ? AND state = 'joined'",
            (event_id, member_id),
        )
