"""Customer profiles: imported customers (phone, note, contact hints) and the bulk statements of an import;
import files waiting for a staff member's confirmation, and the codes that let a customer claim their record.

An import writes a chunk of rows (`handlers.customers.importing.CHUNK_ROWS`) per short transaction, a handful of
statements each: the rows travel as one JSON array per statement and are unpacked by SQLite (`json_each`), so
members, profiles, ledger entries and WeChat identities are each written by one INSERT … SELECT. Every statement
here grows with the shop or the file and is marked bulk: it runs on the database thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from storage.db.sql import Statements, fetch_all, fetch_one
from storage.members import TIER_DISCOUNT, tier_points_sql


@dataclass(frozen=True, slots=True)
class KnownCustomer:
    """A profile as an import compares it: what the last file said, and the member's balance now."""

    member_id: int
    phone: str
    name: str
    birthday: str | None
    note: str
    telegram_username: str | None
    wechat_openid: str | None
    imported_balance: int
    imported_earned: int
    revision: int
    balance: int


@dataclass(frozen=True, slots=True)
class ImportPayload:
    """The rows one confirmed import writes, as the JSON arrays `CustomerRepo.apply` reads (`encode_import`
    makes them, off the event loop and before the write transaction begins). A member id below zero is a new
    member's: -1 takes the id after `base`, -2 the one after that, and so on, so the payload can be encoded
    before the transaction that learns the highest member id."""

    members: str | None
    """(member id, display name, birthday) of every new or updated member."""
    profiles: str | None
    """(member id, phone, note, telegram, openid, imported balance, imported earned) of the same members."""
    ledger: str | None
    """(member id, delta, earned delta, ref, idem key), positive deltas first."""
    identities: str | None
    """(WeChat OpenID, member id, display name) to become identities."""
    base: int = 0
    """The highest member id before this chunk (set inside the write transaction)."""


def encode_import(
    members: list[tuple[int, str, str | None]],
    profiles: list[tuple[Any, ...]],
    ledger: list[tuple[int, int, int, str, str]],
    identities: list[tuple[str, int, str]],
) -> ImportPayload:
    """The payload of these rows (see `ImportPayload` for the columns): plain Python, call it off the loop."""
    return ImportPayload(*(_json(rows) if rows else None for rows in (members, profiles, ledger, identities)))


@dataclass(frozen=True, slots=True)
class ExportRow:
    member_id: int
    name: str
    phone: str | None
    earned: int
    balance: int
    birthday: str | None
    joined_at: int
    note: str
    discount: int = 0
    """Lifetime points the tier review set aside (see `storage.members.TIER_DISCOUNT`)."""


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """An import file a staff member sent, waiting for their confirmation."""

    id: int
    file_name: str
    content: bytes
    expires_at: int


@dataclass(frozen=True, slots=True)
class Profile:
    """An imported customer's record as a claim sees it."""

    member_id: int
    phone: str
    name: str
    merged_into: int | None


JSON_CHUNK = 2000
"""Rows serialised per call: `json.dumps` holds the interpreter's lock throughout, so a single call over
100,000 rows would stall the event loop (even from another thread) for a good part of a second."""


KNOWN_SQL = (
    "SELECT p.member_id, p.phone, m.display_name, m.birthday, p.note, p.telegram_username, p.wechat_openid,"
    " p.imported_balance, p.imported_earned, p.revision, m.balance"
    " FROM customer_profiles p JOIN members m ON m.id = p.member_id"
)
"""A profile as `KnownCustomer` reads it."""


_ID = (
    "CASE WHEN CAST(value->>{0} AS BIGINT) < 0 THEN CAST(:base AS BIGINT) - CAST(value->>{0} AS BIGINT)"
    " ELSE CAST(value->>{0} AS BIGINT) END"
)
"""A payload's member id in column {0}: a new member's (below zero) counts on from the chunk's `:base`. (`->>`
gives SQLite a JSON number as an INTEGER, PostgreSQL text: the CASTs are for PostgreSQL, free on SQLite.)"""

_INT = "CAST(value->>{0} AS BIGINT)"
"""A payload's integer in column {0} (see `_ID`)."""


