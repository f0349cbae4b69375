"""Feedback tickets (投诉建议) and their messages: opening, staff replies, closing, the member's one rating,
the one escalation of an unanswered ticket, and the satisfaction figures drawn from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from storage.db.sql import Repo, changed_one, fetch_all, fetch_all_as, fetch_one, fetch_one_as, inserted_id

KINDS = ("complaint", "suggestion", "feedback")


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    member_id: int
    member_name: str
    kind: str
    channel: str
    chat_id: str
    is_group: bool
    state: str
    created_at: int
    answer_by: int
    """The answer time promised to the member when the ticket was opened."""
    answered_at: int | None
    closed_at: int | None
    escalated_at: int | None
    rating: int | None
    body: str
    """The member's own words that opened the ticket."""


@dataclass(frozen=True, slots=True)
class TicketMessage:
    id: int
    author_id: int
    author_name: str
    role: str
    body: str
    delivered: str | None
    created_at: int


_SELECT = (
    "SELECT t.id, t.member_id, m.display_name AS member_name, t.kind, t.channel, t.chat_id, t.is_group, t.state,"
    " t.created_at, t.answer_by, t.answered_at, t.closed_at, t.escalated_at, t.rating, COALESCE((SELECT body"
    " FROM ticket_messages x WHERE x.ticket_id = t.id AND x.role = 'member' ORDER BY x.id LIMIT 1), '') AS body"
    " FROM tickets t JOIN members m ON m.id = t.member_id"
)


class TicketRepo(Repo):
    async def open(
        self,
        member_id: int,
        kind: str,
        channel: str,
        chat_id: str,
        is_group: bool,
        body: str,
        now: int,
        answer_by: int,
    ) -> int:
        """Open a ticket with the member's message; returns its number."""
        row = await fetch_one(
            self._conn,
            "INSERT INTO tickets(member_id, kind, channel, chat_id, is_group, created_at, answer_by)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (member_id, kind, channel, chat_id, int(is_group), now, answer_by),
        )
        assert row is not None
        ticket_id = int(row[0])
        await self.add_message(ticket_id, member_id, "member", body, now)
        return ticket_id

    async def add_message(
        self, ticket_id: int, author_id: int, role: str, body: str, now: int, delivered: str | None = None
    ) -> int:
        return await inserted_id(
            self._conn,
            "INSERT INTO ticket_messages(ticket_id, author_id, role, body, delivered, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (ticket_id, author_id, role, body, delivered, now),
        )

    async def get(self, ticket_id: int) -> Ticket | None:
        return await fetch_one_as(self._conn, Ticket, f"{_SELECT} WHERE t.id = ?", (ticket_id,))

    async def messages(self, ticket_id: int) -> list[TicketMessage]:
        return await fetch_all_as(
            self._conn,
            TicketMessage,
            "SELECT x.id, x.author_id, m.display_name AS author_name, x.role, x.body, x.delivered, x.created_at"
            " FROM ticket_messages x JOIN members m ON m.id = x.author_id WHERE x.ticket_id = ? ORDER BY x.id",
            (ticket_id,),
        )

    async def unclosed(self, limit: int = 50) -> list[Ticket]:
        """Open and answered tickets, oldest first."""
        return await fetch_all_as(
            self._conn,
            Ticket,
            f"{_SELECT} WHERE t.state IN ('open', 'answered') ORDER BY t.created_at, t.id LIMIT ?",
            (limit,),
        )

    async def mark_answered(self, ticket_id: int, now: int) -> bool:
        """The first staff reply answers the ticket; True only that first time."""
        return await changed_one(
            self._conn,
            "UPDATE tickets SET state = 'answered', answered_at = ? WHERE id = ? AND state = 'open'",
            (now, ticket_id),
        )

    async def close(self, ticket_id: int, closed_by: int, now: int) -> bool:
        return await changed_one(
            self._conn,
            "UPDATE tickets SET state = 'closed', closed_at = ?, closed_by = ? WHERE id = ? AND state <> 'closed'",
            (now, closed_by, ticket_id),
        )

    async def rate(self, ticket_id: int, member_id: int, rating: int, now: int) -> bool:
        """Record the member's rating of their closed ticket; False if it is not theirs, not closed or rated."""
        return await changed_one(
            self._conn,
            "UPDATE tickets SET rating = ?, rated_at = ?"
            " WHERE id = ? AND member_id = ? AND state = 'closed' AND rating IS NULL",
            (rating, now, ticket_id, member_id),
        )

    async def escalate_due(self, opened_before: int, now: int) -> list[Ticket]:
        """Mark every unanswered ticket opened at or before `opened_before` as escalated, once; returns them."""
        rows = await fetch_all(
            self._conn,
            "UPDATE tickets SET escalated_at = ?"
            " WHERE state = 'open' AND escalated_at IS NULL AND created_at <= ? RETURNING id",
            (now, opened_before),
        )
        if not rows:
            return []
        ids = [int(r[0]) for r in rows]
        return await fetch_all_as(
            self._conn,
            Ticket,
            f"{_SELECT} WHERE t.id IN ({','.join('?' * len(ids))}) ORDER BY t.created_at, t.id",
            ids,
        )

    async def queue_chat(self, announcement_id: int, channel: str, chat_id: str, body: str) -> int:
        """A delivery of `body` into one chat (the chat a ticket was opened in); returns rows queued."""
        cur = await self._conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target, body)"
            " VALUES (?, ?, 'chat', ?, ?) ON CONFLICT DO NOTHING",
            (announcement_id, channel, chat_id, body),
        )
        return cur.rowcount

    async def stats(self, now: int | None = None) -> dict[str, Any]:
        """Counts by state, late tickets, and the ratings. A ticket is late when its first answer came after
        the promised time, or it is unanswered past it (still open: counted only when `now` is given)."""
        row = await fetch_one(
            self._conn,
            "SELECT COUNT(*),"
            " COALESCE(SUM(CASE WHEN state = 'open' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN state = 'answered' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN state = 'closed' THEN 1 ELSE 0 END), 0),"
            " COALESCE(SUM(CASE WHEN answered_at IS NOT NULL THEN CASE WHEN answered_at > answer_by THEN 1 ELSE 0 END"
            "  WHEN COALESCE(closed_at, :now) > answer_by THEN 1 ELSE 0 END), 0),"
            " COUNT(rating), AVG(rating), COALESCE(SUM(CASE WHEN rating >= 4 THEN 1 ELSE 0 END), 0)"
            " FROM tickets",
            {"now": now},
            bulk=True,
        )
        assert row is not None
        return {
            "total": row[0],
            "open": row[1],
            "answered": row[2],
            "closed": row[3],
            "late": row[4],
            "rated": row[5],
            "average_rating": round(float(row[6]), 2) if row[6] is not None else None,
            "satisfied": row[7],
        }


class _HasTickets(Protocol):
    tickets: TicketRepo


async def ticket_stats(repos: _HasTickets, now: int | None = None) -> dict[str, Any]:
    """Satisfaction figures of the feedback desk: open, answered, closed, late, rated, average_rating (None
    without ratings) and satisfied (ratings of 4 or 5). Pass `now` to count open tickets past their promise."""
    return await repos.tickets.stats(now)
