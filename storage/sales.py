"""Flash sales (秒杀) and their claims. The stock is taken with a conditional update and each claim is
unique per (sale, member, unit) by a partial unique index, so no concurrency can oversell or double-claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.rollback import Rollback
from storage.db.sql import Repo, changed_one, fetch_all, fetch_all_as, fetch_one, fetch_one_as, from_row, inserted_id


@dataclass(frozen=True, slots=True)
class Sale:
    id: int
    item: str
    price_fen: int
    stock: int
    sold: int
    starts_at: int
    ends_at: int | None
    per_member: int
    min_tier: str | None
    hold_minutes: int | None
    state: str
    forced: bool

    @property
    def remaining(self) -> int:
        return self.stock - self.sold


@dataclass(frozen=True, slots=True)
class Claim:
    id: int
    sale_id: int
    member_id: int
    unit: int
    code: str
    state: str
    claimed_at: int
    settled_at: int | None
    display_name: str = ""


_SALE = (
    "SELECT id, item, price_fen, stock, sold, starts_at, ends_at, per_member, min_tier, hold_minutes, state, forced"
    " FROM sales"
)
_CLAIM = (
    "SELECT c.id, c.sale_id, c.member_id, c.unit, c.code, c.state, c.claimed_at, c.settled_at, m.display_name"
    " FROM sale_claims c JOIN members m ON m.id = c.member_id"
)
_RETURN_CLAIM = " RETURNING id, sale_id, member_id, unit, code, state, claimed_at, settled_at"


class SaleRepo(Repo):
    async def create(
        self,
        item: str,
        price_fen: int,
        stock: int,
        starts_at: int,
        ends_at: int | None,
        per_member: int,
        min_tier: str | None,
        hold_minutes: int | None,
        forced: bool,
        created_by: int | None,
        now: int,
    ) -> int:
        return await inserted_id(
            self._conn,
            "INSERT INTO sales(item, price_fen, stock, starts_at, ends_at, per_member, min_tier, hold_minutes,"
            " forced, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (item, price_fen, stock, starts_at, ends_at, per_member, min_tier, hold_minutes, int(forced),
             created_by, now),
        )  # fmt: skip

    async def get(self, sale_id: int) -> Sale | None:
        return await fetch_one_as(self._conn, Sale, f"{_SALE} WHERE id = ?", (sale_id,))

    async def running(self, now: int) -> list[Sale]:
        """Active sales that have started and not ended (their group posts show live stock)."""
        return await fetch_all_as(
            self._conn,
            Sale,
            f"{_SALE} WHERE state = 'active' AND starts_at <= ? AND (ends_at IS NULL OR ends_at > ?)",
            (now, now),
        )

    async def take_unit(self, sale_id: int, member_id: int, code: str, now: int, opens_at: int) -> int | None:
        """Claim one unit for the member: within their per-member limit, inside the window (opening at
        `opens_at` for them), while stock lasts. Returns the unit number, or None (nothing changed).

        Must run inside a transaction: the claim row is written first, and if the stock update then finds
        nothing left, the caller's rollback removes the claim again.
        """
        row = await fetch_one(
            self._conn,
            "INSERT INTO sale_claims(sale_id, member_id, unit, code, claimed_at)"
            " SELECT s.id, :m, n.live + 1, :code, :now FROM sales s,"
            "  (SELECT COUNT(*) AS live FROM sale_claims WHERE sale_id = :s AND member_id = :m"
            "   AND state <> 'released') n"
            " WHERE s.id = :s AND n.live < s.per_member RETURNING unit",
            {"s": sale_id, "m": member_id, "code": code, "now": now},
        )
        if row is None:
            return None
        cur = await self._conn.execute(
            "UPDATE sales SET sold = sold + 1 WHERE id = :s AND state = 'active' AND sold < stock"
            " AND CAST(:now AS BIGINT) >= CAST(:opens AS BIGINT) AND (ends_at IS NULL OR :now < ends_at)",
            {"s": sale_id, "now": now, "opens": opens_at},
        )
        if cur.rowcount != 1:
            raise StockGone
        return int(row[0])

    async def live_claims(self, sale_id: int, member_id: int) -> int:
        row = await fetch_one(
            self._conn,
            "SELECT COUNT(*) FROM sale_claims WHERE sale_id = ? AND member_id = ? AND state <> 'released'",
            (sale_id, member_id),
        )
        return int(row[0]) if row else 0

    async def claim_by_code(self, code: str) -> Claim | None:
        return await fetch_one_as(self._conn, Claim, f"{_CLAIM} WHERE c.code = ?", (code.upper(),))

    async def claims(self, sale_id: int) -> list[Claim]:
        return await fetch_all_as(
            self._conn, Claim, f"{_CLAIM} WHERE c.sale_id = ? ORDER BY c.id", (sale_id,), bulk=True
        )

    async def release(self, code: str, now: int) -> Claim | None:
        """Give a held or paid unit back to stock; None if the code is unknown or already released."""
        row = await fetch_one(
            self._conn,
            "UPDATE sale_claims SET state = 'released', settled_at = ? WHERE code = ? AND state <> 'released'"
            + _RETURN_CLAIM,
            (now, code.upper()),
        )
        if row is None:
            return None
        await self._conn.execute("UPDATE sales SET sold = sold - 1 WHERE id = ?", (row["sale_id"],))
        return from_row(Claim, row)

    async def mark_paid(self, code: str, now: int) -> bool:
        return await changed_one(
            self._conn,
            "UPDATE sale_claims SET state = 'paid', settled_at = ? WHERE code = ? AND state = 'held'",
            (now, code.upper()),
        )

    async def release_expired(self, now: int) -> list[Claim]:
        """Release held claims whose sale's hold time has run out; their units go back to stock."""
        rows = await fetch_all(
            self._conn,
            "UPDATE sale_claims SET state = 'released', settled_at = :now WHERE id IN ("
            " SELECT c.id FROM sale_claims c JOIN sales s ON s.id = c.sale_id"
            " WHERE c.state = 'held' AND s.hold_minutes IS NOT NULL AND c.claimed_at + s.hold_minutes * 60 <= :now)"
            + _RETURN_CLAIM,
            {"now": now},
        )
        for row in rows:
            await self._conn.execute("UPDATE sales SET sold = sold - 1 WHERE id = ?", (row["sale_id"],))
        return [from_row(Claim, r) for r in rows]

    async def edit(
        self, sale_id: int, price_fen: int, stock: int, starts_at: int, ends_at: int | None, now: int
    ) -> bool:
        """Change a sale made by mistake, only while it is active, has not started and nobody claimed a unit
        (not even early access): in one conditional update, so a claim racing the edit wins. False otherwise."""
        return await changed_one(
            self._conn,
            "UPDATE sales SET price_fen = ?, stock = ?, starts_at = ?, ends_at = ?"
            " WHERE id = ? AND state = 'active' AND starts_at > ?"
            " AND NOT EXISTS (SELECT 1 FROM sale_claims c WHERE c.sale_id = sales.id)",
            (price_fen, stock, starts_at, ends_at, sale_id, now),
        )

    async def cancel(self, sale_id: int, now: int) -> bool:
        cur = await self._conn.execute(
            "UPDATE sales SET state = 'cancelled' WHERE id = ? AND state = 'active'", (sale_id,)
        )
        if cur.rowcount != 1:
            return False
        released = await fetch_all(
            self._conn,
            "UPDATE sale_claims SET state = 'released', settled_at = ? WHERE sale_id = ? AND state = 'held'"
            " RETURNING id",
            (now, sale_id),
        )
        await self._conn.execute("UPDATE sales SET sold = sold - ? WHERE id = ?", (len(released), sale_id))
        return True


class StockGone(Rollback):
    """The unit could not be taken (sold out, closed or not open yet); the transaction must roll back."""
