"""Greetings: the holiday occurrences already planned (one per holiday and day), the holidays staff
silenced, and the birthdays greeted (one per member and day).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import Repo, changed_one, fetch_all, fetch_all_as, fetch_one, fetch_one_as, has_row


@dataclass(frozen=True, slots=True)
class GreetingPlan:
    holiday_id: str
    day: str
    """Local date 'YYYY-MM-DD'."""
    announcement_id: int | None
    state: str | None
    """The announcement's state: 'pending', 'queued', 'skipped' or 'cancelled'."""


@dataclass(frozen=True, slots=True)
class BirthdayMember:
    id: int
    display_name: str
    birthday: str
    """'MM-DD'."""
    set_at: int | None
    """Unix seconds the birthday was last set or changed (None: before that was recorded)."""
    notify: bool
    can_message: bool


def _in(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


_PLANS = (
    "SELECT p.holiday_id, p.day, p.announcement_id, a.state FROM greeting_plans p"
    " {join} JOIN announcements a ON a.id = p.announcement_id"
)


class GreetingRepo(Repo):
    # --- holiday greetings ------------------------------------------------------------------------
    async def claim_plan(self, holiday_id: str, day: str, now: int) -> bool:
        """Take the right to plan this occurrence; False if it was planned before (the unique key decides)."""
        return await has_row(
            self._conn,
            "INSERT INTO greeting_plans(holiday_id, day, planned_at) VALUES (?, ?, ?)"
            " ON CONFLICT(holiday_id, day) DO NOTHING RETURNING holiday_id",
            (holiday_id, day, now),
        )

    async def attach(self, holiday_id: str, day: str, announcement_id: int) -> None:
        await self._conn.execute(
            "UPDATE greeting_plans SET announcement_id = ? WHERE holiday_id = ? AND day = ?",
            (announcement_id, holiday_id, day),
        )

    async def plan_of(self, announcement_id: int) -> GreetingPlan | None:
        return await fetch_one_as(
            self._conn,
            GreetingPlan,
            _PLANS.format(join="LEFT") + " WHERE p.announcement_id = ?",
            (announcement_id,),
        )

    async def plans_from(self, day: str) -> list[GreetingPlan]:
        """Every plan for an occurrence on or after `day`."""
        return await fetch_all_as(
            self._conn,
            GreetingPlan,
            _PLANS.format(join="LEFT") + " WHERE p.day >= ? ORDER BY p.day, p.holiday_id",
            (day,),
        )

    async def pending(self, holiday_ids: Sequence[str] | None = None) -> list[GreetingPlan]:
        """Plans whose greeting is still waiting to go out, of some holidays or of all."""
        where, params = "", ()
        if holiday_ids is not None:
            if not holiday_ids:
                return []
            where, params = f" AND p.holiday_id IN ({_in(holiday_ids)})", tuple(holiday_ids)
        return await fetch_all_as(
            self._conn,
            GreetingPlan,
            _PLANS.format(join="") + f" WHERE a.state = 'pending'{where} ORDER BY p.day, p.holiday_id",
            params,
        )

    async def release(self, holiday_id: str, day: str) -> None:
        """Forget the plan of an occurrence whose greeting was cancelled unsent, so it may be planned again."""
        await self._conn.execute("DELETE FROM greeting_plans WHERE holiday_id = ? AND day = ?", (holiday_id, day))

    async def silence(self, holiday_id: str, by: int | None, now: int) -> bool:
        """False if it was silenced already."""
        return await changed_one(
            self._conn,
            "INSERT INTO greeting_silenced(holiday_id, silenced_by, silenced_at) VALUES (?, ?, ?)"
            " ON CONFLICT(holiday_id) DO NOTHING",
            (holiday_id, by, now),
        )

    async def unsilence(self, holiday_id: str) -> bool:
        """False if it was not silenced."""
        return await changed_one(self._conn, "DELETE FROM greeting_silenced WHERE holiday_id = ?", (holiday_id,))

    async def silenced(self) -> set[str]:
        rows = await fetch_all(self._conn, "SELECT holiday_id FROM greeting_silenced")
        return {r[0] for r in rows}

    async def member_ids(self) -> list[int]:
        """Every member with an identity (a member merged into another has none left): those who get a gift to
        all (`LedgerRepo.gift_to_all` books it in one statement; this list is for reports and the benchmark)."""
        rows = await fetch_all(
            self._conn,
            "SELECT m.id FROM members m WHERE EXISTS (SELECT 1 FROM identities i WHERE i.member_id = m.id)"
            " ORDER BY m.id",
            bulk=True,
        )
        return [r[0] for r in rows]

    # --- birthdays --------------------------------------------------------------------------------
    async def birthdays_on(self, month_days: Sequence[str]) -> list[BirthdayMember]:
        """Members whose birthday ('MM-DD') is one of `month_days`, with how they can be reached; members
        without an identity (merged into another) are left out."""
        if not month_days:
            return []
        return await fetch_all_as(
            self._conn,
            BirthdayMember,
            "SELECT m.id, m.display_name, m.birthday, m.birthday_set_at AS set_at, m.notify,"
            " (SELECT MAX(i.can_message) FROM identities i WHERE i.member_id = m.id) AS can_message"
            f" FROM members m WHERE m.birthday IN ({_in(month_days)})"
            " AND EXISTS (SELECT 1 FROM identities i WHERE i.member_id = m.id) ORDER BY m.id",
            tuple(month_days),
            bulk=True,
        )

    async def claim_birthdays(self, month_days: Sequence[str], day: str, now: int) -> list[int]:
        """Take the right to greet on `day` every member `birthdays_on(month_days)` finds, in one statement
        (the unique key decides); returns the members not greeted that day before, in id order. A bulk
        statement: it reads every member's birthday, so it never runs on the event loop."""
        if not month_days:
            return []
        rows = await fetch_all(
            self._conn,
            "INSERT INTO birthday_greetings(member_id, day, sent_at)"
            f" SELECT m.id, ?, ? FROM members m WHERE m.birthday IN ({_in(month_days)})"
            " AND EXISTS (SELECT 1 FROM identities i WHERE i.member_id = m.id) ORDER BY m.id"
            " ON CONFLICT(member_id, day) DO NOTHING RETURNING member_id",
            (day, now, *month_days),
            bulk=True,
        )
        return sorted(int(r["member_id"]) for r in rows)

    async def record_birthdays(self, day: str, records: Sequence[tuple[int, str, int, int | None]]) -> None:
        """`record_birthday` for many (member id, via, gift, announcement id) of `day`, in one bulk statement."""
        if not records:
            return
        await self._conn.execute(
            "UPDATE birthday_greetings SET via = json_extract(j.value, '$[1]'),"
            " gift = CAST(json_extract(j.value, '$[2]') AS BIGINT),"
            " announcement_id = CAST(json_extract(j.value, '$[3]') AS BIGINT) FROM json_each(?) j"
            " WHERE birthday_greetings.member_id = CAST(json_extract(j.value, '$[0]') AS BIGINT)"
            " AND birthday_greetings.day = ?",
            (json.dumps([list(r) for r in records]), day),
            bulk=True,
        )

    async def claim_birthday(self, member_id: int, day: str, now: int) -> bool:
        """Take the right to greet a member on `day`; False if they were greeted that day already."""
        return await has_row(
            self._conn,
            "INSERT INTO birthday_greetings(member_id, day, sent_at) VALUES (?, ?, ?)"
            " ON CONFLICT(member_id, day) DO NOTHING RETURNING member_id",
            (member_id, day, now),
        )

    async def record_birthday(self, member_id: int, day: str, via: str, gift: int, announcement_id: int | None) -> None:
        await self._conn.execute(
            "UPDATE birthday_greetings SET via = ?, gift = ?, announcement_id = ? WHERE member_id = ? AND day = ?",
            (via, gift, announcement_id, member_id, day),
        )

    async def birthday_record(self, member_id: int, day: str) -> tuple[str, int] | None:
        """(via, gift) of a member's greeting on `day`, if they were greeted."""
        row = await fetch_one(
            self._conn, "SELECT via, gift FROM birthday_greetings WHERE member_id = ? AND day = ?", (member_id, day)
        )
        return (row[0], row[1]) if row else None
