"""Per-identity channel state: WeChat's customer-service window, numbered choices, binding codes, merges."""

from __future__ import annotations

import json

from storage.sql import Statements, fetch_all, fetch_one

# Tables whose rows move with a merged member; the ledger is append-only and gets transfer entries instead.
_NOT_MOVED = {"ledger", "members"}


class ChannelStateRepo:
    def __init__(self, conn: Statements) -> None:
        self._conn = conn

    # --- the customer-service window ---------------------------------------------------------------
    async def take_window_slot(self, channel: str, external_id: str, opened_after: int, cap: int) -> bool:
        """Count one push against the open window; False when it is closed or used up."""
        row = await fetch_one(
            self._conn,
            "UPDATE identities SET window_sent = window_sent + 1 WHERE channel = ? AND external_id = ?"
            " AND last_inbound_at >= ? AND window_sent < ? AND unsubscribed_at IS NULL RETURNING window_sent",
            (channel, external_id, opened_after, cap),
        )
        return row is not None

    async def unsubscribed(self, channel: str, external_id: str, now: int) -> None:
        """Mark an identity gone (no pushes any more); nothing is deleted."""
        await self._conn.execute(
            "UPDATE identities SET unsubscribed_at = ?, can_message = 0 WHERE channel = ? AND external_id = ?",
            (now, channel, external_id),
        )

    # --- numbered choices --------------------------------------------------------------------------
    async def set_choices(self, channel: str, external_id: str, buttons: list[tuple[str, str]], now: int) -> None:
        await self._conn.execute(
            "INSERT INTO pending_choices(channel, external_id, buttons, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(channel, external_id)"
            " DO UPDATE SET buttons = excluded.buttons, created_at = excluded.created_at",
            (channel, external_id, json.dumps(buttons, ensure_ascii=False), now),
        )

    async def choice(self, channel: str, external_id: str, number: int, newer_than: int) -> str | None:
        """The button data behind choice `number` (1-based) of the member's latest numbered choices."""
        row = await fetch_one(
            self._conn,
            "SELECT buttons FROM pending_choices WHERE channel = ? AND external_id = ? AND created_at >= ?",
            (channel, external_id, newer_than),
        )
        if row is None:
            return None
        buttons = json.loads(row[0])
        return buttons[number - 1][1] if 1 <= number <= len(buttons) else None

    # --- binding two identities to one member ------------------------------------------------------
    async def create_bind_code(self, code: str, member_id: int, expires_at: int) -> None:
        await self._conn.execute("DELETE FROM bind_codes WHERE member_id = ?", (member_id,))
        await self._conn.execute(
            "INSERT INTO bind_codes(code, member_id, expires_at) VALUES (?, ?, ?)", (code, member_id, expires_at)
        )

    async def use_bind_code(self, code: str, now: int) -> int | None:
        """The member who issued a valid code; the code is used up."""
        row = await fetch_one(
            self._conn, "DELETE FROM bind_codes WHERE code = ? AND expires_at > ? RETURNING member_id", (code, now)
        )
        return int(row[0]) if row else None

    async def move_member_rows(self, source: int, target: int) -> dict[str, int]:
        """Re-point every row of `source` in tables with a member_id column to `target`.

        Where `target` already has the row (same day's check-in, same poll's answer…), `target`'s is kept
        and `source`'s dropped. Returns rows moved per table."""
        tables = await fetch_all(
            self._conn, "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
        moved: dict[str, int] = {}
        for (table,) in tables:
            if table in _NOT_MOVED:
                continue
            columns = await fetch_all(self._conn, f"PRAGMA table_info({table})")
            if not any(c[1] == "member_id" for c in columns):
                continue
            cur = await self._conn.execute(
                f"UPDATE OR IGNORE {table} SET member_id = ? WHERE member_id = ?", (target, source)
            )
            moved[table] = cur.rowcount
            await self._conn.execute(f"DELETE FROM {table} WHERE member_id = ?", (source,))
        return moved

    async def move_earned(self, source: int, target: int) -> None:
        """Lifetime points of a member with nothing left to spend (no ledger entry can carry a zero delta)."""
        await self._conn.execute(
            "UPDATE members SET earned = earned + (SELECT earned FROM members WHERE id = :s) WHERE id = :t",
            {"s": source, "t": target},
        )
        await self._conn.execute("UPDATE members SET earned = 0 WHERE id = ?", (source,))

    async def mark_merged(self, source: int, target: int) -> None:
        await self._conn.execute(
            "UPDATE members SET birthday = COALESCE((SELECT birthday FROM members WHERE id = :t),"
            " (SELECT birthday FROM members WHERE id = :s)) WHERE id = :t",
            {"s": source, "t": target},
        )
        await self._conn.execute("UPDATE members SET merged_into = ? WHERE id = ?", (target, source))

    async def detach_identity(self, channel: str, member_id: int, new_member_id: int) -> bool:
        cur = await self._conn.execute(
            "UPDATE identities SET member_id = ? WHERE channel = ? AND member_id = ?",
            (new_member_id, channel, member_id),
        )
        return cur.rowcount > 0
