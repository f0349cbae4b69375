"""Referrals (老带新): members' stable invite codes, who brought whom, and each referral's reward outcome.

The database holds the rules that must never break: one code per member, one referrer per member, and a
referral settles once, against the referrer's monthly cap counted in the same statement, after taking the
referrer's member row lock (so, on PostgreSQL, two first purchases settling at once on two connections count
each other: the second waits for the first to commit). A new member can be attributed only while they have no
activity, and a referral between two members who become one is voided.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, fetch_all_as, fetch_one, fetch_one_as, has_row
from storage.members import NO_ACTIVITY


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
class MergeReasons:
    """Why a referral was voided when two members became one (stored in its `outcome`)."""

    same_member: str
    invited_twice: str
    not_new: str


@dataclass(frozen=True, slots=True)
class ReferralStats:
    joined: int
    purchased: int
    capped: int
    points: int
    """Points the referrer earned from referrals."""


_REFERRAL = (
    "SELECT r.id, r.referrer_id, r.referred_id, r.code, r.state, r.created_at, r.purchase_id, r.rewarded_at,"
    " r.reward_month, r.referrer_points, r.referred_points, r.outcome, m.display_name AS referred_name"
    " FROM referrals r JOIN members m ON m.id = r.referred_id"
)


class ReferralRepo(Repo):
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
        """Record that `referrer_id` brought `referred_id`, a member with no activity yet (see
        `storage.members.NO_ACTIVITY`); False if the member was already attributed or has been active."""
        return await has_row(
            self._conn,
            "INSERT INTO referrals(referrer_id, referred_id, code, channel, created_at)"
            f" SELECT :referrer, :member, :code, :channel, :now WHERE {NO_ACTIVITY}"
            " ON CONFLICT(referred_id) DO NOTHING RETURNING id",
            {"referrer": referrer_id, "member": referred_id, "code": code, "channel": channel, "now": now},
        )

    # --- two members becoming one --------------------------------------------------------------------
    async def between(self, a: int, b: int) -> list[Referral]:
        """Live referrals of one of the two members by the other."""
        return await fetch_all_as(
            self._conn,
            Referral,
            f"{_REFERRAL} WHERE r.voided_at IS NULL AND r.referrer_id IN (:a, :b) AND r.referred_id IN (:a, :b)",
            {"a": a, "b": b},
        )

    async def follow_merge(self, source: int, target: int, now: int, reasons: MergeReasons) -> None:
        """`source` becomes part of `target` (call before its rows move): the referrals follow.

        A referral between the two is voided: an invite between identities of one member earns nothing (the
        caller takes back what it paid). One member is brought in once: when both were invited, the invite
        still waiting for a first purchase is voided (the source's when both wait), and so is a waiting
        invite when either has bought before (the next purchase is no first one). The rest are re-pointed
        to `target`, as referrer and as referred.
        """
        values = {"s": source, "t": target, "now": now}
        void = "UPDATE referrals SET voided_at = :now, outcome = :why WHERE voided_at IS NULL"
        await self._conn.execute(
            f"{void} AND referrer_id IN (:s, :t) AND referred_id IN (:s, :t)", {**values, "why": reasons.same_member}
        )
        for waiting, other in (("s", "t"), ("t", "s")):
            await self._conn.execute(
                f"{void} AND state = 'joined' AND referred_id = :{waiting} AND EXISTS (SELECT 1 FROM referrals o"
                f" WHERE o.voided_at IS NULL AND o.referred_id = :{other})",
                {**values, "why": reasons.invited_twice},
            )
        await self._conn.execute(
            f"{void} AND state = 'joined' AND referred_id IN (:s, :t)"
            " AND EXISTS (SELECT 1 FROM purchases p WHERE p.member_id IN (:s, :t))",
            {**values, "why": reasons.not_new},
        )
        await self._conn.execute(
            "UPDATE referrals SET referred_id = :t WHERE referred_id = :s AND voided_at IS NULL AND referrer_id <> :t"
            " AND NOT EXISTS (SELECT 1 FROM referrals o WHERE o.referred_id = :t)",  # referred_id is UNIQUE
            values,
        )
        await self._conn.execute(  # one still there: the target was brought in before (a voided invite)
            f"{void} AND state = 'joined' AND referred_id = :s", {**values, "why": reasons.invited_twice}
        )
        await self._conn.execute(
            "UPDATE referrals SET referrer_id = :t WHERE referrer_id = :s AND voided_at IS NULL", values
        )

    async def for_referred(self, referred_id: int) -> Referral | None:
        return await fetch_one_as(
            self._conn,
            Referral,
            f"{_REFERRAL} WHERE r.referred_id = ? ORDER BY r.voided_at IS NULL DESC",
            (referred_id,),
        )

    # --- a first purchase voided ----------------------------------------------------------------------
    async def for_purchase(self, purchase_id: int) -> Referral | None:
        """The live referral that `purchase_id` (the referred member's first purchase) settled, if any."""
        return await fetch_one_as(
            self._conn, Referral, f"{_REFERRAL} WHERE r.purchase_id = ? AND r.voided_at IS NULL", (purchase_id,)
        )

    async def void(self, referral_id: int, now: int, outcome: str) -> bool:
        """Void a referral once (its reward taken back by the caller); False when it already was."""
        return await has_row(
            self._conn,
            "UPDATE referrals SET voided_at = ?, outcome = ? WHERE id = ? AND voided_at IS NULL RETURNING id",
            (now, outcome, referral_id),
        )

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

        The referrer's rewarded referrals of `month` are counted in the same statement, under the referrer's
        row lock: below `cap` the referral is 'rewarded' with `referrer_points`, else 'capped' with none and
        `capped_outcome` as the reason. Returns the settled referral, or None when there is nothing (left) to settle.
        """
        over_cap = (
            "(SELECT COUNT(*) FROM referrals done WHERE done.referrer_id = referrals.referrer_id"
            " AND done.state = 'rewarded' AND done.reward_month = :month AND done.voided_at IS NULL) >= :cap"
        )
        # The referrer's row lock first (PostgreSQL: READ COMMITTED would count from before a settlement of the
        # same referrer still being committed); on SQLite a one-row no-op. `notify` is no key, in no index.
        await self._conn.execute(
            "UPDATE members SET notify = notify WHERE id = (SELECT referrer_id FROM referrals"
            " WHERE referred_id = ? AND state = 'joined' AND voided_at IS NULL)",
            (referred_id,),
        )
        row = await fetch_one(
            self._conn,
            f"UPDATE referrals SET state = CASE WHEN {over_cap} THEN 'capped' ELSE 'rewarded' END,"
            f" referrer_points = CASE WHEN {over_cap} THEN 0 ELSE :referrer_points END,"
            f" outcome = CASE WHEN {over_cap} THEN :outcome ELSE '' END,"
            " referred_points = :referred_points, purchase_id = :purchase_id, rewarded_at = :now,"
            " reward_month = :month"
            " WHERE referred_id = :referred_id AND state = 'joined' AND voided_at IS NULL RETURNING id",
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
            "SELECT COUNT(*) FROM referrals WHERE referrer_id = ? AND state = 'rewarded' AND reward_month = ?"
            " AND voided_at IS NULL",
            (referrer_id, month),
        )
        return int(row[0]) if row else 0

    # --- the referrer's view -------------------------------------------------------------------------
    async def stats(self, referrer_id: int) -> ReferralStats:
        stats = await fetch_one_as(
            self._conn,
            ReferralStats,
            "SELECT COUNT(*) AS joined, COALESCE(SUM(CASE WHEN state <> 'joined' THEN 1 ELSE 0 END), 0) AS purchased,"
            " COALESCE(SUM(CASE WHEN state = 'capped' THEN 1 ELSE 0 END), 0) AS capped,"
            " COALESCE(SUM(referrer_points), 0) AS points"
            " FROM referrals WHERE referrer_id = ? AND voided_at IS NULL",
            (referrer_id,),
        )
        assert stats is not None
        return stats

    async def by_referrer(self, referrer_id: int, limit: int = 10) -> list[Referral]:
        """The referrer's latest referrals, newest first."""
        return await fetch_all_as(
            self._conn,
            Referral,
            f"{_REFERRAL} WHERE r.referrer_id = ? AND r.voided_at IS NULL ORDER BY r.id DESC LIMIT ?",
            (referrer_id, limit),
        )
