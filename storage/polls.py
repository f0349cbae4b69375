"""Polls and their answers: one row per (poll, member), changeable while the poll is open. The database
refuses an answer that does not fit its poll (migration 0014), whoever writes it.

An answer, a withdrawal, a close and a delete first lock the poll's row (`_LOCK`, an update that changes nothing):
on PostgreSQL, where transactions run at once under READ COMMITTED, an answer's insert does not wait for a close
in flight (its foreign key only shares the row's key), so it could land after the close's tally, and a delete
could see no answer while the first one is being written. With the lock the second waits for the first to commit,
and its next statement sees what the first did. On SQLite (one writer at a time) it is a one-row no-op.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from storage.db.rollback import Rollback
from storage.db.sql import Repo, changed_one, comma_list, fetch_all_as, fetch_one, fetch_one_as, from_row


@dataclass(frozen=True, slots=True)
class Poll:
    id: int
    kind: str
    question: str
    options: tuple[str, ...]
    multi: bool
    tiers: tuple[str, ...]
    points: int
    audience: str
    closes_at: int
    state: str


@dataclass(frozen=True, slots=True)
class Answer:
    member_id: int
    display_name: str
    value: Any
    complete: bool
    answered_at: int
    draft: Any = None
    """A ranking poll: the new order being built while the finished `value` still counts (None: none)."""


_ANSWER = (
    "SELECT a.member_id, m.display_name, a.answer AS value, a.complete, a.answered_at, a.draft FROM poll_answers a"
)


def _answer(row: sqlite3.Row) -> Answer:
    draft = row["draft"]
    return from_row(Answer, row, value=json.loads(row["value"]), draft=None if draft is None else json.loads(draft))


_LOCK = "UPDATE polls SET points = points WHERE id = ?"
"""Take the poll's row lock until the transaction ends (PostgreSQL; a no-op change on SQLite). `points` is no key
and in no index: the lock does not hold up answers' foreign keys, and SQLite rewrites no index."""

_POLL = "SELECT id, kind, question, options, multi, tiers, points, audience, closes_at, state FROM polls"


def _poll(row: sqlite3.Row) -> Poll:
    return from_row(Poll, row, options=tuple(json.loads(row["options"])), tiers=comma_list(row["tiers"]))


