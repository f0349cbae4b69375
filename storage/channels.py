"""Per-identity channel state: WeChat's customer-service window, numbered choices, binding codes, merges."""

from __future__ import annotations

import json
from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all, fetch_one, fetch_one_as, has_row

# Tables whose rows move with a merged member; the ledger is append-only and gets transfer entries instead.
_NOT_MOVED = {"ledger", "members"}


@dataclass(frozen=True, slots=True)
class BindCode:
    """A live binding code: the member who asked for it, from which identity, and until when."""

    member_id: int
    channel: str
    external_id: str
    expires_at: int


class ChannelStateRepo(Repo):
    # --- the customer-service window ---------------------------------------------------------------
    async def take_window_slot(self, channel: str, external_id: str, opened_after: int, cap: int) -> bool:
        """Count one push against the open window; False when it is closed or used up."""
        return await has_row(
            self._conn,
            "UPDATE identities SET window_sent = window_sent + 1 WHERE channel = ? AND external_id = ?"
            " AND last_inbound_at >= ? AND window_sent < ? AND unsubscribed_at IS NULL RETURNING window_sent",
            (channel, external_id, opened_after, cap),
        )

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
    async def create_bind_code(
        self, code: str, member_id: int, channel: str, external_id: str, now: int, expires_at: int
    ) -> bool:
        """The member's one live code, asked for by the identity (`channel`, `external_id`); an earlier code
        of theirs is replaced. False when `code` is taken (draw another)."""
        await self._conn.execute("DELETE FROM bind_codes WHERE expires_at <= ? OR member_id = ?", (now, member_id))
        return await has_row(
            self._conn,
            "INSERT INTO bind_codes(code, member_id, channel, external_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING code",
            (code, member_id, channel, external_id, now, expires_at),
        )

    async def use_bind_code(self, code: str, channel: str, now: int) -> BindCode | None:
        """A live code used from another channel than the one it was asked on; it is used up (once)."""
        return await fetch_one_as(
            self._conn,
            BindCode,
            "DELETE FROM bind_codes WHERE code = ? AND expires_at > ? AND channel <> ?"
            " RETURNING member_id, channel, external_id, expires_at",
            (code, now, channel),
        )

    async def live_bind_code(self, code: str, now: int) -> BindCode | None:
        return await fetch_one_as(
            self._conn,
            BindCode,
            "SELECT member_id, channel, external_id, expires_at FROM bind_codes WHERE code = ? AND expires_at > ?",
            (code, now),
        )

    async def drop_bind_code(self, code: str) -> None:
        await self._conn.execute("DELETE FROM bind_codes WHERE code = ?", (code,))

    async def drop_bind_codes_of(self, *member_ids: int) -> None:
        await self._conn.execute(
            f"DELETE FROM bind_codes WHERE member_id IN ({','.join('?' * len(member_ids))})", member_ids
        )

    async def take_bind_try(self, scope: str, limit: int, now: int, window: int) -> bool:
        """Count one try against `scope`'s wrong codes in the current window (a window `window` seconds long
        starts with the first try after the last one ended); False, and nothing counted, at the limit."""
        await self._conn.execute(
            "INSERT INTO bind_failures(scope, window_start, failures) VALUES (?, ?, 0) ON CONFLICT(scope) DO NOTHING",
            (scope, now),
        )
        return await has_row(
            self._conn,
            "UPDATE bind_failures SET"
            " failures = CASE WHEN window_start <= :now - :window THEN 1 ELSE failures + 1 END,"
            " window_start = CASE WHEN window_start <= :now - :window THEN :now ELSE window_start END"
            " WHERE scope = :scope AND (window_start <= :now - :window OR failures < :limit) RETURNING failures",
            {"now": now, "window": window, "scope": scope, "limit": limit},
        )

    async def give_back_bind_try(self, scope: str) -> None:
        """A try that turned out right is no wrong code."""
        await self._conn.execute(
            "UPDATE bind_failures SET failures = failures - 1 WHERE scope = ? AND failures > 0", (scope,)
        )

    async def bind_tries_reopen_at(self, scope: str, window: int) -> int | None:
        """When `scope`'s current window ends (unix seconds), if it has one."""
        row = await fetch_one(self._conn, "SELECT window_start FROM bind_failures WHERE scope = ?", (scope,))
        return int(row[0]) + window if row else None

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

    async def detach_identity(self, channel: str, external_id: str, member_id: int, new_member_id: int) -> bool:
        """Give one identity of `member_id` to `new_member_id`, only while the member keeps another identity
        (its points, purchases and birthday must stay reachable); False when nothing moved."""
        cur = await self._conn.execute(
            "UPDATE identities SET member_id = :new WHERE channel = :channel AND external_id = :ext"
            " AND member_id = :member AND EXISTS (SELECT 1 FROM identities other WHERE other.member_id = :member"
            " AND NOT (other.channel = :channel AND other.external_id = :ext))",
            {"new": new_member_id, "channel": channel, "ext": external_id, "member": member_id},
        )
        return cur.rowcount > 0