def _json(rows: list[Any]) -> str:
    """`rows` as one JSON array, written a few thousand rows at a time."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    parts = [dumps(rows[at : at + JSON_CHUNK])[1:-1] for at in range(0, len(rows), JSON_CHUNK)]
    return "[" + ",".join(part for part in parts if part) + "]"


def _json_column(values: list[Any]) -> str:
    """`values` as a JSON array of one-element arrays, read back with `value ->> 0`: the same (text) on both
    engines, where a bare `value` of `json_each` would be `jsonb` on PostgreSQL."""
    return _json([[value] for value in values])


def _by_phone(rows: list[sqlite3.Row]) -> dict[str, KnownCustomer]:
    found = {r[1]: KnownCustomer(*r) for r in rows}
    _drain(rows)
    return found


def _export_rows(rows: list[sqlite3.Row]) -> list[ExportRow]:
    found = [ExportRow(*r) for r in rows]
    _drain(rows)
    return found


def _drain(rows: list[Any]) -> None:
    """Free the rows a slice at a time (on a worker thread): 100,000 of them at once hold the interpreter's lock
    for tens of milliseconds."""
    while rows:
        del rows[-2000:]


class CustomerRepo:
    def __init__(self, conn: Statements) -> None:
        self._conn = conn

    async def known(self) -> dict[str, KnownCustomer]:
        """Every profile by phone, with its member's name, birthday and balance (one bulk read)."""
        rows = await fetch_all(self._conn, KNOWN_SQL, bulk=True)
        return await asyncio.to_thread(_by_phone, rows)  # 100,000 objects: not on the loop

    async def known_of(self, phones: list[str]) -> dict[str, KnownCustomer]:
        """`known` for these phones only (one chunk of an import, re-checked inside its transaction)."""
        if not phones:
            return {}
        rows = await fetch_all(
            self._conn,
            f"{KNOWN_SQL} WHERE p.phone IN (SELECT value ->> 0 FROM json_each(?))",
            (await asyncio.to_thread(_json_column, phones),),
            bulk=True,
        )
        return _by_phone(rows)  # a chunk's worth: a millisecond

    async def wechat_owners(self, openids: list[str]) -> dict[str, int]:
        """The members that these WeChat OpenIDs already belong to (as identities)."""
        if not openids:
            return {}
        rows = await fetch_all(
            self._conn,
            "SELECT external_id, member_id FROM identities"
            " WHERE channel = 'wechat' AND external_id IN (SELECT value ->> 0 FROM json_each(?))",
            (await asyncio.to_thread(_json_column, openids),),
            bulk=True,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def last_member_id(self) -> int:
        """The highest member id so far: inside the write transaction, new members take the ids after it."""
        row = await fetch_one(self._conn, "SELECT COALESCE(MAX(id), 0) FROM members")
        return int(row[0]) if row else 0

    async def apply(self, payload: ImportPayload, now: int) -> None:
        """Write one chunk of an import: members (new ones with the ids after `payload.base`, updated ones
        renamed), their profiles (a changed one moves to its next revision), the ledger entries (the trigger moves
        balances and lifetime points) and the WeChat identities. Call inside a write transaction; bulk statements
        only, over JSON already encoded (nothing slow runs here while the write lock is held)."""
        await self._write(
            "INSERT INTO members(id, display_name, joined_at, last_seen_at, birthday)"
            f" SELECT {_ID.format(0)}, value->>1, :now, :now, value->>2 FROM json_each(:rows) WHERE true"
            " ON CONFLICT(id) DO UPDATE SET display_name = excluded.display_name, birthday = excluded.birthday,"
            " birthday_set_at = CASE WHEN members.birthday IS excluded.birthday THEN members.birthday_set_at"
            " ELSE NULL END",
            payload.members,
            payload.base,
            now,
        )
        await self._write(
            "INSERT INTO customer_profiles(member_id, phone, note, telegram_username, wechat_openid,"
            " imported_balance, imported_earned, revision, imported_at, updated_at)"
            f" SELECT {_ID.format(0)}, value->>1, value->>2, value->>3, value->>4, {_INT.format(5)},"
            f" {_INT.format(6)}, 1, :now, :now FROM json_each(:rows) WHERE true"
            " ON CONFLICT(member_id) DO UPDATE SET note = excluded.note,"
            " telegram_username = excluded.telegram_username, wechat_openid = excluded.wechat_openid,"
            " imported_balance = excluded.imported_balance, imported_earned = excluded.imported_earned,"
            " revision = customer_profiles.revision + 1, updated_at = excluded.updated_at,"
            " imported_at = COALESCE(customer_profiles.imported_at, excluded.imported_at)",
            payload.profiles,
            payload.base,
            now,
        )
        await self._write(
            "INSERT INTO ledger(member_id, delta, earned_delta, reason, ref, idem_key, created_at)"
            f" SELECT {_ID.format(0)}, {_INT.format(1)}, {_INT.format(2)}, 'import', value->>3, value->>4, :now"
            " FROM json_each(:rows) WHERE true ORDER BY key ON CONFLICT(idem_key) DO NOTHING",
            payload.ledger,
            payload.base,
            now,
        )
        await self._write(
            "INSERT INTO identities(channel, external_id, member_id, display_name, created_at)"
            f" SELECT 'wechat', value->>0, {_ID.format(1)}, value->>2, :now FROM json_each(:rows) WHERE true"
            " ON CONFLICT(channel, external_id) DO NOTHING",
            payload.identities,
            payload.base,
            now,
        )

    async def _write(self, sql: str, rows: str | None, base: int, now: int) -> None:
        """One INSERT … SELECT over the JSON array `rows`, on the database thread."""
        if rows is not None:
            await self._conn.execute(sql, {"rows": rows, "base": base, "now": now}, bulk=True)

    async def export_rows(
        self,
        *,
        earned_from: int = 0,
        earned_below: int | None = None,
        only: tuple[str, dict[str, Any]] | None = None,
        reviewed: bool = False,
    ) -> list[ExportRow]:
        """Members (not merged into another) with their profile, in member-number order: those whose tier
        points (lifetime points, less what the tier review set aside when `reviewed`) lie in [earned_from,
        earned_below), and with `only` = (a SELECT of `member_id`, its parameters) only those it selects."""
        params: dict[str, Any] = {"low": earned_from, "high": earned_below}
        points = tier_points_sql(reviewed)
        where = f"m.merged_into IS NULL AND {points} >= :low AND (CAST(:high AS BIGINT) IS NULL OR {points} < :high)"
        if only is not None:
            select, extra = only
            where += f" AND m.id IN (SELECT member_id FROM ({select}))"
            params.update(extra)
        rows = await fetch_all(
            self._conn,
            "SELECT m.id, m.display_name, p.phone, m.earned, m.balance, m.birthday, m.joined_at, COALESCE(p.note, ''),"
            f" {TIER_DISCOUNT}"
            f" FROM members m LEFT JOIN customer_profiles p ON p.member_id = m.id WHERE {where} ORDER BY m.id",
            params,
            bulk=True,
        )
        return await asyncio.to_thread(_export_rows, rows)

    # --- import files waiting for confirmation ----------------------------------------------------------
    async def save_upload(self, channel: str, external_id: str, file_name: str, content: bytes, now: int,
                          expires_at: int) -> int:  # fmt: skip
        """Keep this staff member's file (replacing the one before, and any expired file of anyone); its id."""
        await self._conn.execute(
            "DELETE FROM customer_uploads WHERE expires_at <= ? OR (channel = ? AND external_id = ?)",
            (now, channel, external_id),
        )
        row = await fetch_one(
            self._conn,
            "INSERT INTO customer_uploads(channel, external_id, file_name, content, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
            (channel, external_id, file_name, content, now, expires_at),
        )
        assert row is not None
        return int(row[0])

    async def pending_upload(self, channel: str, external_id: str, now: int) -> PendingUpload | None:
        row = await fetch_one(
            self._conn,
            "SELECT id, file_name, content, expires_at FROM customer_uploads"
            " WHERE channel = ? AND external_id = ? AND expires_at > ?",
            (channel, external_id, now),
        )
        return PendingUpload(int(row[0]), str(row[1]), bytes(row[2]), int(row[3])) if row else None

    async def take_upload(self, upload_id: int, channel: str, external_id: str, now: int) -> bool:
        """Remove this staff member's live file `upload_id`: True once, for the one confirmation that imports it."""
        cur = await self._conn.execute(
            "DELETE FROM customer_uploads WHERE id = ? AND channel = ? AND external_id = ? AND expires_at > ?",
            (upload_id, channel, external_id, now),
        )
        return cur.rowcount == 1

    # --- claiming an imported record --------------------------------------------------------------------
    async def by_phone(self, phone: str) -> Profile | None:
        row = await fetch_one(
            self._conn,
            "SELECT p.member_id, p.phone, m.display_name, m.merged_into FROM customer_profiles p"
            " JOIN members m ON m.id = p.member_id WHERE p.phone = ?",
            (phone,),
        )
        return Profile(int(row[0]), str(row[1]), str(row[2]), row[3]) if row else None

    async def has_profile(self, member_id: int) -> bool:
        row = await fetch_one(self._conn, "SELECT 1 FROM customer_profiles WHERE member_id = ?", (member_id,))
        return row is not None

    async def code_in_use(self, code: str) -> bool:
        row = await fetch_one(self._conn, "SELECT 1 FROM claim_codes WHERE code = ?", (code,))
        return row is not None

    async def set_claim_code(self, phone: str, code: str, now: int, expires_at: int) -> None:
        """The phone's one live claim code (replacing an earlier one)."""
        await self._conn.execute(
            "INSERT INTO claim_codes(phone, code, created_at, expires_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(phone) DO UPDATE SET code = excluded.code, created_at = excluded.created_at,"
            " expires_at = excluded.expires_at",
            (phone, code, now, expires_at),
        )

    async def use_claim_code(self, phone: str, code: str, now: int) -> bool:
        """True once when `code` is the live code of `phone` (it is used up)."""
        cur = await self._conn.execute(
            "DELETE FROM claim_codes WHERE phone = ? AND code = ? AND expires_at > ?", (phone, code, now)
        )
        return cur.rowcount == 1

    async def rename(self, member_id: int, name: str) -> None:
        await self._conn.execute("UPDATE members SET display_name = ? WHERE id = ?", (name, member_id))
