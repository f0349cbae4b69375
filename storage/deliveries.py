"""The delivery queue: one row per (announcement, recipient), drained by the sender under rate limits.

States: pending → sending → sent | failed, or back to pending for a retry. A row found in 'sending' after
a restart becomes 'uncertain' and is not sent again: a message may have gone out, and it must not go twice.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db.sql import BULK_ROWS, Repo, changed_one, fetch_all, fetch_all_as, fetch_one
from storage.members import tier_points_sql


@dataclass(frozen=True, slots=True)
class Delivery:
    id: int
    announcement_id: int
    channel: str
    target_kind: str
    target: str
    attempts: int
    text: str
    buttons_json: str
    body: str | None = None
    """A personal text that replaces the announcement's for this recipient."""
    image: bytes | None = None
    poll_id: int | None = None
    """For a 'poll_native' announcement: the poll to send as the platform's own poll."""
    kind: str = ""


@dataclass(frozen=True, slots=True)
class MemberSelect:
    """A SELECT of member ids (one column) with its named parameters, e.g. the members of one segment: an
    audience that `DeliveryRepo.queue_selected` turns into deliveries in one statement."""

    sql: str
    params: dict[str, object]


@dataclass(frozen=True, slots=True)
class TierRange:
    low: int
    high: int | None


WAITING_STATES = ("pending", "sending", "uncertain")
"""The states of a delivery not settled yet; 'sent' and 'failed' are final."""


_MINE = "state = 'sending' AND claimed_by IS ?"
"""A row settles only while it is still being sent by the one who claimed it (not after its lease ran out and it
was recovered, nor by another process)."""


def _in(values: Sequence[str]) -> str:
    return ",".join("?" * len(values))


