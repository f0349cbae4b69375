"""Announcements: what to say, to whom and when; the scheduler is re-planned from these rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import (
    BULK_ROWS,
    Repo,
    changed_one,
    comma_list,
    fetch_all,
    fetch_all_as,
    fetch_one,
    fetch_one_as,
    from_row,
    inserted_id,
)

Subject = tuple[str, int]
"""What an announcement is about: (subject kind, id), e.g. ('event', 3); handlers.core.kinds names them."""


def _subject_view(subject_kind: str) -> property:
    """A read-only attribute: the subject's id if the announcement is about a `subject_kind`, else None."""
    return property(lambda ann: ann.subject_of(subject_kind), doc=f"`subject_of({subject_kind!r})`.")


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
    event_id = _subject_view("event")
    sale_id = _subject_view("sale")
    group_buy_id = _subject_view("group_buy")
    poll_id = _subject_view("poll")
    member_id = _subject_view("member")


_SELECT = (
    "SELECT id, kind, audience, tiers, text, buttons, lead, due_at, state, outcome, subject_kind, subject_id"
    " FROM announcements"
)


def _announcement(row: sqlite3.Row) -> Announcement:
    return from_row(
        Announcement,
        row,
        tiers=comma_list(row["tiers"]),
        buttons=tuple((label, data) for label, data in json.loads(row["buttons"])),
    )


