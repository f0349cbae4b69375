"""Referrals (老带新): members' stable invite codes, who brought whom, and each referral's reward outcome.

The database holds the rules that must never break: one code per member, one referrer per member, and a
referral settles once, against the referrer's monthly cap counted in the same statement.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from storage.sql import Statements, fetch_all, fetch_one


@dataclass(frozen=True, slots=True)
class Referral:
    id: int
    referrer_id: int
    referred_id: int
    code: str
    state: str
    """'joined' (no purchase yet), 'rewarded', or 'capped' (the referrer was over the monthly cap)."""
    created_at: int
    purchase_id: int | None
    rewarded_at: int | None
    reward_month: str | None
    referrer_points: int
    referred_points: int
    outcome: str
    referred_name: str


@dataclass(frozen=True, slots=True)
class ReferralStats:
    joined: int
    purchased: int
    capped: int
    points: int
    """Points the referrer earned from referrals."""


_REFERRAL = (
    "SELECT r.id, r.referrer_id, r.referred_id, r.code, r.state, r.created_at, r.purchase_id, r.rewarded_at,"
    " r.reward_month, r.referrer_points, r.referred_points, r.outcome, m.display_name"
    " FROM referrals r JOIN members m ON m.id = r.referred_id"
)


def _referral(row: sqlite3.Row) -> Referral:
    return Referral(*row)


class ReferralRepo:
    def __init__(self, conn: Statements) -> None:
        self._conn = conn

    # --- codes ---------------------------------------------------------------------------------------
    async def code_of(self, member_id: int) -> str | None:
        row = await fetch_one(self._conn, "SELECT code FROM referral_codes WHERE member_id = ?", (member_id,))
        return str(row[0]) if row else None

    async def claim_code(self, member_id: int, code: str, now: int) -> str | None:
        """The member's code: the existing one, else `code` if it is free; None when `code` is taken."""
        await self._conn.execute(
            "INSERT INTO referral_codes(member_id, code, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (member_id, code, now),
        )
        return await self.code_of(member_id)

    async def owner_of(self, code: str) -> int | None:
        row = await fetch_one(self._conn, "SELECT member_id FROM referral_codes WHERE code = ?", (code,))
        return int(row[0]) if row else None

    # --- attribution ---------------------------------------------------------------------------------
    async def attribute(self, referrer_id: int, referred_id: int, code: str, channel: str, now: int) -> bool:
        """Record that `referrer_id` brought `referred_id`; False if the member was already attributed."""
        row = await fetch_one(
            self._conn,
            "INSERT INTO referrals(referrer_id, referred_id, code, channel, created_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(referred_id) DO NOTHING RETURNING id",
            (referrer_id, referred_id, code, channel, now),
        )
        return row is not None

    async def for_referred(self, referred_id: int) -> Referral | None:
        row = await fetch_one(self._conn, f"{_REFERRAL} WHERE r.referred_id = ?", (referred_id,))
        return _referral(row) if row else None

    # --- rewards -------------------------------------------------------------------------------------
    async def settle(
        self,
        referred_id: int,
        purchase_id: int,
        month: str,
        cap: int,
        referrer_points: int,
        referred_points: int,
        capped_outcome: str,
        now: int,
    ) -> Referral | None:
        """Settle the referral of `referred_id` on their first purchase, once.

        The referrer's rewarded referrals of `month` are counted in the same statement: below `cap` the
        referral is 'rewarded' with `referrer_points`, else 'capped' with none and `capped_outcome` as the
        reason. Returns the settled referral, or None when there is nothing (left) to settle.
        """
        over_cap = (
            "(SELECT COUNT(*) FROM referrals done WHERE done.referrer_id = referrals.referrer_id"
            " AND done.state = 'rewarded' AND done.reward_month = :month) >= :cap"
        )
        row = await fetch_one(
            self._conn,
            f"UPDATE referrals SET state = CASE WHEN {over_cap} THEN 'capped' ELSE 'rewarded' END,"
            f" referrer_points = CASE WHEN {over_cap} THEN 0 ELSE :referrer_points END,"
            f" outcome = CASE WHEN {over_cap} THEN :outcome ELSE '' END,"
            " referred_points = :referred_points, purchase_id = :purchase_id, rewarded_at = :now,"
            " reward_month = :month"
            " WHERE referred_id = :referred_id AND state = 'joined' RETURNING id",
            {
                "month": month,
                "cap": cap,
                "referrer_points": referrer_points,
                "referred_points": referred_points,
                "outcome": capped_outcome,
                "purchase_id": purchase_id,
                "now": now,
                "referred_id": referred_id,
            },
        )
        return await self.for_referred(referred_id) if row is not None else None

    async def rewarded_in_month(self, referrer_id: int, month: str) -> int:
        row = await fetch_one(
            self._conn,
            "SELECT COUNT(*) FROM referrals WHERE referrer_id = ? AND state = 'rewarded' AND reward_month = ?",
            (referrer_id, month),
        )
        return int(row[0]) if row else 0

    # --- the referrer's view -------------------------------------------------------------------------
    async def stats(self, referrer_id: int) -> ReferralStats:
        row = await fetch_one(
            self._conn,
            "SELECT COUNT(*), COALESCE(SUM(state <> 'joined'), 0), COALESCE(SUM(state = 'capped'), 0),"
            " COALESCE(SUM(referrer_points), 0) FROM referrals WHERE referrer_id = ?",
            (referrer_id,),
        )
        assert row is not None
        return ReferralStats(joined=row[0], purchased=row[1], capped=row[2], points=row[3])

    async def by_referrer(self, referrer_id: int, limit: int = 10) -> list[Referral]:
        """The referrer's latest referrals, newest first."""
        rows = await fetch_all(
            self._conn, f"{_REFERRAL} WHERE r.referrer_id = ? ORDER BY r.id DESC LIMIT ?", (referrer_id, limit)
        )
        return [_referral(r) for r in rows]
