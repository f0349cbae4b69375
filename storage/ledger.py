"""The points ledger: append-only entries with idempotency keys; balances follow by trigger."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.rollback import Rollback
from storage.db.sql import Repo, fetch_all, fetch_all_as, fetch_one, fetch_one_as


class InsufficientPoints(Rollback):
    """The entry would take the member's balance below zero; nothing was booked."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    id: int
    member_id: int
    delta: int
    reason: str
    note: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Booking:
    """The outcome of an append: whether it was new, and the member's totals afterwards."""

    booked: bool
    balance: int
    earned: int
    entry_id: int | None = None
    """The entry booked now, or the one booked before under the same key."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger entry as a void reads it: what it moved and why."""

    id: int
    member_id: int
    delta: int
    earned_delta: int
    reason: str
    note: str
    ref: str | None


class LedgerRepo(Repo):
    async def append(
        self,
        member_id: int,
        delta: int,
        reason: str,
        idem_key: str,
        now: int,
        *,
        note: str = "",
        ref: str | None = None,
        earned_delta: int | None = None,
        actor_id: int | None = None,
    ) -> Booking:
        """Book `delta` points once per `idem_key`; a repeat books nothing and says so.

        `earned_delta` (default: `delta` when positive, else 0) moves lifetime earned points.
        Raises InsufficientPoints if the balance would go negative.
        """
        if earned_delta is None:
            earned_delta = max(delta, 0)
        try:
            row = await fetch_one(
                self._conn,
                "INSERT INTO ledger(member_id, delta, earned_delta, reason, note, ref, idem_key, actor_id,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(idem_key) DO NOTHING RETURNING id",
                (member_id, delta, earned_delta, reason, note, ref, idem_key, actor_id, now),
            )
        except sqlite3.IntegrityError as exc:
            if "balance_nonnegative" in str(exc):
                raise InsufficientPoints from exc
            raise
        totals = await fetch_one(self._conn, "SELECT balance, earned FROM members WHERE id = ?", (member_id,))
        assert totals is not None
        entry_id = int(row[0]) if row is not None else await self.id_for(idem_key)
        return Booking(row is not None, totals["balance"], totals["earned"], entry_id)

    async def id_for(self, idem_key: str) -> int | None:
        row = await fetch_one(self._conn, "SELECT id FROM ledger WHERE idem_key = ?", (idem_key,))
        return int(row[0]) if row else None

    async def entry(self, entry_id: int) -> Entry | None:
        return await fetch_one_as(
            self._conn,
            Entry,
            "SELECT id, member_id, delta, earned_delta, reason, note, ref FROM ledger WHERE id = ?",
            (entry_id,),
        )

    async def entry_by_key(self, idem_key: str) -> Entry | None:
        return await fetch_one_as(
            self._conn,
            Entry,
            "SELECT id, member_id, delta, earned_delta, reason, note, ref FROM ledger WHERE idem_key = ?",
            (idem_key,),
        )

    async def gift_to_all(
        self, delta: int, reason: str, idem_prefix: str, now: int, *, note: str = "", ref: str | None = None
    ) -> int:
        """Book a gift of `delta` (> 0) points to every member with an identity (a member merged into another
        has none left) in one statement, once per member: the idempotency key is `idem_prefix` followed by the
        member id, so a repeat books nothing for those who had it. The trigger moves each balance with its
        entry. Returns how many entries were booked. A bulk statement: it never runs on the event loop."""
        if delta <= 0:
            raise ValueError("a gift to all is a positive number of points")
        cur = await self._conn.execute(
            "INSERT INTO ledger(member_id, delta, earned_delta, reason, note, ref, idem_key, created_at)"
            " SELECT m.id, ?, ?, ?, ?, ?, ? || m.id, ? FROM members m"
            " WHERE EXISTS (SELECT 1 FROM identities i WHERE i.member_id = m.id) ORDER BY m.id"
            " ON CONFLICT(idem_key) DO NOTHING",
            (delta, delta, reason, note, ref, idem_prefix, now),
            bulk=True,
        )
        return cur.rowcount

    async def gift_to_each(
        self,
        member_ids: Sequence[int],
        delta: int,
        reason: str,
        idem_key: tuple[str, str],
        now: int,
        *,
        note: str = "",
        ref: str | None = None,
    ) -> set[int]:
        """Book a gift of `delta` (> 0) points to each of `member_ids` in one statement, once per member: the
        idempotency key is `idem_key[0]`, the member id and `idem_key[1]` (e.g. ('birthday:', ':2027')), so a
        repeat books nothing for those who had it. Returns the members booked now. A bulk statement, like
        `gift_to_all`: it never runs on the event loop."""
        if delta <= 0:
            raise ValueError("a gift is a positive number of points")
        if not member_ids:
            return set()
        rows = await fetch_all(
            self._conn,
            "INSERT INTO ledger(member_id, delta, earned_delta, reason, note, ref, idem_key, created_at)"
            " SELECT CAST(j.value AS BIGINT), ?, ?, ?, ?, ?, ? || CAST(j.value AS TEXT) || ?, ?"
            " FROM json_each(?) j WHERE true ORDER BY j.key"
            " ON CONFLICT(idem_key) DO NOTHING RETURNING member_id",
            (delta, delta, reason, note, ref, *idem_key, now, json.dumps([int(m) for m in member_ids])),
            bulk=True,
        )
        return {int(r["member_id"]) for r in rows}

    async def recent(self, member_id: int, limit: int = 5) -> list[LedgerEntry]:
        return await fetch_all_as(
            self._conn,
            LedgerEntry,
            "SELECT id, member_id, delta, reason, note, created_at FROM ledger"
            " WHERE member_id = ? ORDER BY id DESC LIMIT ?",
            (member_id, limit),
        )

    async def sum_for(self, member_id: int) -> int:
        row = await fetch_one(
            self._conn, "SELECT COALESCE(SUM(delta), 0) FROM ledger WHERE member_id = ?", (member_id,)
        )
        return int(row[0]) if row else 0

    async def mismatched_balances(self) -> list[int]:
        """Members whose cached balance differs from their ledger sum (should always be empty)."""
        rows = await fetch_all(
            self._conn,
            "SELECT m.id FROM members m LEFT JOIN (SELECT member_id, SUM(delta) AS s FROM ledger"
            " GROUP BY member_id) l ON l.member_id = m.id WHERE m.balance <> COALESCE(l.s, 0)",
        )
        return [r[0] for r in rows]
