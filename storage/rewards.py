"""The points rewards shop (积分兑换): rewards with optional stock, and redemptions with codes."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, changed_one, fetch_all_as, fetch_one_as, inserted_id, update_columns


@dataclass(frozen=True, slots=True)
class Reward:
    id: int
    name: str
    cost: int
    stock: int | None
    redeemed: int
    min_tier: str | None
    state: str

    @property
    def left(self) -> int | None:
        return None if self.stock is None else self.stock - self.redeemed


@dataclass(frozen=True, slots=True)
class Redemption:
    id: int
    reward_id: int
    member_id: int
    code: str
    cost: int
    state: str
    reward_name: str
    display_name: str


_REWARD = "SELECT id, name, cost, stock, redeemed, min_tier, state FROM rewards"
_REDEMPTION = (
    "SELECT r.id, r.reward_id, r.member_id, r.code, r.cost, r.state, w.name AS reward_name, m.display_name"
    " FROM redemptions r"
    " JOIN rewards w ON w.id = r.reward_id JOIN members m ON m.id = r.member_id"
)


class RewardRepo(Repo):
    async def create(self, name: str, cost: int, stock: int | None, min_tier: str | None, now: int) -> int:
        return await inserted_id(
            self._conn,
            "INSERT INTO rewards(name, cost, stock, min_tier, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
            (name, cost, stock, min_tier, now),
        )

    async def get(self, reward_id: int) -> Reward | None:
        return await fetch_one_as(self._conn, Reward, f"{_REWARD} WHERE id = ?", (reward_id,))

    async def active(self) -> list[Reward]:
        return await fetch_all_as(self._conn, Reward, f"{_REWARD} WHERE state = 'active' ORDER BY cost, id")

    async def update(self, reward_id: int, **fields: object) -> bool:
        allowed = {"name", "cost", "stock", "min_tier"}
        return await update_columns(self._conn, "rewards", reward_id, fields, allowed, "state = 'active'")

    async def remove(self, reward_id: int) -> bool:
        return await changed_one(
            self._conn, "UPDATE rewards SET state = 'removed' WHERE id = ? AND state = 'active'", (reward_id,)
        )

    async def take_one(self, reward_id: int) -> bool:
        """Take one from stock (unlimited rewards always succeed); False when none is left."""
        return await changed_one(
            self._conn,
            "UPDATE rewards SET redeemed = redeemed + 1 WHERE id = ? AND state = 'active'"
            " AND (stock IS NULL OR redeemed < stock)",
            (reward_id,),
        )

    async def record(self, reward_id: int, member_id: int, code: str, cost: int, now: int) -> None:
        await self._conn.execute(
            "INSERT INTO redemptions(reward_id, member_id, code, cost, created_at) VALUES (?, ?, ?, ?, ?)",
            (reward_id, member_id, code, cost, now),
        )

    async def by_code(self, code: str) -> Redemption | None:
        return await fetch_one_as(self._conn, Redemption, f"{_REDEMPTION} WHERE r.code = ?", (code.upper(),))

    async def hand_over(self, code: str, staff_id: int, now: int) -> bool:
        return await changed_one(
            self._conn,
            "UPDATE redemptions SET state = 'handed', handed_at = ?, handed_by = ?"
            " WHERE code = ? AND state = 'pending'",
            (now, staff_id, code.upper()),
        )