class DeliveryRepo(Repo):
    # --- filling the queue -----------------------------------------------------------------------
    async def queue_groups(self, announcement_id: int, channels: Sequence[str]) -> int:
        return await self.queue_groups_many([announcement_id], channels)

    async def queue_groups_many(self, announcement_ids: Sequence[int], channels: Sequence[str]) -> int:
        """A post in every VIP group of `channels` for each announcement, in their order, in one statement."""
        if not channels or not announcement_ids:
            return 0
        cur = await self._conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target)"
            " SELECT CAST(j.value AS BIGINT), c.channel, 'chat', c.chat_id FROM json_each(?) j, chats c"
            f" WHERE c.channel IN ({_in(channels)}) ORDER BY j.key, c.channel, c.chat_id ON CONFLICT DO NOTHING",
            (json.dumps([int(i) for i in announcement_ids]), *channels),
            bulk=len(announcement_ids) > BULK_ROWS,
        )
        return cur.rowcount

    async def queue_members(
        self, announcement_id: int, channels: Sequence[str], tiers: Sequence[TierRange] = (), *, reviewed: bool = False
    ) -> int:
        """Private copies for members who can be messaged and want notices, optionally of some tiers only (by
        tier points: lifetime points, less what the tier review set aside when `reviewed`)."""
        if not channels:
            return 0
        tier_sql = ""
        params: list[object] = [announcement_id, *channels]
        if tiers:
            parts = []
            points = tier_points_sql(reviewed)
            for tier in tiers:
                if tier.high is None:
                    parts.append(f"{points} >= ?")
                    params.append(tier.low)
                else:
                    parts.append(f"({points} >= ? AND {points} < ?)")
                    params += [tier.low, tier.high]
            tier_sql = f" AND ({' OR '.join(parts)})"
        cur = await self._conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target, member_id)"
            " SELECT ?, i.channel, 'user', i.external_id, m.id FROM identities i JOIN members m ON m.id = i.member_id"
            f" WHERE i.can_message = 1 AND m.notify = 1 AND i.channel IN ({_in(channels)}){tier_sql}"
            " ON CONFLICT DO NOTHING",
            params,
            bulk=True,
        )
        return cur.rowcount

    async def queue_selected(self, announcement_id: int, members: MemberSelect, channels: Sequence[str]) -> int:
        """Private copies for the members that `members` selects who can be messaged and want notices, in one
        bulk statement whatever their number (in member id order); returns how many rows were queued."""
        if not channels:
            return 0
        names = {f"_channel{n}": channel for n, channel in enumerate(channels)}
        if "_announcement" in members.params or names.keys() & members.params.keys():
            raise ValueError("the member SELECT uses a parameter name reserved here")
        cur = await self._conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target, member_id)"
            " SELECT :_announcement, i.channel, 'user', i.external_id, m.id"
            f" FROM ({members.sql}) s JOIN members m ON m.id = s.member_id JOIN identities i ON i.member_id = m.id"
            f" WHERE i.can_message = 1 AND m.notify = 1 AND i.channel IN ({', '.join(':' + n for n in names)})"
            " ORDER BY m.id, i.channel ON CONFLICT DO NOTHING",
            {**members.params, **names, "_announcement": announcement_id},
            bulk=True,
        )
        return cur.rowcount

    async def queue_signups(self, announcement_id: int, event_id: int, channels: Sequence[str]) -> int:
        """Private copies for everyone signed up to an event (a notice about their own sign-up)."""
        if not channels:
            return 0
        cur = await self._conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target, member_id)"
            " SELECT ?, i.channel, 'user', i.external_id, s.member_id FROM event_signups s"
            " JOIN identities i ON i.member_id = s.member_id"
            f" WHERE s.event_id = ? AND s.state = 'joined' AND i.can_message = 1 AND i.channel IN ({_in(channels)})"
            " ON CONFLICT DO NOTHING",
            (announcement_id, event_id, *channels),
            bulk=True,
        )
        return cur.rowcount

    async def queue_personal(self, announcement_id: int, member_id: int, body: str, channels: Sequence[str]) -> int:
        """A private copy with its own text (e.g. a personal code) on each channel the member can be reached."""
        return await self.queue_personal_many(announcement_id, [(member_id, body)], channels)

    async def queue_personal_many(
        self, announcement_id: int, bodies: Sequence[tuple[int, str]], channels: Sequence[str]
    ) -> int:
        """`queue_personal` for many (member id, text) pairs in one statement, in their order."""
        return await self.queue_personal_each([(announcement_id, member, body) for member, body in bodies], channels)

    async def queue_personal_each(self, items: Sequence[tuple[int, int, str]], channels: Sequence[str]) -> int:
        """For each (announcement id, member id, text), a private copy with that text on each channel the member
        can be reached, all in one statement (bulk beyond BULK_ROWS), in their order; returns rows queued."""
        if not channels or not items:
            return 0
        cur = await self._conn.execute(
            "INSERT INTO deliveries(announcement_id, channel, target_kind, target, member_id, body)"
            " SELECT CAST(json_extract(j.value, '$[0]') AS BIGINT), i.channel, 'user', i.external_id, i.member_id,"
            " json_extract(j.value, '$[2]')"
            " FROM json_each(?) j JOIN identities i ON i.member_id = CAST(json_extract(j.value, '$[1]') AS BIGINT)"
            f" WHERE i.can_message = 1 AND i.channel IN ({_in(channels)}) ORDER BY j.key, i.channel"
            " ON CONFLICT DO NOTHING",
            (json.dumps([list(item) for item in items], ensure_ascii=False), *channels),
            bulk=len(items) > BULK_ROWS,
        )
        return cur.rowcount

    async def queue_staff(self, announcement_id: int, channels: Sequence[str]) -> int:
        count = 0
        for channel in channels:
            cur = await self._conn.execute(
                "INSERT INTO deliveries(announcement_id, channel, target_kind, target) VALUES (?, ?, 'staff', '')"
                " ON CONFLICT DO NOTHING",
                (announcement_id, channel),
            )
            count += cur.rowcount
        return count

    # --- draining it -----------------------------------------------------------------------------
    async def due(self, channels: Sequence[str], wall_now: float, limit: int) -> list[Delivery]:
        if not channels:
            return []
        # A 'poll_native' announcement's poll is its subject.
        return await fetch_all_as(
            self._conn,
            Delivery,
            "SELECT d.id, d.announcement_id, d.channel, d.target_kind, d.target, d.attempts, a.text,"
            " a.buttons AS buttons_json, d.body, a.image, a.kind,"
            " CASE WHEN a.subject_kind = 'poll' THEN a.subject_id END AS poll_id"
            " FROM deliveries d JOIN announcements a ON a.id = d.announcement_id"
            f" WHERE d.state = 'pending' AND d.next_attempt_at <= ? AND d.channel IN ({_in(channels)})"
            " ORDER BY d.next_attempt_at, d.id LIMIT ?",
            (wall_now, *channels, limit),
        )

    async def next_attempt_at(self, channels: Sequence[str]) -> float | None:
        if not channels:
            return None
        row = await fetch_one(
            self._conn,
            f"SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending' AND channel IN ({_in(channels)})",
            tuple(channels),
        )
        return row[0] if row and row[0] is not None else None

    async def claim(self, delivery_id: int, claimant: str = "", lease_until: float = 0.0) -> bool:
        """Take a pending row for sending, for `claimant` until `lease_until` (unix seconds); only one sender can
        win it. On PostgreSQL a row another process has locked (claiming it at this moment) is skipped rather
        than waited for (`FOR UPDATE SKIP LOCKED`): that process wins it."""
        locked = " FOR UPDATE SKIP LOCKED" if getattr(self._conn, "engine", "sqlite") == "postgresql" else ""
        return await changed_one(
            self._conn,
            "UPDATE deliveries SET state = 'sending', attempts = attempts + 1, claimed_by = ?, lease_until = ?"
            f" WHERE id = (SELECT id FROM deliveries WHERE id = ? AND state = 'pending'{locked})",
            (claimant, lease_until, delivery_id),
        )

    async def mark_sent(self, delivery_id: int, now: int, message_id: str | None = None, claimant: str = "") -> None:
        await self._conn.execute(
            "UPDATE deliveries SET state = 'sent', sent_at = ?, last_error = '', message_id = ?"
            f" WHERE id = ? AND {_MINE}",
            (now, message_id, delivery_id, claimant),
        )

    async def sent_posts(self, announcement_ids: Sequence[int]) -> list[tuple[int, str, str, str]]:
        """(delivery id, channel, chat id, message id) of the group posts of these announcements."""
        if not announcement_ids:
            return []
        rows = await fetch_all(
            self._conn,
            "SELECT id, channel, target, message_id FROM deliveries WHERE state = 'sent' AND target_kind = 'chat'"
            f" AND message_id IS NOT NULL AND deleted_at IS NULL AND announcement_id IN ({_in(announcement_ids)})",
            tuple(announcement_ids),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # --- recall: undoing an announcement ----------------------------------------------------------------
    async def drop_pending(self, announcement_id: int) -> int:
        """Drop the deliveries of an announcement not sent yet (a row being sent right now is left to finish);
        returns how many."""
        cur = await self._conn.execute(
            "DELETE FROM deliveries WHERE announcement_id = ? AND state = 'pending'", (announcement_id,)
        )
        return cur.rowcount

    async def posts_to_delete(
        self, announcement_id: int, sent_since: int
    ) -> tuple[list[tuple[int, str, str, str]], int]:
        """The announcement's group posts still there: ((delivery id, channel, chat id, message id) of those
        sent at or after `sent_since`, how many older ones are too old to delete)."""
        rows = await fetch_all(
            self._conn,
            "SELECT id, channel, target, message_id, sent_at >= ? AS recent FROM deliveries"
            " WHERE announcement_id = ? AND state = 'sent' AND target_kind = 'chat' AND message_id IS NOT NULL"
            " AND deleted_at IS NULL",
            (sent_since, announcement_id),
        )
        recent = [(r[0], r[1], r[2], r[3]) for r in rows if r["recent"]]
        return recent, len(rows) - len(recent)

    async def mark_deleted(self, delivery_id: int, now: int) -> None:
        await self._conn.execute(
            "UPDATE deliveries SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL", (now, delivery_id)
        )

    async def retry_at(self, delivery_id: int, wall_time: float, error: str, claimant: str = "") -> None:
        await self._conn.execute(
            "UPDATE deliveries SET state = 'pending', next_attempt_at = ?, last_error = ?, claimed_by = NULL,"
            f" lease_until = NULL WHERE id = ? AND {_MINE}",
            (wall_time, error[:500], delivery_id, claimant),
        )

    async def postpone(self, delivery_id: int, wall_time: float) -> None:
        await self._conn.execute(
            "UPDATE deliveries SET next_attempt_at = ? WHERE id = ? AND state = 'pending'", (wall_time, delivery_id)
        )

    async def mark_uncertain(self, delivery_id: int, error: str, claimant: str = "") -> None:
        await self._conn.execute(
            f"UPDATE deliveries SET state = 'uncertain', last_error = ? WHERE id = ? AND {_MINE}",
            (error[:500], delivery_id, claimant),
        )

    async def mark_failed(self, delivery_id: int, error: str, claimant: str = "") -> None:
        await self._conn.execute(
            f"UPDATE deliveries SET state = 'failed', last_error = ? WHERE id = ? AND {_MINE}",
            (error[:500], delivery_id, claimant),
        )

    async def recover_inflight(self, lease_ended_by: float | None = None) -> int:
        """Rows left in 'sending' by a process that stopped may have gone out, so they are not sent again: they
        become 'uncertain'. With `lease_ended_by` (unix seconds) only the rows whose lease had run out by then
        (several processes share the database: a live one may be sending the others); without it, all of them
        (the one process of a SQLite file, at its start)."""
        if lease_ended_by is None:
            cur = await self._conn.execute(
                "UPDATE deliveries SET state = 'uncertain', last_error = 'interrupted while sending'"
                " WHERE state = 'sending'"
            )
        else:
            cur = await self._conn.execute(
                "UPDATE deliveries SET state = 'uncertain', last_error = 'interrupted while sending'"
                " WHERE state = 'sending' AND (lease_until IS NULL OR lease_until < ?)",
                (lease_ended_by,),
            )
        return cur.rowcount

    async def counts(self, announcement_id: int) -> dict[str, int]:
        rows = await fetch_all(
            self._conn,
            "SELECT state, COUNT(*) FROM deliveries WHERE announcement_id = ? GROUP BY state",
            (announcement_id,),
        )
        return {r[0]: r[1] for r in rows}

    async def waiting_counts(self) -> dict[str, int]:
        """State (of WAITING_STATES) -> deliveries in it, for the states that have any. Counted on the
        deliveries_due index (state, next_attempt_at), so the final rows (a shop's whole history) are never read."""
        rows = await fetch_all(
            self._conn,
            f"SELECT state, COUNT(*) FROM deliveries WHERE state IN ({_in(WAITING_STATES)}) GROUP BY state",
            WAITING_STATES,
            bulk=True,  # a fan-out to every member waits as that many rows
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def failures(self, announcement_id: int, limit: int = 5) -> list[tuple[str, str]]:
        rows = await fetch_all(
            self._conn,
            "SELECT target, last_error FROM deliveries WHERE announcement_id = ? AND state = 'failed'"
            " ORDER BY id LIMIT ?",
            (announcement_id, limit),
        )
        return [(r[0], r[1]) for r in rows]

    async def problems(self, announcement_id: int, limit: int = 3) -> list[tuple[str, str, str]]:
        """(state, target, error) of the first failed or uncertain rows of an announcement."""
        rows = await fetch_all(
            self._conn,
            "SELECT state, target, last_error FROM deliveries WHERE announcement_id = ?"
            " AND state IN ('failed', 'uncertain') ORDER BY id LIMIT ?",
            (announcement_id, limit),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def resend_uncertain(self, announcement_id: int) -> int:
        """Put exactly the uncertain rows of an announcement back in the queue, due now and with a fresh
        retry budget; returns how many. Staff decide this knowing that some may arrive twice."""
        cur = await self._conn.execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = 0"
            " WHERE announcement_id = ? AND state = 'uncertain'",
            (announcement_id,),
        )
        return cur.rowcount
