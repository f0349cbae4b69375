"""Per-identity channel state: WeChat's customer-service window, numbered choices, binding codes, merges."""

from __future__ import annotations

import json
from dataclasses import dataclass

from storage.db.sql import Repo, fetch_one, fetch_one_as, has_row

MOVED_WITH_MEMBER: dict[str, str] = {
    "identities": "",
    "checkins": "o.day = checkins.day",
    "purchases": "",
    "event_signups": "o.event_id = event_signups.event_id",
    "deliveries": "",
    "sale_claims": "o.sale_id = sale_claims.sale_id AND o.unit = sale_claims.unit"
                   " AND o.state <> 'released' AND sale_claims.state <> 'released'",
    "group_buy_members": "o.group_buy_id = group_buy_members.group_buy_id",
    "redemptions": "",
    "poll_answers": "o.poll_id = poll_answers.poll_id",
    "tickets": "",
    "birthday_greetings": "o.day = birthday_greetings.day",
    "member_segments": "true",
    "referral_codes": "true",
    "bind_codes": "true",
    "customer_profiles": "true",
    "erasure_requests": "o.state = 'pending' AND erasure_requests.state = 'pending'",
    "points_expiry_reminders": "o.expires_on = points_expiry_reminders.expires_on",
    "tier_standing": "true",
    "tier_reviews": "o.year = tier_reviews.year",
}  # fmt: skip
"""The tables whose `member_id` rows move to the member a merge keeps, in the order of the schema, each with
when the kept member's row `o` already holds the place (a UNIQUE or PRIMARY KEY with member_id; "" when none
does): the kept member's row stays and the merged one's is dropped. The ledger is append-only and gets transfer
entries instead; tests/test_member_merge_tables.py checks this list against the schema's foreign keys."""

KEPT_REFERENCES: frozenset[tuple[str, str]] = frozenset({
    ("members", "merged_into"), ("members", "split_from"), ("ledger", "member_id"), ("ledger", "actor_id"),
    ("announcements", "member_id"),  # generated from subject_id
    ("referrals", "referrer_id"), ("referrals", "referred_id"),  # ReferralRepo re-points them with its rules
    ("purchases", "recorded_by"), ("purchases", "voided_by"), ("events", "created_by"), ("sales", "created_by"),
    ("group_buys", "created_by"), ("redemptions", "handed_by"), ("polls", "created_by"), ("tickets", "closed_by"),
    ("ticket_messages", "author_id"), ("greeting_silenced", "silenced_by"), ("announcements", "created_by"),
    ("erasure_requests", "settled_by"),
})  # fmt: skip
"""References to members a merge leaves as they are: who did something (staff, authors), the merge's own links,
the append-only ledger, and the referrals (re-pointed by ReferralRepo)."""


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
            " failures = CASE WHEN window_start <= :ended THEN 1 ELSE failures + 1 END,"
            " window_start = CASE WHEN window_start <= :ended THEN :now ELSE window_start END"
            " WHERE scope = :scope AND (window_start <= :ended OR failures < :limit) RETURNING failures",
            {"now": now, "ended": now - window, "scope": scope, "limit": limit},
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
        moved: dict[str, int] = {}
        for table, taken in MOVED_WITH_MEMBER.items():
            free = f" AND NOT EXISTS (SELECT 1 FROM {table} o WHERE o.member_id = :t AND {taken})" if taken else ""
            cur = await self._conn.execute(
                f"UPDATE {table} SET member_id = :t WHERE member_id = :s{free}", {"s": source, "t": target}
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
