"""Daily check-ins: one row per (member, business day), the streak computed in the same statement."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, fetch_one, fetch_one_as


@dataclass(frozen=True, slots=True)
class Checkin:
    day: str
    streak: int
    points: int


_SELECT = "SELECT day, streak, points FROM checkins"


class CheckinRepo(Repo):
    async def record(
        self,
        member_id: int,
        day: str,
        previous_day: str,
        now: int,
        base_points: int,
        streak_bonus: int,
        bonus_cap: int,
        chat: str | None = None,
    ) -> Checkin | None:
        """Insert today's check-in; None when the member already checked in on `day`.

        The unique key (member_id, day) is what stops a double check-in, not a prior read. `chat`
        ('channel:chat id') names the group it was made in, for that group's board.
        """
        return await fetch_one_as(
            self._conn,
            Checkin,
            "WITH s AS (SELECT COALESCE((SELECT streak FROM checkins WHERE member_id = :m AND day = :prev),"
            " 0) + 1 AS streak)"
            " INSERT INTO checkins(member_id, day, streak, points, created_at, chat)"
            " SELECT :m, :day, streak, :base + MIN(:bonus * (streak - 1), :cap), :now, :chat FROM s WHERE true"
            " ON CONFLICT(member_id, day) DO NOTHING RETURNING day, streak, points",
            {
                "m": member_id,
                "day": day,
                "prev": previous_day,
                "now": now,
                "base": base_points,
                "bonus": streak_bonus,
                "cap": bonus_cap,
                "chat": chat,
            },
        )

    async def on_day(self, member_id: int, day: str) -> Checkin | None:
        return await fetch_one_as(self._conn, Checkin, f"{_SELECT} WHERE member_id = ? AND day = ?", (member_id, day))

    async def latest(self, member_id: int) -> Checkin | None:
        return await fetch_one_as(
            self._conn, Checkin, f"{_SELECT} WHERE member_id = ? ORDER BY day DESC LIMIT 1", (member_id,)
        )

    async def count_on(self, day: str) -> int:
        row = await fetch_one(self._conn, "SELECT COUNT(*) FROM checkins WHERE day = ?", (day,))
        return int(row[0]) if row else 0
