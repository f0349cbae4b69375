"""Announcements: what to say, to whom and when; the scheduler is re-planned from these rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from storage.sql import Statements, fetch_all, fetch_one


@dataclass(frozen=True, slots=True)
class Announcement:
    id: int
    kind: str
    audience: str
    tiers: tuple[str, ...]
    text: str
    buttons: tuple[tuple[str, str], ...]
    event_id: int | None
    lead: str | None
    due_at: int
    state: str
    outcome: str
    sale_id: int | None = None
    group_buy_id: int | None = None
    poll_id: int | None = None
    member_id: int | None = None


_SELECT = (
    "SELECT id, kind, audience, tiers, text, buttons, event_id, lead, due_at, state, outcome, sale_id, group_buy_id,"
    " poll_id, member_id FROM announcements"
)


def _announcement(row: sqlite3.Row) -> Announcement:
    return Announcement(
        id=row[0],
        kind=row[1],
        audience=row[2],
        tiers=tuple(t for t in (row[3] or "").split(",") if t),
        text=row[4],
        buttons=tuple((label, data) for label, data in json.loads(row[5])),
        event_id=row[6],
        lead=row[7],
        due_at=row[8],
        state=row[9],
        outcome=row[10],
        sale_id=row[11],
        group_buy_id=row[12],
        poll_id=row[13],
        member_id=row[14],
    )


class AnnouncementRepo:
    def __init__(self, conn: Statements) -> None:
        self._conn = conn

    async def create(
        self,
        kind: str,
        audience: str,
        text: str,
        due_at: int,
        now: int,
        *,
        tiers: tuple[str, ...] = (),
        buttons: tuple[tuple[str, str], ...] = (),
        event_id: int | None = None,
        sale_id: int | None = None,
        group_buy_id: int | None = None,
        poll_id: int | None = None,
        member_id: int | None = None,
        image: bytes | None = None,
        lead: str | None = None,
        created_by: int | None = None,
    ) -> int:
        row = await fetch_one(
            self._conn,
            "INSERT INTO announcements(kind, audience, tiers, text, buttons, event_id, sale_id, group_buy_id, poll_id,"
            " member_id, image, lead, due_at, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                kind, audience, ",".join(tiers) or None, text, json.dumps([list(b) for b in buttons]),
                event_id, sale_id, group_buy_id, poll_id, member_id, image, lead, due_at, created_by, now,
            ),
        )  # fmt: skip
        assert row is not None
        return int(row[0])

    async def get(self, announcement_id: int) -> Announcement | None:
        row = await fetch_one(self._conn, f"{_SELECT} WHERE id = ?", (announcement_id,))
        return _announcement(row) if row else None

    async def due(self, now: int, limit: int = 500) -> list[Announcement]:
        rows = await fetch_all(
            self._conn, f"{_SELECT} WHERE state = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?", (now, limit)
        )
        return [_announcement(r) for r in rows]

    async def pending_times(self) -> list[tuple[int, int]]:
        """(id, due_at) of every pending announcement, for re-planning the scheduler."""
        rows = await fetch_all(self._conn, "SELECT id, due_at FROM announcements WHERE state = 'pending'")
        return [(r[0], r[1]) for r in rows]

    async def pending(self, kind: str | None = None, event_id: int | None = None) -> list[Announcement]:
        where, params = ["state = 'pending'"], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if event_id is not None:
            where.append("event_id = ?")
            params.append(event_id)
        rows = await fetch_all(self._conn, f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY due_at, id", params)
        return [_announcement(r) for r in rows]

    async def for_event(self, event_id: int) -> list[Announcement]:
        rows = await fetch_all(self._conn, f"{_SELECT} WHERE event_id = ? ORDER BY due_at, id", (event_id,))
        return [_announcement(r) for r in rows]

    async def settle(self, announcement_id: int, state: str, now: int, outcome: str = "") -> bool:
        """Move a pending announcement to queued, skipped or cancelled; False if it was no longer pending."""
        cur = await self._conn.execute(
            "UPDATE announcements SET state = ?, outcome = ?, queued_at = ? WHERE id = ? AND state = 'pending'",
            (state, outcome, now, announcement_id),
        )
        return cur.rowcount == 1

    async def cancel_pending_for_event(self, event_id: int) -> list[int]:
        return await self._cancel_pending("event_id", event_id)

    async def cancel_pending_for_sale(self, sale_id: int) -> list[int]:
        return await self._cancel_pending("sale_id", sale_id)

    async def cancel_pending_for_group_buy(self, group_buy_id: int) -> list[int]:
        return await self._cancel_pending("group_buy_id", group_buy_id)

    async def cancel_pending_for_poll(self, poll_id: int) -> list[int]:
        return await self._cancel_pending("poll_id", poll_id)

    async def _cancel_pending(self, column: str, subject_id: int) -> list[int]:
        rows = await fetch_all(
            self._conn,
            f"UPDATE announcements SET state = 'cancelled' WHERE {column} = ? AND state = 'pending' RETURNING id",
            (subject_id,),
        )
        return [r[0] for r in rows]

    async def set_text(
        self, announcement_id: int, text: str, buttons: tuple[tuple[str, str], ...] | None = None
    ) -> None:
        if buttons is None:
            await self._conn.execute("UPDATE announcements SET text = ? WHERE id = ?", (text, announcement_id))
        else:
            await self._conn.execute(
                "UPDATE announcements SET text = ?, buttons = ? WHERE id = ?",
                (text, json.dumps([list(b) for b in buttons]), announcement_id),
            )

    async def of_subject(self, kind: str, sale_id: int | None = None, group_buy_id: int | None = None) -> list[int]:
        """Ids of the announcements of `kind` about one sale or group buy."""
        column, value = ("sale_id", sale_id) if sale_id is not None else ("group_buy_id", group_buy_id)
        rows = await fetch_all(
            self._conn, f"SELECT id FROM announcements WHERE kind = ? AND {column} = ? ORDER BY id", (kind, value)
        )
        return [r[0] for r in rows]

    # --- delivery reports ------------------------------------------------------------------------
    async def unreported_outcomes(self, limit: int = 20) -> list[int]:
        """Ids of announcements not reported to staff yet whose deliveries are all settled (none pending or
        sending) and at least one of them failed or is uncertain. Staff notices are never reported."""
        rows = await fetch_all(
            self._conn,
            "SELECT a.id FROM announcements a WHERE a.outcome_reported_at IS NULL"
            " AND a.kind <> 'staff' AND a.audience <> 'staff'"
            " AND EXISTS (SELECT 1 FROM deliveries d WHERE d.announcement_id = a.id"
            " AND d.state IN ('failed', 'uncertain'))"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.announcement_id = a.id"
            " AND d.state IN ('pending', 'sending'))"
            " ORDER BY a.id LIMIT ?",
            (limit,),
        )
        return [r[0] for r in rows]

    async def mark_outcome_reported(self, announcement_id: int, now: int) -> bool:
        """Record that staff were told how the announcement's delivery ended; False if it already was."""
        cur = await self._conn.execute(
            "UPDATE announcements SET outcome_reported_at = ? WHERE id = ? AND outcome_reported_at IS NULL",
            (now, announcement_id),
        )
        return cur.rowcount == 1

    async def outcome_reported_at(self, announcement_id: int) -> int | None:
        row = await fetch_one(
            self._conn, "SELECT outcome_reported_at FROM announcements WHERE id = ?", (announcement_id,)
        )
        return row[0] if row else None
