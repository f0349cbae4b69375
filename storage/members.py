"""Members and their channel identities: `(channel, external_id) -> member`; finding a member at the till
(`/member`: by phone, name, number or @username) and what the bot keeps about one (`/me`)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all_as, fetch_one, fetch_one_as, inserted_id


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    display_name: str
    joined_at: int
    birthday: str | None
    balance: int
    earned: int
    discount: int = 0
    """Lifetime points the yearly tier review set aside (`tier_standing`; they count towards the tier only
    while the review is off): see `handlers.shared.tiers.tier_points_of`."""


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    channel: str
    external_id: str
    username: str | None
    display_name: str
    can_message: bool


@dataclass(frozen=True, slots=True)
class MemberMatch:
    """A member a lookup found, with what tells one namesake from another."""

    id: int
    display_name: str
    earned: int
    phone: str | None
    discount: int = 0


@dataclass(frozen=True, slots=True)
class RecentPurchase:
    id: int
    amount_fen: int
    note: str
    created_at: int


@dataclass(frozen=True, slots=True)
class OpenCode:
    """A code the member has not used yet: a held flash-sale claim ('sale'), a reward waiting to be handed
    over ('redemption') or the code of a group buy that succeeded ('group_buy')."""

    kind: str
    code: str
    label: str


@dataclass(frozen=True, slots=True)
class Activity:
    """How much the member did: counts of what the bot keeps about them."""

    checkins: int
    purchases: int
    answers: int


LOOKUP_LIMIT = 10
"""At most this many namesakes are listed; a longer list asks for a closer name."""

TIER_DISCOUNT = "COALESCE((SELECT s.discount FROM tier_standing s WHERE s.member_id = m.id), 0)"
"""SQL: the lifetime points of member `m` that the yearly tier review set aside (0 before any review)."""


def tier_points_sql(reviewed: bool) -> str:
    """SQL: the points that decide the tier of member `m`: lifetime points, less what the tier review set aside
    while the review is on (`reviewed`)."""
    return f"MAX(0, m.earned - {TIER_DISCOUNT})" if reviewed else "m.earned"


_MATCH = (
    f"SELECT m.id, m.display_name, m.earned, p.phone, {TIER_DISCOUNT} AS discount"
    " FROM members m LEFT JOIN customer_profiles p ON p.member_id = m.id"
)
_FINDABLE = "m.erased_at IS NULL AND m.merged_into IS NULL"
"""A lookup finds neither an erased member nor one linked into another (their points moved there)."""

_MEMBER_COLUMNS = f"m.id, m.display_name, m.joined_at, m.birthday, m.balance, m.earned, {TIER_DISCOUNT} AS discount"

NO_ACTIVITY = (
    "NOT EXISTS (SELECT 1 FROM ledger WHERE member_id = :member)"
    " AND NOT EXISTS (SELECT 1 FROM purchases WHERE member_id = :member)"
    " AND NOT EXISTS (SELECT 1 FROM checkins WHERE member_id = :member)"
    " AND NOT EXISTS (SELECT 1 FROM members merged WHERE merged.merged_into = :member)"
    " AND EXISTS (SELECT 1 FROM members fresh WHERE fresh.id = :member AND fresh.seen_in_group_at IS NULL"
    " AND fresh.split_from IS NULL AND fresh.merged_into IS NULL)"
)
"""SQL condition: member `:member` has done nothing yet, so an invite may still bring them in. Activity is any
points booked (of any kind), a purchase, a check-in, a message in a VIP group, or another account linked to
the member or split off from it (/unlink). Starting or following the bot is not activity."""


def _norm_username(username: str | None) -> str | None:
    if not username:
        return None
    return username.lstrip("@").lower() or None


class MemberRepo(Repo):
    async def touch(
        self,
        channel: str,
        external_id: str,
        display_name: str,
        username: str | None,
        now: int,
        private_chat: bool = False,
    ) -> tuple[int, bool] | None:
        """Refresh a known identity; returns (member id, created=False), or None if it is unknown."""
        # A private message also opens the member's push window (WeChat: 48 h, 5 messages) afresh.
        row = await fetch_one(
            self._conn,
            "UPDATE identities SET display_name = :name, username = :user, can_message = MAX(can_message, :private),"
            " last_inbound_at = CASE WHEN :private THEN :now ELSE last_inbound_at END,"
            " window_sent = CASE WHEN :private THEN 0 ELSE window_sent END,"
            " unsubscribed_at = CASE WHEN :private THEN NULL ELSE unsubscribed_at END"
            " WHERE channel = :channel AND external_id = :ext RETURNING member_id",
            {"name": display_name, "user": _norm_username(username), "private": int(private_chat), "now": now,
             "channel": channel, "ext": external_id},
        )  # fmt: skip
        if row is None:
            return None
        member_id = int(row[0])
        # A member linked across channels keeps one name; only a single-identity member follows renames.
        await self._conn.execute(
            "UPDATE members SET last_seen_at = :now, display_name = CASE WHEN"
            " (SELECT COUNT(*) FROM identities WHERE member_id = :id) = 1 THEN :name ELSE display_name END,"
            " seen_in_group_at = COALESCE(seen_in_group_at, CASE WHEN :private THEN NULL ELSE CAST(:now AS BIGINT) END)"
            " WHERE id = :id",
            {"now": now, "name": display_name, "id": member_id, "private": int(private_chat)},
        )
        return member_id, False

    async def register(
        self,
        channel: str,
        external_id: str,
        display_name: str,
        username: str | None,
        now: int,
        private_chat: bool = False,
    ) -> tuple[int, bool]:
        """Find or create the member behind an identity; returns (member id, created).

        The identity is claimed with `ON CONFLICT DO NOTHING`: when another connection registered the same
        identity meanwhile (first contact on two workers at once, PostgreSQL), the insert waits for it to commit
        and claims nothing; the member made here is dropped and the other's is touched (created False). On
        SQLite's single writer the identity cannot appear between the touch and the insert."""
        while True:
            found = await self.touch(channel, external_id, display_name, username, now, private_chat)
            if found is not None:
                return found
            row = await fetch_one(
                self._conn,
                "INSERT INTO members(display_name, joined_at, last_seen_at, seen_in_group_at) VALUES (?, ?, ?, ?)"
                " RETURNING id",
                (display_name, now, now, None if private_chat else now),
            )
            assert row is not None
            member_id = int(row[0])
            claimed = await fetch_one(
                self._conn,
                "INSERT INTO identities(channel, external_id, member_id, username, display_name, can_message,"
                " created_at, last_inbound_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(channel, external_id) DO NOTHING RETURNING member_id",
                (
                    channel,
                    external_id,
                    member_id,
                    _norm_username(username),
                    display_name,
                    int(private_chat),
                    now,
                    now if private_chat else None,
                ),
            )
            if claimed is not None:
                return member_id, True
            # Registered by another connection meanwhile: nothing refers to the member made here yet.
            await self._conn.execute("DELETE FROM members WHERE id = ?", (member_id,))

    async def get(self, member_id: int) -> Member | None:
        return await fetch_one_as(
            self._conn, Member, f"SELECT {_MEMBER_COLUMNS} FROM members m WHERE m.id = ?", (member_id,)
        )

    async def by_identity(self, channel: str, external_id: str) -> Member | None:
        return await fetch_one_as(
            self._conn,
            Member,
            f"SELECT {_MEMBER_COLUMNS} FROM members m JOIN identities i ON i.member_id = m.id"
            " WHERE i.channel = ? AND i.external_id = ?",
            (channel, external_id),
        )

    async def by_username(self, channel: str, username: str) -> Member | None:
        """The member who last used `username` on `channel` (usernames can move between users)."""
        return await fetch_one_as(
            self._conn,
            Member,
            f"SELECT {_MEMBER_COLUMNS} FROM members m JOIN identities i ON i.member_id = m.id"
            " WHERE i.channel = ? AND i.username = ? ORDER BY m.last_seen_at DESC LIMIT 1",
            (channel, _norm_username(username)),
        )

    async def identities(self, member_id: int) -> list[MemberIdentity]:
        return await fetch_all_as(
            self._conn,
            MemberIdentity,
            "SELECT channel, external_id, username, display_name, can_message FROM identities"
            " WHERE member_id = ? ORDER BY channel",
            (member_id,),
        )

    async def set_birthday(self, member_id: int, birthday: str, now: int) -> None:
        # Setting the same date again does not restart the 30-day no-gift rule.
        await self._conn.execute(
            "UPDATE members SET birthday = ?, birthday_set_at = ? WHERE id = ? AND birthday IS NOT ?",
            (birthday, now, member_id, birthday),
        )

    async def set_notify(self, member_id: int, on: bool) -> None:
        await self._conn.execute("UPDATE members SET notify = ? WHERE id = ?", (int(on), member_id))

    async def notify(self, member_id: int) -> bool:
        row = await fetch_one(self._conn, "SELECT notify FROM members WHERE id = ?", (member_id,))
        return bool(row and row[0])

    async def can_message_on(self, channel: str, external_id: str) -> bool:
        """Whether this identity has opened a private chat with the bot (so it may be messaged there)."""
        row = await fetch_one(
            self._conn, "SELECT can_message FROM identities WHERE channel = ? AND external_id = ?",
            (channel, external_id),
        )  # fmt: skip
        return bool(row and row[0])

    async def can_message(self, member_id: int) -> bool:
        row = await fetch_one(self._conn, "SELECT MAX(can_message) FROM identities WHERE member_id = ?", (member_id,))
        return bool(row and row[0])

    async def create_bare(self, display_name: str, now: int, split_from: int | None = None) -> int:
        """A new member with no identity yet (an identity is moved to it right after); `split_from` is the
        member /unlink took that identity from."""
        return await inserted_id(
            self._conn,
            "INSERT INTO members(display_name, joined_at, last_seen_at, split_from) VALUES (?, ?, ?, ?) RETURNING id",
            (display_name, now, now, split_from),
        )

    async def count(self) -> int:
        row = await fetch_one(self._conn, "SELECT COUNT(*) FROM members", bulk=True)
        return int(row[0]) if row else 0

    async def by_phone(self, phone: str) -> list[MemberMatch]:
        """The member whose profile has this mobile number (11 digits, as `parse_phone` gives it)."""
        return await fetch_all_as(self._conn, MemberMatch, f"{_MATCH} WHERE p.phone = ? AND {_FINDABLE}", (phone,))

    async def with_username(self, username: str) -> list[MemberMatch]:
        """Members who use `username` on any channel, or whose imported profile names it, latest seen first."""
        return await fetch_all_as(
            self._conn,
            MemberMatch,
            f"{_MATCH} WHERE {_FINDABLE} AND (m.id IN (SELECT member_id FROM identities WHERE username = :user)"
            " OR p.telegram_username = :user) ORDER BY m.last_seen_at DESC LIMIT :limit",
            {"user": _norm_username(username), "limit": LOOKUP_LIMIT + 1},
            bulk=True,  # usernames on every channel: the index is per channel
        )

    async def numbered(self, member_id: int) -> list[MemberMatch]:
        return await fetch_all_as(self._conn, MemberMatch, f"{_MATCH} WHERE m.id = ? AND {_FINDABLE}", (member_id,))

    async def named(self, name: str) -> list[MemberMatch]:
        """Members called `name` (any case) on any channel; when nobody is, those whose name contains it.
        At most LOOKUP_LIMIT + 1, so the caller knows there were more."""
        params = {"name": name, "part": f"%{_like_escape(name)}%", "limit": LOOKUP_LIMIT + 1}
        exact = await fetch_all_as(
            self._conn,
            MemberMatch,
            f"{_MATCH} WHERE {_FINDABLE} AND (m.display_name = :name COLLATE NOCASE OR m.id IN"
            " (SELECT member_id FROM identities WHERE display_name = :name COLLATE NOCASE))"
            " ORDER BY m.id LIMIT :limit",
            params,
            bulk=True,
        )
        if exact:
            return exact
        return await fetch_all_as(
            self._conn,
            MemberMatch,
            # LOWER on both sides: SQLite's LIKE ignores ASCII case, PostgreSQL's does not
            f"{_MATCH} WHERE {_FINDABLE} AND (LOWER(m.display_name) LIKE LOWER(:part) ESCAPE '\\' OR m.id IN"
            " (SELECT member_id FROM identities WHERE LOWER(display_name) LIKE LOWER(:part) ESCAPE '\\'))"
            " ORDER BY m.id LIMIT :limit",
            params,
            bulk=True,
        )

    async def phone_of(self, member_id: int) -> str | None:
        row = await fetch_one(self._conn, "SELECT phone FROM customer_profiles WHERE member_id = ?", (member_id,))
        return str(row[0]) if row else None

    async def recent_purchases(self, member_id: int, limit: int = 5) -> list[RecentPurchase]:
        """The member's latest purchases that still count (a voided one is left out), newest first."""
        return await fetch_all_as(
            self._conn,
            RecentPurchase,
            "SELECT id, amount_fen, note, created_at FROM purchases WHERE member_id = ? AND voided_at IS NULL"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (member_id, limit),
        )

    async def open_codes(self, member_id: int, limit: int = 10) -> list[OpenCode]:
        """Held sale claims, rewards not handed over yet and group-buy codes, newest first."""
        return await fetch_all_as(
            self._conn,
            OpenCode,
            "SELECT kind, code, label FROM ("
            " SELECT 'sale' AS kind, c.code, s.item AS label, c.claimed_at AS at FROM sale_claims c"
            "  JOIN sales s ON s.id = c.sale_id WHERE c.member_id = :id AND c.state = 'held'"
            " UNION ALL SELECT 'redemption', r.code, w.name, r.created_at FROM redemptions r"
            "  JOIN rewards w ON w.id = r.reward_id WHERE r.member_id = :id AND r.state = 'pending'"
            " UNION ALL SELECT 'group_buy', p.code, g.item, p.joined_at FROM group_buy_members p"
            "  JOIN group_buys g ON g.id = p.group_buy_id"
            "  WHERE p.member_id = :id AND p.code IS NOT NULL AND g.state = 'succeeded'"
            ") ORDER BY at DESC LIMIT :limit",
            {"id": member_id, "limit": limit},
            bulk=True,  # redemptions and group-buy places have no index by member
        )

    async def activity(self, member_id: int) -> Activity:
        found = await fetch_one_as(
            self._conn,
            Activity,
            "SELECT (SELECT COUNT(*) FROM checkins WHERE member_id = :id) AS checkins,"
            " (SELECT COUNT(*) FROM purchases WHERE member_id = :id) AS purchases,"
            " (SELECT COUNT(*) FROM poll_answers WHERE member_id = :id AND complete = 1) AS answers",
            {"id": member_id},
            bulk=True,  # poll answers are keyed by poll first
        )
        assert found is not None
        return found


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