class PollRepo(Repo):
    async def create(
        self,
        kind: str,
        question: str,
        options: list[str],
        multi: bool,
        tiers: tuple[str, ...],
        points: int,
        audience: str,
        closes_at: int,
        created_by: int | None,
        now: int,
        series: str | None = None,
    ) -> int | None:
        """Create a poll; None when a poll of the same `series` exists already."""
        row = await fetch_one(
            self._conn,
            "INSERT INTO polls(kind, question, options, multi, tiers, points, audience, closes_at, series,"
            " created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(series) DO NOTHING RETURNING id",
            (kind, question, json.dumps(options, ensure_ascii=False), int(multi), ",".join(tiers) or None, points,
             audience, closes_at, series, created_by, now),
        )  # fmt: skip
        return int(row[0]) if row else None

    async def get(self, poll_id: int) -> Poll | None:
        return await fetch_one_as(self._conn, _poll, f"{_POLL} WHERE id = ?", (poll_id,))

    async def by_series(self, series: str) -> Poll | None:
        return await fetch_one_as(self._conn, _poll, f"{_POLL} WHERE series = ?", (series,))

    async def open_ones(self) -> list[Poll]:
        return await fetch_all_as(self._conn, _poll, f"{_POLL} WHERE state = 'open' ORDER BY closes_at")

    async def close(self, poll_id: int, now: int) -> bool:
        """Close an open poll; False if it was not open any more. After the poll's lock, so the `answers` read next
        in the transaction are all it closed on (an answer racing it is either among them or refused)."""
        await self._conn.execute(_LOCK, (poll_id,))
        return await changed_one(
            self._conn,
            "UPDATE polls SET state = 'closed', closed_at = ? WHERE id = ? AND state = 'open'",
            (now, poll_id),
        )

    async def delete(self, poll_id: int, now: int) -> bool:
        """Take back an open poll nobody has answered (not even a ranking begun): it is closed and marked
        deleted in one conditional update after the poll's lock, so an answer racing it wins. False otherwise."""
        await self._conn.execute(_LOCK, (poll_id,))
        return await changed_one(
            self._conn,
            "UPDATE polls SET state = 'closed', closed_at = :now, deleted_at = :now WHERE id = :id AND state = 'open'"
            " AND NOT EXISTS (SELECT 1 FROM poll_answers a WHERE a.poll_id = :id)",
            {"now": now, "id": poll_id},
        )

    async def answer(self, poll_id: int, member_id: int, value: Any, complete: bool, now: int) -> None:
        """Record or change the member's answer (dropping a ranking being rebuilt); raises PollClosed when the
        poll is not open, sqlite3.IntegrityError when the answer does not fit the poll. After the poll's lock: a
        close in flight is waited for, and then refuses the answer."""
        await self._conn.execute(_LOCK, (poll_id,))
        row = await fetch_one(
            self._conn,
            "INSERT INTO poll_answers(poll_id, member_id, answer, complete, answered_at)"
            " SELECT id, :m, :a, :c, :now FROM polls WHERE id = :p AND state = 'open'"
            " ON CONFLICT(poll_id, member_id) DO UPDATE SET answer = :a, complete = :c, answered_at = :now,"
            " draft = NULL RETURNING member_id",
            {"p": poll_id, "m": member_id, "a": json.dumps(value), "c": int(complete), "now": now},
        )
        if row is None:
            raise PollClosed

    async def set_draft(self, poll_id: int, member_id: int, draft: list[int] | None) -> None:
        """Start, change or drop the new ranking a member builds over a finished one (which keeps counting);
        raises PollClosed when the poll is not open or the member has no finished answer."""
        cur = await self._conn.execute(
            "UPDATE poll_answers SET draft = ? WHERE poll_id = ? AND member_id = ? AND complete = 1"
            " AND EXISTS (SELECT 1 FROM polls WHERE id = ? AND state = 'open')",
            (None if draft is None else json.dumps(draft), poll_id, member_id, poll_id),
        )
        if cur.rowcount != 1:
            raise PollClosed

    async def withdraw(self, poll_id: int, member_id: int) -> None:
        """Take back the member's answer while the poll is open (after the poll's lock, like `answer`)."""
        await self._conn.execute(_LOCK, (poll_id,))
        await self._conn.execute(
            "DELETE FROM poll_answers WHERE poll_id = ? AND member_id = ?"
            " AND EXISTS (SELECT 1 FROM polls WHERE id = ? AND state = 'open')",
            (poll_id, member_id, poll_id),
        )

    async def answer_of(self, poll_id: int, member_id: int) -> Answer | None:
        return await fetch_one_as(
            self._conn,
            _answer,
            f"{_ANSWER} JOIN members m ON m.id = a.member_id WHERE a.poll_id = ? AND a.member_id = ?",
            (poll_id, member_id),
        )

    async def answers(self, poll_id: int) -> list[Answer]:
        return await fetch_all_as(
            self._conn,
            _answer,
            f"{_ANSWER} JOIN members m ON m.id = a.member_id WHERE a.poll_id = ? ORDER BY a.answered_at, a.member_id",
            (poll_id,),
            bulk=True,
        )

    async def map_native(self, channel: str, native_id: str, poll_id: int) -> None:
        await self._conn.execute(
            "INSERT INTO poll_native(channel, native_id, poll_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (channel, native_id, poll_id),
        )

    async def by_native(self, channel: str, native_id: str) -> int | None:
        row = await fetch_one(
            self._conn, "SELECT poll_id FROM poll_native WHERE channel = ? AND native_id = ?", (channel, native_id)
        )
        return int(row[0]) if row else None


class PollClosed(Rollback):
    """The poll is closed (or gone); the answer was not recorded."""