class AnnouncementRepo(Repo):
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
        return await inserted_id(
            self._conn,
            "INSERT INTO announcements(kind, audience, tiers, text, buttons, subject_kind, subject_id, image, lead,"
            " due_at, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                kind, audience, ",".join(tiers) or None, text, json.dumps([list(b) for b in buttons]),
                subject_kind, subject_id, image, lead, due_at, created_by, now,
            ),
        )  # fmt: skip

    async def create_many(
        self, kind: str, audience: str, items: Sequence[tuple[str, Subject | None]], due_at: int, now: int
    ) -> list[int]:
        """Pending announcements of one kind and audience, one per (text, subject) of `items`, in one statement
        (bulk beyond BULK_ROWS); returns their ids in the order of `items`."""
        if not items:
            return []
        rows = await fetch_all(
            self._conn,
            "INSERT INTO announcements(kind, audience, text, subject_kind, subject_id, due_at, created_at)"
            " SELECT ?, ?, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),"
            " CAST(json_extract(j.value, '$[2]') AS BIGINT),"
            " ?, ? FROM json_each(?) j WHERE true ORDER BY j.key RETURNING id",
            (kind, audience, due_at, now,
             json.dumps([[text, *(subject or (None, None))] for text, subject in items], ensure_ascii=False)),
            bulk=len(items) > BULK_ROWS,
        )  # fmt: skip
        return sorted(int(r["id"]) for r in rows)  # ids are given in insertion order, which follows `items`

    async def get(self, announcement_id: int) -> Announcement | None:
        return await fetch_one_as(self._conn, _announcement, f"{_SELECT} WHERE id = ?", (announcement_id,))

    async def due(self, now: int, limit: int = 500) -> list[Announcement]:
        return await fetch_all_as(
            self._conn,
            _announcement,
            f"{_SELECT} WHERE state = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            (now, limit),
        )

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
        return await fetch_all_as(
            self._conn, _announcement, f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY due_at, id", params
        )

    async def for_subject(self, subject_kind: str, subject_id: int) -> list[Announcement]:
        """Every announcement about one subject, pending or not, in the order they are due."""
        return await fetch_all_as(
            self._conn,
            _announcement,
            f"{_SELECT} WHERE subject_kind = ? AND subject_id = ? ORDER BY due_at, id",
            (subject_kind, subject_id),
        )

    async def for_event(self, event_id: int) -> list[Announcement]:
        """`for_subject('event', event_id)`."""
        return await self.for_subject("event", event_id)

    async def claim_pending(self, announcement_id: int) -> bool:
        """Take the announcement's row lock while it is still pending: False when another transaction settled it
        meanwhile (on PostgreSQL, two `run_due` at once: the second waits here and then finds it settled). A
        no-op write on a non-key column, so it costs nothing on SQLite's single writer."""
        return await changed_one(
            self._conn,
            "UPDATE announcements SET outcome = outcome WHERE id = ? AND state = 'pending'",
            (announcement_id,),
        )

    async def settle(self, announcement_id: int, state: str, now: int, outcome: str = "") -> bool:
        """Move a pending announcement to queued, skipped or cancelled; False if it was no longer pending."""
        return await changed_one(
            self._conn,
            "UPDATE announcements SET state = ?, outcome = ?, queued_at = ? WHERE id = ? AND state = 'pending'",
            (state, outcome, now, announcement_id),
        )

    async def settle_many(self, announcement_ids: Sequence[int], state: str, now: int, outcome: str = "") -> None:
        """`settle` for many pending announcements in one statement (bulk beyond BULK_ROWS)."""
        if announcement_ids:
            await self._conn.execute(
                "UPDATE announcements SET state = ?, outcome = ?, queued_at = ?"
                " WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'pending'",
                (state, outcome, now, json.dumps([int(i) for i in announcement_ids])),
                bulk=len(announcement_ids) > BULK_ROWS,
            )

    async def settle_by_deliveries(self, announcement_ids: Sequence[int], now: int, outcome: str) -> list[int]:
        """Settle pending announcements in one statement: 'queued' those with a delivery queued, 'skipped' with
        `outcome` the others; returns the skipped ones' ids, in order."""
        if not announcement_ids:
            return []
        delivered = "EXISTS (SELECT 1 FROM deliveries d WHERE d.announcement_id = announcements.id)"
        rows = await fetch_all(
            self._conn,
            f"UPDATE announcements SET state = CASE WHEN {delivered} THEN 'queued' ELSE 'skipped' END,"
            f" outcome = CASE WHEN {delivered} THEN '' ELSE ? END, queued_at = ?"
            " WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?)) AND state = 'pending' RETURNING id, state",
            (outcome, now, json.dumps([int(i) for i in announcement_ids])),
            bulk=len(announcement_ids) > BULK_ROWS,
        )
        return sorted(int(r["id"]) for r in rows if r["state"] == "skipped")

    async def cancel_pending_for(self, subject_kind: str, subject_id: int) -> list[int]:
        """Cancel every pending announcement about one subject; returns their ids (for the scheduler)."""
        rows = await fetch_all(
            self._conn,
            "UPDATE announcements SET state = 'cancelled'"
            " WHERE subject_kind = ? AND subject_id = ? AND state = 'pending' RETURNING id",
            (subject_kind, subject_id),
        )
        return [r[0] for r in rows]

    async def recall(self, announcement_id: int, now: int) -> str | None:
        """Mark an announcement recalled, once, cancelling it if still pending; returns the state it had
        ('pending', 'queued', ...), or None when it does not exist or was recalled before."""
        row = await fetch_one(
            self._conn, "SELECT state FROM announcements WHERE id = ? AND recalled_at IS NULL", (announcement_id,)
        )
        if row is None:
            return None
        await self._conn.execute(
            "UPDATE announcements SET recalled_at = ?, state = CASE state WHEN 'pending' THEN 'cancelled'"
            " ELSE state END WHERE id = ?",
            (now, announcement_id),
        )
        return str(row[0])

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
        return await changed_one(
            self._conn,
            "UPDATE announcements SET outcome_reported_at = ? WHERE id = ? AND outcome_reported_at IS NULL",
            (now, announcement_id),
        )

    async def outcome_reported_at(self, announcement_id: int) -> int | None:
        row = await fetch_one(
            self._conn, "SELECT outcome_reported_at FROM announcements WHERE id = ?", (announcement_id,)
        )
        return row[0] if row else None
