"""Announcements: what to say, to whom and when; the scheduler is re-planned from these rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from storage.db.sql import Statements, fetch_all, fetch_one

Subject = tuple[str, int]
"""What an announcement is about: (subject kind, id), e.g. ('event', 3); handlers.core.kinds names them."""


@dataclass(frozen=True, slots=True)
class Announcement:
    id: int
    kind: str
    audience: str
    tiers: tuple[str, ...]
    text: str
    buttons: tuple[tuple[str, str], ...]
    lead: str | None
    due_at: int
    state: str
    outcome: str
    subject_kind: str | None = None
    subject_id: int | None = None

    def subject_of(self, subject_kind: str) -> int | None:
        """The subject's id if this announcement is about a `subject_kind`, else None."""
        return self.subject_id if self.subject_kind == subject_kind else None

    @property
    def subject(self) -> Subject | None:
        if self.subject_kind is None or self.subject_id is None:
            return None
        return self.subject_kind, self.subject_id

    # Read-only views of the subject under the names of the former per-feature columns.
    @property
    def event_id(self) -> int | None:
        return self.subject_of("event")

    @property
    def sale_id(self) -> int | None:
        return self.subject_of("sale")

    @property
    def group_buy_id(self) -> int | None:
        return self.subject_of("group_buy")

    @property
    def poll_id(self) -> int | None:
        return self.subject_of("poll")

    @property
    def member_id(self) -> int | None:
        return self.subject_of("member")


_SELECT = (
    "SELECT id, kind, audience, tiers, text, buttons, lead, due_at, state, outcome, subject_kind, subject_id"
    " FROM announcements"
)


def _announcement(row: sqlite3.Row) -> Announcement:
    return Announcement(
        id=row["id"],
        kind=row["kind"],
        audience=row["audience"],
        tiers=tuple(t for t in (row["tiers"] or "").split(",") if t),
        text=row["text"],
        buttons=tuple((label, data) for label, data in json.loads(row["buttons"])),
        lead=row["lead"],
        due_at=row["due_at"],
        state=row["state"],
        outcome=row["outcome"],
        subject_kind=row["subject_kind"],
        subject_id=row["subject_id"],
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
        subject: Subject | None = None,
        image: bytes | None = None,
        lead: str | None = None,
        created_by: int | None = None,
    ) -> int:
        """A pending announcement; a kind the database does not know, or a subject that does not exist, is
        refused (sqlite3.IntegrityError)."""
        subject_kind, subject_id = subject if subject is not None else (None, None)
        row = await fetch_one(
            self._conn,
            "INSERT INTO announcements(kind, audience, tiers, text, buttons, subject_kind, subject_id, image, lead,"
            " due_at, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                kind, audience, ",".join(tiers) or None, text, json.dumps([list(b) for b in buttons]),
                subject_kind, subject_id, image, lead, due_at, created_by, now,
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

    async def pending(self, kind: str | None = None, subject: Subject | None = None) -> list[Announcement]:
        where, params = ["state = 'pending'"], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if subject is not None:
            where.append("subject_kind = ? AND subject_id = ?")
            params.extend(subject)
        rows = await fetch_all(self._conn, f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY due_at, id", params)
        return [_announcement(r) for r in rows]

    async def for_subject(self, subject_kind: str, subject_id: int) -> list[Announcement]:
        """Every announcement about one subject, pending or not, in the order they are due."""
        rows = await fetch_all(
            self._conn,
            f"{_SELECT} WHERE subject_kind = ? AND subject_id = ? ORDER BY due_at, id",
            (subject_kind, subject_id),
        )
        return [_announcement(r) for r in rows]

    async def for_event(self, event_id: int) -> list[Announcement]:
        """`for_subject('event', event_id)`."""
        return await self.for_subject("event", event_id)

    async def settle(self, announcement_id: int, state: str, now: int, outcome: str = "") -> bool:
        """Move a pending announcement to queued, skipped or cancelled; False if it was no longer pending."""
        cur = await self._conn.execute(
            "UPDATE announcements SET state = ?, outcome = ?, queued_at = ? WHERE id = ? AND state = 'pending'",
            (state, outcome, now, announcement_id),
        )
        return cur.rowcount == 1

    async def cancel_pending_for(self, subject_kind: str, subject_id: int) -> list[int]:
        """Cancel every pending announcement about one subject; returns their ids (for the scheduler)."""
        rows = await fetch_all(
            self._conn,
            "UPDATE announcements SET state = 'cancelled'"
            " WHERE subject_kind = ? AND subject_id = ? AND state = 'pending' RETURNING id",
            (subject_kind, subject_id),
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

    async def of_subject(self, kind: str, subject_kind: str, subject_id: int) -> list[int]:
        """Ids of the announcements of `kind` about one subject."""
        rows = await fetch_all(
            self._conn,
            "SELECT id FROM announcements WHERE subject_kind = ? AND subject_id = ? AND kind = ? ORDER BY id",
            (subject_kind, subject_id, kind),
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
