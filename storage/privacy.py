"""A member's request to erase their personal data (/forget) and the erasure itself.

The request is a row: asked by the member, withdrawn by them or confirmed by staff, once (a trigger keeps a
settled request settled). Erasing keeps the member's row and everything the books need (ledger, purchases,
check-ins, answers, under the member number) and removes what names the person: display names, usernames,
the phone and note of the imported profile, the birthday, the channel identities (so the person is a stranger
again), the referral code, binding codes, pending replies and deliveries to them, and in the audit log the
argument text of rows by or about them and their channel id where they were the actor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from storage.db.sql import Repo, changed_one, fetch_all, fetch_all_as, has_row


@dataclass(frozen=True, slots=True)
class ErasureRequest:
    member_id: int
    display_name: str
    asked_at: int


_IDS = "SELECT CAST(value AS INTEGER) FROM json_each(:ids)"
"""The member ids being erased, passed as a JSON list."""
_EXTERNALS = f"SELECT channel, external_id FROM identities WHERE member_id IN ({_IDS})"


class PrivacyRepo(Repo):
    async def ask(self, member_id: int, now: int) -> bool:
        """Record the member's confirmed request; False when one is already open (or the member is erased)."""
        return await has_row(
            self._conn,
            "INSERT INTO erasure_requests(member_id, asked_at) SELECT :id, :now"
            " WHERE NOT EXISTS (SELECT 1 FROM erasure_requests WHERE member_id = :id AND state = 'pending')"
            " AND EXISTS (SELECT 1 FROM members WHERE id = :id AND erased_at IS NULL) RETURNING id",
            {"id": member_id, "now": now},
        )

    async def withdraw(self, member_id: int, now: int) -> bool:
        """The member takes their open request back; False when there is none."""
        return await changed_one(
            self._conn,
            "UPDATE erasure_requests SET state = 'withdrawn', settled_at = ? WHERE member_id = ? AND state = 'pending'",
            (now, member_id),
        )

    async def is_pending(self, member_id: int) -> bool:
        return await has_row(
            self._conn, "SELECT 1 FROM erasure_requests WHERE member_id = ? AND state = 'pending'", (member_id,)
        )

    async def pending(self, limit: int = 20) -> list[ErasureRequest]:
        """Open requests, oldest first."""
        return await fetch_all_as(
            self._conn,
            ErasureRequest,
            "SELECT r.member_id, m.display_name, r.asked_at FROM erasure_requests r"
            " JOIN members m ON m.id = r.member_id WHERE r.state = 'pending' ORDER BY r.asked_at, r.id LIMIT ?",
            (limit,),
        )

    async def settle(self, member_id: int, staff_id: int, now: int) -> bool:
        """Staff confirm the member's open request (the erasure follows in the same transaction); False when
        the member has not asked (or withdrew)."""
        return await changed_one(
            self._conn,
            "UPDATE erasure_requests SET state = 'erased', settled_at = ?, settled_by = ?"
            " WHERE member_id = ? AND state = 'pending'",
            (now, staff_id, member_id),
        )

    async def linked_into(self, member_id: int) -> list[int]:
        """Members that were linked into this one (the same person's earlier accounts)."""
        rows = await fetch_all(self._conn, "SELECT id FROM members WHERE merged_into = ? ORDER BY id", (member_id,))
        return [int(row[0]) for row in rows]

    async def erase(self, placeholders: Mapping[int, str], now: int) -> None:
        """Erase the personal data of the members in `placeholders` (member id -> the name their row keeps,
        such as '已删除会员 #12'). Ledger, purchases and statistics stay, under the member number."""
        ids = {"ids": "[" + ",".join(str(int(i)) for i in placeholders) + "]"}
        run = self._conn.execute
        # What was queued for them: replies waiting in the outbound queue, numbered choices, deliveries.
        await run(f"DELETE FROM outbound WHERE (channel, chat_id) IN ({_EXTERNALS})", ids, bulk=True)
        await run(f"DELETE FROM pending_choices WHERE (channel, external_id) IN ({_EXTERNALS})", ids)
        mine = f"(member_id IN ({_IDS}) OR (target_kind = 'user' AND (channel, target) IN ({_EXTERNALS})))"
        await run(f"DELETE FROM deliveries WHERE state = 'pending' AND {mine}", ids, bulk=True)
        # Deliveries already made stay counted, but no longer name the recipient.
        await run(f"UPDATE deliveries SET target = 'erased:' || id, body = NULL WHERE {mine}", ids, bulk=True)
        # A phone claim waiting for the profile's phone.
        await run(f"DELETE FROM claim_codes WHERE phone IN (SELECT phone FROM customer_profiles"
                  f" WHERE member_id IN ({_IDS}))", ids)  # fmt: skip
        # What was typed by or about them (the rows themselves stay).
        await run(f"UPDATE audit_log SET args = '' WHERE target_member_id IN ({_IDS})", ids, bulk=True)
        await run(f"UPDATE audit_log SET args = '', actor_external_id = '' WHERE actor_member_id IN ({_IDS})",
                  ids, bulk=True)  # fmt: skip
        for table in ("identities", "customer_profiles", "referral_codes", "bind_codes"):
            await run(f"DELETE FROM {table} WHERE member_id IN ({_IDS})", ids)
        for member_id, placeholder in placeholders.items():
            await run(
                "UPDATE members SET display_name = ?, birthday = NULL, birthday_set_at = NULL, notify = 0,"
                " erased_at = ? WHERE id = ?",
                (placeholder, now, member_id),
            )
