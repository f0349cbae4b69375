"""Group buys (团购): members join until the deadline; then it succeeds (codes for all) or fails.

A join, an edit, a settlement and a cancel first lock the group buy's row (`_LOCK`, an update that changes
nothing), then check and act: on PostgreSQL, where transactions run at once under READ COMMITTED, a join's insert
does not wait for a settlement in flight (its foreign key only shares the row's key), so a member could join a
group buy already settled without them, or an edit see no member while the first one joins. With the lock the
second waits for the first to commit, and its next statement sees what the first did: a join either lands before
the settlement (and is settled with it) or is refused after it. On SQLite (one writer at a time) it is a one-row
no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, changed_one, fetch_all_as, fetch_one_as, has_row, inserted_id


@dataclass(frozen=True, slots=True)
class GroupBuy:
    id: int
    item: str
    price_fen: int
    group_price_fen: int
    min_members: int
    deadline_at: int
    state: str
    joined: int

    @property
    def missing(self) -> int:
        return max(self.min_members - self.joined, 0)


@dataclass(frozen=True, slots=True)
class Participant:
    member_id: int
    display_name: str
    deposit_fen: int
    code: str | None


_SELECT = (
    "SELECT g.id, g.item, g.price_fen, g.group_price_fen, g.min_members, g.deadline_at, g.state,"
    " (SELECT COUNT(*) FROM group_buy_members p WHERE p.group_buy_id = g.id) AS joined FROM group_buys g"
)


_LOCK = "UPDATE group_buys SET min_members = min_members WHERE id = ?"
"""Take the group buy's row lock until the transaction ends (PostgreSQL; a no-op change on SQLite). `min_members`
is no key and in no index: the lock does not hold up other tables' foreign keys, and SQLite rewrites no index."""


class GroupBuyRepo(Repo):
    async def create(
        self, item: str, price_fen: int, group_price_fen: int, min_members: int, deadline_at: int,
        created_by: int | None, now: int,
    ) -> int:  # fmt: skip
        return await inserted_id(
            self._conn,
            "INSERT INTO group_buys(item, price_fen, group_price_fen, min_members, deadline_at, created_by,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (item, price_fen, group_price_fen, min_members, deadline_at, created_by, now),
        )

    async def get(self, group_buy_id: int) -> GroupBuy | None:
        return await fetch_one_as(self._conn, GroupBuy, f"{_SELECT} WHERE g.id = ?", (group_buy_id,))

    async def open_ones(self) -> list[GroupBuy]:
        return await fetch_all_as(self._conn, GroupBuy, f"{_SELECT} WHERE g.state = 'open' ORDER BY g.deadline_at")

    async def join(self, group_buy_id: int, member_id: int, deposit_fen: int, now: int) -> bool:
        """Join an open group buy before its deadline; False if already in (or closed). After the group buy's lock:
        a settlement or cancel in flight is waited for, and then refuses the join."""
        await self.lock(group_buy_id)
        return await has_row(
            self._conn,
            "INSERT INTO group_buy_members(group_buy_id, member_id, deposit_fen, joined_at)"
            " SELECT id, ?, ?, ? FROM group_buys WHERE id = ? AND state = 'open' AND deadline_at > ?"
            " ON CONFLICT DO NOTHING RETURNING member_id",
            (member_id, deposit_fen, now, group_buy_id, now),
        )

    async def is_member(self, group_buy_id: int, member_id: int) -> bool:
        return await has_row(
            self._conn,
            "SELECT 1 FROM group_buy_members WHERE group_buy_id = ? AND member_id = ?",
            (group_buy_id, member_id),
        )

    async def lock(self, group_buy_id: int) -> None:
        """Hold the group buy's row lock until the transaction ends: joins, edits, settlements and cancels of it
        on other connections wait (PostgreSQL). Taken by those itself; a caller that decides from `get` first
        (the settlement's success) takes it before reading."""
        await self._conn.execute(_LOCK, (group_buy_id,))

    async def settle(self, group_buy_id: int, succeeded: bool) -> bool:
        """Close an open group buy as succeeded or failed; False if it was not open any more (a cancel racing it
        won). After the group buy's lock, so `participants` read next in the transaction are all it closed on."""
        await self.lock(group_buy_id)
        return await changed_one(
            self._conn,
            "UPDATE group_buys SET state = ? WHERE id = ? AND state = 'open'",
            ("succeeded" if succeeded else "failed", group_buy_id),
        )

    async def edit(
        self, group_buy_id: int, price_fen: int, group_price_fen: int, min_members: int, deadline_at: int, now: int
    ) -> bool:
        """Correct a group buy made by mistake while it is open, before its deadline and before anyone joined,
        in one conditional update after the group buy's lock (a join racing it wins); False otherwise."""
        await self.lock(group_buy_id)
        return await changed_one(
            self._conn,
            "UPDATE group_buys SET price_fen = ?, group_price_fen = ?, min_members = ?, deadline_at = ?"
            " WHERE id = ? AND state = 'open' AND deadline_at > ?"
            " AND NOT EXISTS (SELECT 1 FROM group_buy_members p WHERE p.group_buy_id = group_buys.id)",
            (price_fen, group_price_fen, min_members, deadline_at, group_buy_id, now),
        )

    async def cancel(self, group_buy_id: int) -> bool:
        """Cancel an open group buy; False if it was not open any more (a settlement racing it won)."""
        await self.lock(group_buy_id)
        return await changed_one(
            self._conn, "UPDATE group_buys SET state = 'cancelled' WHERE id = ? AND state = 'open'", (group_buy_id,)
        )

    async def set_code(self, group_buy_id: int, member_id: int, code: str) -> None:
        await self._conn.execute(
            "UPDATE group_buy_members SET code = ? WHERE group_buy_id = ? AND member_id = ? AND code IS NULL",
            (code, group_buy_id, member_id),
        )

    async def participants(self, group_buy_id: int) -> list[Participant]:
        return await fetch_all_as(
            self._conn,
            Participant,
            "SELECT p.member_id, m.display_name, p.deposit_fen, p.code FROM group_buy_members p"
            " JOIN members m ON m.id = p.member_id WHERE p.group_buy_id = ? ORDER BY p.joined_at, p.member_id",
            (group_buy_id,),
        )
